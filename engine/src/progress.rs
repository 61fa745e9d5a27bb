//! How a run tells the user what happens: live bars on a terminal, plain lines otherwise, or one
//! JSON event per line for tools.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use secvec_cache::Digest;
use serde::{Deserialize, Serialize};

use crate::stage::ProgressSink;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    /// Not run because an upstream stage failed or the run was interrupted.
    Skipped,
}

/// The result of one stage in a run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub stage: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Digest>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub enum Event<'a> {
    Planned {
        total: usize,
    },
    Started {
        stage: &'a str,
    },
    Progress {
        stage: &'a str,
        done: u64,
        total: u64,
    },
    Message {
        stage: &'a str,
        text: &'a str,
    },
    /// Something the user should see whatever the display (a damaged cache entry, a resume).
    Notice {
        stage: &'a str,
        text: &'a str,
    },
    Finished(&'a Outcome),
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Forwards one stage's progress to the run's reporter.
pub struct StageProgress {
    pub stage: String,
    pub reporter: Arc<dyn Reporter>,
}

impl ProgressSink for StageProgress {
    fn progress(&self, done: u64, total: u64) {
        self.reporter.event(Event::Progress {
            stage: &self.stage,
            done,
            total,
        });
    }
    fn message(&self, text: &str) {
        self.reporter.event(Event::Message {
            stage: &self.stage,
            text,
        });
    }
    fn notice(&self, text: &str) {
        self.reporter.event(Event::Notice {
            stage: &self.stage,
            text,
        });
    }
}

fn describe(o: &Outcome) -> String {
    match o.status {
        Status::Cached => format!("cached  {}", o.stage),
        Status::Ran => format!("ran     {} ({:.2}s)", o.stage, o.seconds),
        Status::Failed => format!("FAILED  {}: {}", o.stage, o.error.as_deref().unwrap_or("")),
        Status::Skipped => format!("skipped {} ({})", o.stage, o.error.as_deref().unwrap_or("")),
    }
}

/// Prints one line on stdout. A reader that went away (`secvec run … | head`) does not stop or
/// fail the run: its outputs are in the cache, whoever reads the progress.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// One line per event, for logs and pipes.
pub struct Lines;

impl Reporter for Lines {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { stage } => say(format_args!("running {stage}")),
            Event::Notice { stage, text } => say(format_args!("notice  {stage}: {text}")),
            Event::Finished(o) => say(format_args!("{}", describe(o))),
            _ => {}
        }
    }
}

/// One JSON object per finished stage.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Finished(o) => say(format_args!(
                "{}",
                serde_json::to_string(o).expect("outcomes serialise")
            )),
            // stdout holds only outcomes.
            Event::Notice { stage, text } => eprintln!("notice  {stage}: {text}"),
            _ => {}
        }
    }
}

/// Live bars: one per running stage with its own progress and ETA, and an overall bar.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30.green/white}] {pos}/{len} stages {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("secvec");
        Bars {
            multi,
            overall,
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Bars {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Planned { total } => self.overall.set_length(total as u64),
            Event::Started { stage } => {
                let bar = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:32!} {wide_msg} {pos}/{len} eta {eta}")
                        .expect("valid template"),
                );
                bar.set_prefix(stage.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.lock().expect("bars lock").insert(stage.to_string(), bar);
            }
            Event::Progress { stage, done, total } => {
                if let Some(bar) = self.running.lock().expect("bars lock").get(stage) {
                    if bar.length() != Some(total) {
                        bar.set_length(total);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {prefix:32!} [{bar:25.cyan/blue}] {pos}/{len} eta {eta} {wide_msg}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                    }
                    bar.set_position(done);
                }
            }
            Event::Message { stage, text } => {
                if let Some(bar) = self.running.lock().expect("bars lock").get(stage) {
                    bar.set_message(text.to_string());
                }
            }
            Event::Notice { stage, text } => {
                let _ = self.multi.println(format!("notice  {stage}: {text}"));
            }
            Event::Finished(o) => {
                if let Some(bar) = self.running.lock().expect("bars lock").remove(&o.stage) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.overall.inc(1);
                let _ = self.multi.println(describe(o));
                if self.overall.position() == self.overall.length().unwrap_or(0) {
                    self.overall.finish_and_clear();
                }
            }
        }
    }
}

//! How a run tells the user what happens: live bars on a terminal, plain lines otherwise, or one
//! JSON event per line for tools.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use secvec_cache::Digest;
use secvec_stage::ProgressSink;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    /// Stopped by Ctrl-C (or SIGTERM) while it ran; nothing of it was committed.
    Interrupted,
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
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<crate::runner::FailureKind>,
    /// Attempts made (0 when it came from the cache or never started).
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

impl StageProgress {
    /// A job run on its own (`run-stage` on a cluster node or in `secvec-worker`): the plain
    /// progress lines a local run prints, every 30 s, as its log.
    pub fn logged(stage: &str) -> StageProgress {
        let reporter: Arc<dyn Reporter> = Arc::new(Lines::new(Duration::from_secs(30)));
        reporter.event(Event::Planned { total: 1 });
        reporter.event(Event::Started { stage });
        StageProgress {
            stage: stage.to_string(),
            reporter,
        }
    }
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
        Status::Interrupted => format!(
            "interrupted {} after {:.1}s (nothing of it was committed; a rerun starts it again)",
            o.stage, o.seconds
        ),
        Status::Skipped => format!("skipped {} ({})", o.stage, o.error.as_deref().unwrap_or("")),
    }
}

/// Prints one line on stdout. A reader that went away (`secvec run … | head`) does not stop or
/// fail the run: its outputs are in the cache, whoever reads the progress.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `1h02m03s`, `4m05s`, `6s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// What a stage last said about its progress.
#[derive(Clone, Default)]
struct StageState {
    done: u64,
    total: u64,
    message: String,
    started: Option<Instant>,
    /// When a line last reported this stage.
    reported: Option<Instant>,
}

impl StageState {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.total > 0 {
            parts.push(format!(
                "{}/{} ({:.0}%)",
                self.done,
                self.total,
                100.0 * self.done as f64 / self.total as f64
            ));
        }
        if !self.message.is_empty() {
            parts.push(self.message.clone());
        }
        if let Some(t) = self.started {
            parts.push(format!("for {}", clock(t.elapsed())));
        }
        parts.join(", ")
    }
}

/// The run as far as a throttled reporter knows it.
struct Tally {
    started: Instant,
    every: Duration,
    total: usize,
    finished: usize,
    running: std::collections::BTreeMap<String, StageState>,
    /// When any line was last printed.
    last_line: Instant,
}

impl Tally {
    fn new(every: Duration) -> Self {
        let now = Instant::now();
        Tally {
            started: now,
            every,
            total: 0,
            finished: 0,
            running: Default::default(),
            last_line: now,
        }
    }

    fn overall(&self) -> String {
        format!(
            "{}/{} stages, {}",
            self.finished,
            self.total,
            clock(self.started.elapsed())
        )
    }

    /// Records a progress or message event; the stage's state when a line is due (the first
    /// `every` after it started, then every `every`).
    fn update(&mut self, stage: &str, progress: Option<(u64, u64)>, message: Option<&str>) -> Option<StageState> {
        let every = self.every;
        let st = self.running.entry(stage.to_string()).or_default();
        if let Some((done, total)) = progress {
            (st.done, st.total) = (done, total);
        }
        if let Some(m) = message {
            st.message = m.to_string();
        }
        let since = st.reported.or(st.started).unwrap_or_else(Instant::now);
        let finished_inner = progress.is_some_and(|(d, t)| d == t && t > 0);
        if since.elapsed() >= every || (finished_inner && st.reported.is_some()) {
            st.reported = Some(Instant::now());
            self.last_line = Instant::now();
            return Some(st.clone());
        }
        None
    }

    /// Takes in any event; a running stage's state when a line about it is due.
    fn observe<'e>(&mut self, event: &Event<'e>) -> Option<(&'e str, StageState)> {
        match *event {
            Event::Progress { stage, done, total } => {
                return self.update(stage, Some((done, total)), None).map(|s| (stage, s))
            }
            Event::Message { stage, text } => return self.update(stage, None, Some(text)).map(|s| (stage, s)),
            _ => {}
        }
        match event {
            Event::Planned { total } => self.total = *total,
            Event::Started { stage } => {
                let st = self.running.entry(stage.to_string()).or_default();
                st.started = Some(Instant::now());
            }
            Event::Finished(o) => {
                self.running.remove(&o.stage);
                self.finished += 1;
            }
            _ => {}
        }
        None
    }
}

/// Runs `beat` every `every` while `target` lives: the periodic lines of a run whose stages say
/// nothing for a while.
fn heartbeat<T: Send + Sync + 'static>(target: Weak<T>, every: Duration, beat: fn(&T)) {
    std::thread::spawn(move || loop {
        std::thread::sleep(every.min(Duration::from_millis(250)));
        let Some(t) = target.upgrade() else { break };
        beat(&t);
    });
}

/// One line per event for logs and pipes, and every `every` a line per running stage with its
/// inner progress and the run's clock.
pub struct Lines {
    tally: Arc<Mutex<Tally>>,
}

impl Lines {
    pub fn new(every: Duration) -> Self {
        let tally = Arc::new(Mutex::new(Tally::new(every)));
        heartbeat(Arc::downgrade(&tally), every, |t: &Mutex<Tally>| {
            let mut t = t.lock().expect("tally lock");
            if t.last_line.elapsed() < t.every || t.running.is_empty() {
                return;
            }
            t.last_line = Instant::now();
            let stages: Vec<String> = t
                .running
                .iter()
                .map(|(name, st)| match st.summary() {
                    s if s.is_empty() => name.clone(),
                    s => format!("{name} ({s})"),
                })
                .collect();
            say(format_args!("still running {} [{}]", stages.join("; "), t.overall()));
        });
        Lines { tally }
    }
}

impl Reporter for Lines {
    fn event(&self, event: Event<'_>) {
        let mut t = self.tally.lock().expect("tally lock");
        let due = t.observe(&event);
        match event {
            Event::Started { stage } => say(format_args!("running {stage}")),
            Event::Notice { stage, text } => say(format_args!("notice  {stage}: {text}")),
            Event::Finished(o) => say(format_args!("{} [{}]", describe(o), t.overall())),
            _ => {}
        }
        if let Some((stage, st)) = due {
            t.last_line = Instant::now();
            say(format_args!("progress {stage}: {} [{}]", st.summary(), t.overall()));
        }
    }
}

/// A JSON line on stdout: `{"event": …, …}`.
#[derive(Serialize)]
struct JsonEvent<'a, T: Serialize> {
    event: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

fn emit<T: Serialize>(event: &'static str, body: &T) {
    say(format_args!(
        "{}",
        serde_json::to_string(&JsonEvent { event, body }).expect("events serialise")
    ));
}

/// One JSON object per line on stdout, each with an `event`: `started`, `progress` (at most one
/// per stage every `every`) and `finished` (the stage's [`Outcome`]). Notices go to stderr.
pub struct JsonLines {
    tally: Mutex<Tally>,
}

impl JsonLines {
    pub fn new(every: Duration) -> Self {
        JsonLines {
            tally: Mutex::new(Tally::new(every)),
        }
    }
}

impl Reporter for JsonLines {
    fn event(&self, event: Event<'_>) {
        let mut t = self.tally.lock().expect("tally lock");
        let due = t.observe(&event);
        match event {
            Event::Started { stage } => emit("started", &serde_json::json!({ "stage": stage })),
            Event::Finished(o) => emit("finished", o),
            Event::Notice { stage, text } => eprintln!("notice  {stage}: {text}"),
            _ => {}
        }
        if let Some((stage, st)) = due {
            emit(
                "progress",
                &serde_json::json!({
                    "stage": stage,
                    "done": st.done,
                    "total": st.total,
                    "message": st.message,
                    "seconds": st.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                    "stages_finished": t.finished,
                    "stages_total": t.total,
                }),
            );
        }
    }
}

/// Live bars: one per running stage with its own progress and ETA, and an overall bar whose
/// clock ticks whether or not a stage reports.
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
            ProgressStyle::with_template("{prefix:.bold} [{bar:30.green/white}] {pos}/{len} stages {elapsed_precise}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("secvec");
        overall.enable_steady_tick(Duration::from_millis(500));
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

impl Drop for Bars {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
    }
}

impl Reporter for Bars {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Planned { total } => self.overall.set_length(total as u64),
            Event::Started { stage } => {
                let bar = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:32!} {elapsed:>4} {wide_msg}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_reported_once_per_interval_and_when_its_inner_work_ends() {
        let mut t = Tally::new(Duration::from_millis(200));
        t.observe(&Event::Planned { total: 3 });
        t.observe(&Event::Started { stage: "score" });
        assert!(
            t.update("score", Some((1, 10)), None).is_none(),
            "reported before an interval passed"
        );
        std::thread::sleep(Duration::from_millis(220));
        let due = t
            .update("score", Some((2, 10)), Some("testing"))
            .expect("due after an interval");
        assert_eq!((due.done, due.total, due.message.as_str()), (2, 10, "testing"));
        assert!(
            due.summary().starts_with("2/10 (20%), testing, for "),
            "{}",
            due.summary()
        );
        assert!(
            t.update("score", Some((3, 10)), None).is_none(),
            "reported twice in one interval"
        );
        assert!(
            t.update("score", Some((10, 10)), None).is_some(),
            "the end of the inner work is shown"
        );
        assert!(t.overall().starts_with("0/3 stages, "), "{}", t.overall());
    }

    #[test]
    fn clocks_read_as_hours_minutes_and_seconds() {
        assert_eq!(clock(Duration::from_secs(6)), "6s");
        assert_eq!(clock(Duration::from_secs(245)), "4m05s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
    }
}

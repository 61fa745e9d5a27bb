//! What a run shows while it works: live bars on a terminal (captured from tmux), periodic plain
//! lines in a pipe, `progress` events with `--json`; and a stage stopped by Ctrl-C shown as
//! interrupted, not failed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bwrap_available, slow_python_samples, Workspace};
use serde_json::Value;

const PROGRAMS: usize = 240;

/// A score stage over `PROGRAMS` distinct programs, tested one at a time, each pausing for a
/// while: long enough to watch, with pauses in which no stage reports anything.
fn slow_score() -> Workspace {
    let ws = Workspace::new();
    slow_python_samples(&ws, PROGRAMS);
    ws.write(
        "slow.yaml",
        "name: slow\nstages:\n  scenarios:\n    kind: scenarios\n    inputs: {data: {path: manifests/data/quickstart-scenarios}}\n  scores:\n    kind: score\n    inputs: {scenarios: scenarios, samples: {path: samples.jsonl}}\n    params: {jobs: 1}\n",
    );
    ws
}

fn tmux_available() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: tmux is not installed (scripts/setup.sh installs it); skipping the terminal check");
    }
    ok
}

/// Waits up to `limit` for `found` to return something.
fn wait_for<T>(limit: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(t) = found() {
            return Some(t);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The scores bar's position and the overall bar's clock, when both are on the screen.
fn bars(screen: &str) -> Option<(u64, String)> {
    let inner = screen
        .lines()
        .find(|l| l.contains("scores") && l.contains(&format!("/{PROGRAMS} eta")))?;
    let done = inner
        .split(&format!("/{PROGRAMS}"))
        .next()?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()?;
    let overall = screen
        .lines()
        .find(|l| l.starts_with("secvec [") && l.contains("1/2 stages"))?;
    Some((done, overall.rsplit(' ').next()?.to_string()))
}

struct Tmux<'a> {
    socket: &'a Path,
}

impl Tmux<'_> {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "run"])
    }
}

impl Drop for Tmux<'_> {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn a_terminal_shows_a_running_clock_and_inner_progress_and_ctrl_c_shows_interrupted() {
    if !bwrap_available() || !tmux_available() {
        return;
    }
    let ws = slow_score();
    let socket = ws.path().join("tmux.sock");
    let tmux = Tmux { socket: &socket };
    let run = format!(
        "{} run slow.yaml; echo EXIT=$?; sleep 600",
        env!("CARGO_BIN_EXE_secvec")
    );
    let dir = ws.path().display().to_string();
    tmux.cmd(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "run",
        "-x",
        "150",
        "-y",
        "24",
        "-c",
        &dir,
        &run,
    ]);

    wait_for(Duration::from_secs(120), || bars(&tmux.screen()))
        .unwrap_or_else(|| panic!("no progress bars on the screen:\n{}", tmux.screen()));
    assert!(
        tmux.screen().contains("unit tests"),
        "the stage's phase is shown:\n{}",
        tmux.screen()
    );
    // Four seconds of screens: the stage's bar moves as programs finish, and between two of
    // them, while nothing reports, the overall clock still moves.
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let screen = tmux.screen();
        seen.push(bars(&screen).unwrap_or_else(|| panic!("the bars went away:\n{screen}")));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.last().unwrap().0 > seen[0].0,
        "the stage's own bar did not move: {seen:?}"
    );
    let ticked = seen.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1);
    assert!(ticked, "the clock moved only when a stage reported: {seen:?}");

    tmux.cmd(&["send-keys", "-t", "run", "C-c"]);
    let screen = wait_for(Duration::from_secs(60), || {
        Some(tmux.screen()).filter(|s| s.contains("EXIT="))
    })
    .unwrap_or_else(|| panic!("the run did not stop on Ctrl-C:\n{}", tmux.screen()));
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(screen.contains("interrupted scores after"), "{screen}");
    assert!(!screen.contains("FAILED"), "{screen}");
    assert!(screen.contains("1 interrupted"), "{screen}");
}

/// Sends SIGINT, as Ctrl-C does, to the run alone.
fn interrupt(child: &std::process::Child) {
    // SAFETY: a plain kill(2) of a child this test owns.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

#[test]
fn a_pipe_gets_periodic_progress_lines_and_an_interrupted_stage_says_so() {
    if !bwrap_available() {
        return;
    }
    let ws = slow_score();
    let mut child = ws
        .cmd(&["run", "slow.yaml", "--progress-every", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map(Result::unwrap);
    let mut progress = Vec::new();
    // Lines of the phase that runs the programs (known-good programs and parsing come first).
    for line in lines.by_ref() {
        if line.starts_with("progress scores: ") && line.contains("unit tests") {
            progress.push(line);
            if progress.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(progress.len(), 2, "no periodic lines: {progress:?}");
    for line in &progress {
        assert!(line.contains(&format!("/{PROGRAMS} (")), "{line}");
        assert!(
            line.contains(", unit tests, for ") && line.contains("[1/2 stages, "),
            "{line}"
        );
    }
    interrupt(&child);
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        rest.iter().any(|l| l.starts_with("interrupted scores after")),
        "{rest:?}"
    );
    assert!(!rest.iter().any(|l| l.contains("FAILED")), "{rest:?}");
    assert!(stderr.contains("0 failed, 1 interrupted"), "{stderr}");
}

#[test]
fn json_progress_events_come_between_started_and_finished() {
    if !bwrap_available() {
        return;
    }
    let ws = slow_score();
    let mut child = ws
        .cmd(&["run", "slow.yaml", "--json", "--progress-every", "0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap());
    let mut seen = Vec::new();
    for e in events.by_ref() {
        let progress = e["event"] == "progress" && e["stage"] == "scores" && e["done"].as_u64() > Some(0);
        seen.push(e);
        if progress {
            break;
        }
    }
    let names: Vec<String> = seen.iter().map(|e| format!("{} {}", e["event"], e["stage"])).collect();
    let at = |name: &str| names.iter().position(|n| n == name);
    assert!(
        at(r#""started" "scenarios""#) < at(r#""finished" "scenarios""#),
        "{names:?}"
    );
    assert!(at(r#""started" "scores""#) < at(r#""progress" "scores""#), "{names:?}");
    let progress = seen.last().unwrap();
    assert_eq!(progress["total"], PROGRAMS, "{progress}");
    assert_eq!(progress["message"], "unit tests", "{progress}");
    assert_eq!(
        (progress["stages_finished"].as_u64(), progress["stages_total"].as_u64()),
        (Some(1), Some(2))
    );
    interrupt(&child);
    let finished: Vec<Value> = events.filter(|e| e["event"] == "finished").collect();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["stage"], "scores");
    assert_eq!(finished[0]["status"], "interrupted", "{}", finished[0]);
}

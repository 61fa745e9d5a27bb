//! `run --executor slurm` on a real Slurm: the one-node cluster `scripts/slurm-up.sh` brings up
//! (`scripts/test.sh` does, and sets SECVEC_REQUIRE_SLURM so that a missing cluster fails the
//! suite instead of skipping). No mock of `sbatch`: every stage is a batch job.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bwrap_available, slow_python_samples, Workspace};
use serde_json::Value;

/// Whether a Slurm cluster answers here; says why not when it does not.
fn slurm_available() -> bool {
    let answers = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo")
            .args(["-h", "-o", "%T"])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"));
    if !answers {
        let why = "no Slurm cluster answers (run `eval $(scripts/slurm-up.sh)` as root first)";
        assert!(std::env::var_os("SECVEC_REQUIRE_SLURM").is_none(), "{why}");
        eprintln!("notice: {why}; skipping");
    }
    answers
}

/// This workspace's jobs in the queue, as `(id, state, comment)` (the comment is `secvec
/// STAGE`): jobs start in the folder they were submitted from, which tells them from other
/// tests' jobs.
fn queued(ws: &Workspace) -> Vec<(String, String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i|%T|%Z|%k"])
        .output()
        .unwrap();
    let here = ws.path().canonicalize().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, state, dir, comment) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (Path::new(dir.trim()).canonicalize().ok()? == here)
                .then(|| (id.to_string(), state.to_string(), comment.to_string()))
        })
        .collect()
}

fn wait_for<T>(limit: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(t) = found() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("gave up waiting after {limit:?}");
}

/// Each stage's committed output, from its published provenance.
fn outputs(ws: &Workspace, out: &str) -> Vec<(String, String)> {
    let dir = ws.path().join(out).join("quickstart");
    let mut all: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stage = name.strip_suffix(".provenance.json")?.to_string();
            let record: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            Some((stage, record["output"].as_str().unwrap().to_string()))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn the_quickstart_on_slurm_runs_every_stage_as_a_job_and_matches_a_local_run() {
    if !slurm_available() || !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    let on_slurm_args = [
        "--cache",
        "slurm-cache",
        "--out",
        "slurm-out",
        "manifests/quickstart.yaml",
        "--executor",
        "slurm",
        "--poll",
        "0.3",
    ];
    let on_slurm = ws.run_json(&on_slurm_args);
    assert!(on_slurm.values().all(|e| e["status"] == "ran"), "{on_slurm:#?}");
    // Every stage was a job that left its result and log beside its description.
    let jobs: Vec<_> = std::fs::read_dir(ws.path().join("slurm-cache/jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(jobs.len(), on_slurm.len(), "one job folder per stage");
    for dir in &jobs {
        let files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(files.iter().any(|f| f.ends_with(".result.json")), "{dir:?}: {files:?}");
        assert!(files.iter().any(|f| f.ends_with(".log")), "{dir:?}: {files:?}");
    }
    let local = ws.run_json(&["manifests/quickstart.yaml"]);
    assert!(local.values().all(|e| e["status"] == "ran"));
    // Latency is a measurement, different on every run, and the model report shows it.
    let measured = ["latency", "model-report"];
    let differ: Vec<_> = outputs(&ws, "slurm-out")
        .into_iter()
        .zip(outputs(&ws, "out"))
        .filter(|((stage, a), (_, b))| a != b && !measured.contains(&stage.as_str()))
        .collect();
    assert!(differ.is_empty(), "outputs differ between Slurm and local: {differ:?}");
    // Rerun: everything is cached and nothing is submitted.
    let again = ws.run_json(&on_slurm_args);
    assert!(again.values().all(|e| e["status"] == "cached"), "{again:#?}");
    assert_eq!(
        std::fs::read_dir(ws.path().join("slurm-cache/jobs")).unwrap().count(),
        jobs.len()
    );
    assert!(queued(&ws).is_empty());
}

/// A score stage that takes a minute (each program pauses), allowed one retry.
fn slow_score(ws: &Workspace) {
    slow_python_samples(ws, 60);
    ws.write(
        "slow.yaml",
        "name: slow\nstages:\n  scenarios:\n    kind: scenarios\n    inputs: {data: {path: manifests/data/quickstart-scenarios}}\n  scores:\n    kind: score\n    inputs: {scenarios: scenarios, samples: {path: samples.jsonl}}\n    params: {jobs: 1}\n    retries: 1\n",
    );
}

/// A `secvec run --executor slurm` of the slow manifest, interrupted (so that it cancels its
/// jobs) if the test ends while it runs.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
            let _ = self.0.wait();
        }
    }
}

fn controller(ws: &Workspace, log: &str) -> Controller {
    let log = std::fs::File::create(ws.path().join(log)).unwrap();
    Controller(
        ws.cmd(&["run", "slow.yaml", "--executor", "slurm", "--poll", "0.3"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The job of the slow stage, once it runs.
fn running(ws: &Workspace) -> Option<String> {
    queued(ws)
        .into_iter()
        .find(|(_, state, comment)| state == "RUNNING" && comment == "secvec scores")
        .map(|(id, ..)| id)
}

#[test]
fn a_restarted_controller_adopts_its_jobs_a_killed_job_is_retried_and_ctrl_c_leaves_no_jobs() {
    if !slurm_available() || !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    slow_score(&ws);
    let mut first = controller(&ws, "first.log");
    let job = wait_for(Duration::from_secs(120), || running(&ws));
    // The controller dies; its job goes on.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert_eq!(running(&ws).as_deref(), Some(job.as_str()));
    let mut second = controller(&ws, "second.log");
    let log = |name: &str| std::fs::read_to_string(ws.path().join(name)).unwrap_or_default();
    wait_for(Duration::from_secs(30), || {
        log("second.log")
            .contains(&format!("adopting Slurm job {job}"))
            .then_some(())
    });
    assert_eq!(queued(&ws).len(), 1, "the running job was adopted, not submitted again");
    // Kill the job's process: the attempt fails and a new job retries it.
    let killed = Command::new("pkill")
        .args([
            "-9",
            "-f",
            &format!("run-stage {}", ws.path().canonicalize().unwrap().display()),
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "the job's run-stage process was found");
    let retry = wait_for(Duration::from_secs(60), || running(&ws).filter(|id| *id != job));
    let text = log("second.log");
    assert!(
        text.contains(&format!("attempt 1 of 2 failed: Slurm job {job} ended FAILED")),
        "{text}"
    );
    // Ctrl-C: the run's jobs are cancelled before it exits.
    Command::new("kill")
        .args(["-INT", &second.0.id().to_string()])
        .status()
        .unwrap();
    let status = second.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", log("second.log"));
    assert!(queued(&ws).is_empty(), "job {retry} was left behind: {:?}", queued(&ws));
    assert!(log("second.log").contains("1 interrupted"));
    assert!(!ws.path().join("out/slow/scores").exists());
}

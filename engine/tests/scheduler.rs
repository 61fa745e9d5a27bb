//! The executor and the local runner with fake stage kinds (sleep, fail, write N bytes): slots,
//! failures that stop only their dependents, retries, the cache and interrupts, tested without
//! models or sandboxes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use secvec_cache::{Cache, StatCache};
use secvec_engine::exec::{self, RunOptions};
use secvec_engine::job::Job;
use secvec_engine::progress::{Event, Outcome, Reporter, Status};
use secvec_engine::runner::{FailureKind, Local};
use secvec_engine::{manifest, plan};
use secvec_stage::{InputSlot, Registry, Resources, Stage, StageContext};
use serde::{Deserialize, Serialize};

/// Stages running now and the most that ever ran at once, per test (tests share the process).
static RUNNING: Mutex<Option<HashMap<String, (u32, u32)>>> = Mutex::new(None);

fn enter(group: &str, delta: i32) {
    let mut map = RUNNING.lock().unwrap();
    let entry = map
        .get_or_insert_with(HashMap::new)
        .entry(group.to_string())
        .or_default();
    entry.0 = (entry.0 as i32 + delta) as u32;
    entry.1 = entry.1.max(entry.0);
}

fn most_at_once(group: &str) -> u32 {
    RUNNING
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(group))
        .map_or(0, |e| e.1)
}

fn after_slot() -> Vec<InputSlot> {
    vec![InputSlot {
        name: "after",
        accepts: &["done"],
        many: true,
        optional: true,
        doc: "stages to wait for",
    }]
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct SleepParams {
    ms: u64,
    group: String,
    #[serde(default)]
    cpus: Option<u32>,
}

/// Sleeps (stopping early when cancelled) and writes its group's name.
struct Sleep;

impl Stage for Sleep {
    type Params = SleepParams;
    const KIND: &'static str = "sleep";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str = "sleeps";
    fn inputs() -> Vec<InputSlot> {
        after_slot()
    }
    fn output_tags() -> Vec<&'static str> {
        vec!["done"]
    }
    fn resources(p: &SleepParams) -> Resources {
        Resources::cpus(p.cpus.unwrap_or(1))
    }
    fn run(&self, p: &SleepParams, ctx: &StageContext) -> anyhow::Result<()> {
        enter(&p.group, 1);
        let mut slept = 0;
        while slept < p.ms {
            if ctx.check_cancelled().is_err() {
                enter(&p.group, -1);
                anyhow::bail!("cancelled");
            }
            std::thread::sleep(Duration::from_millis(10));
            slept += 10;
        }
        enter(&p.group, -1);
        ctx.write("group.txt", &p.group)?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct FailParams {
    /// Attempts that fail before one succeeds.
    failing_attempts: u32,
}

/// Fails its first attempts, counting them in its scratch folder (which outlives a failed
/// attempt at the same key, as a checkpoint would).
struct Fail;

impl Stage for Fail {
    type Params = FailParams;
    const KIND: &'static str = "fail";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str = "fails";
    fn inputs() -> Vec<InputSlot> {
        after_slot()
    }
    fn output_tags() -> Vec<&'static str> {
        vec!["done"]
    }
    fn run(&self, p: &FailParams, ctx: &StageContext) -> anyhow::Result<()> {
        std::fs::create_dir_all(ctx.scratch_dir())?;
        let tries = std::fs::read_dir(ctx.scratch_dir())?.count() as u32;
        std::fs::write(ctx.scratch_dir().join(format!("attempt-{tries}")), "")?;
        if tries < p.failing_attempts {
            anyhow::bail!("planned failure {} of {}", tries + 1, p.failing_attempts);
        }
        ctx.write("ok.txt", "ok")?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct WriteParams {
    bytes: u64,
}

/// Writes N bytes.
struct Write;

impl Stage for Write {
    type Params = WriteParams;
    const KIND: &'static str = "write";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str = "writes bytes";
    fn inputs() -> Vec<InputSlot> {
        after_slot()
    }
    fn output_tags() -> Vec<&'static str> {
        vec!["done"]
    }
    fn run(&self, p: &WriteParams, ctx: &StageContext) -> anyhow::Result<()> {
        ctx.write("bytes", vec![7u8; p.bytes as usize])?;
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::default().with(Sleep).with(Fail).with(Write)
}

struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _: Event<'_>) {}
}

struct Run {
    outcomes: Vec<Outcome>,
}

impl Run {
    fn get(&self, stage: &str) -> &Outcome {
        self.outcomes.iter().find(|o| o.stage == stage).expect("stage ran")
    }
    fn status(&self, stage: &str) -> Status {
        self.get(stage).status.clone()
    }
}

fn run_manifest(dir: &Path, yaml: &str, cpu_slots: u32, cancel: Arc<AtomicBool>) -> Run {
    let file = dir.join("m.yaml");
    std::fs::write(&file, yaml).unwrap();
    let loaded = manifest::load(&file, &[], &[]).unwrap();
    let plan = Arc::new(plan::build(&loaded, &registry(), &mut StatCache::load(&dir.join("stat.json"))).unwrap());
    let cache = Arc::new(Cache::open(&dir.join("cache")).unwrap());
    let opts = RunOptions {
        only: vec![],
        force: vec![],
        cpu_slots,
        gpu_slots: 0,
        out_dir: dir.join("out"),
        runner: Arc::new(Local::new(cache.clone())),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = runtime
        .block_on(exec::run(plan, cache, opts, Arc::new(Quiet), cancel))
        .unwrap();
    Run { outcomes }
}

fn run(dir: &Path, yaml: &str, cpu_slots: u32) -> Run {
    run_manifest(dir, yaml, cpu_slots, Arc::new(AtomicBool::new(false)))
}

#[test]
fn independent_stages_run_side_by_side_within_the_slots() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
name: slots
stages:
  a: {kind: sleep, params: {ms: 300, group: slots, cpus: 1}, matrix: {ms: [300, 301, 302, 303]}}
  big: {kind: sleep, params: {ms: 200, group: slots-big, cpus: 64}}
  small: {kind: sleep, params: {ms: 200, group: slots-big, cpus: 1}}
"#;
    let r = run(dir.path(), yaml, 2);
    assert!(r.outcomes.iter().all(|o| o.status == Status::Ran), "{:?}", r.outcomes);
    assert_eq!(most_at_once("slots"), 2, "two one-core stages at once in two slots");
    // A stage asking for more cores than the run has takes them all, so nothing runs beside it.
    assert_eq!(most_at_once("slots-big"), 1);
}

#[test]
fn a_failure_stops_only_what_depends_on_it_and_the_rest_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
name: failing
stages:
  broken: {kind: fail, params: {failing_attempts: 100}}
  below: {kind: write, params: {bytes: 3}, inputs: {after: broken}}
  beside: {kind: write, params: {bytes: 1000}}
"#;
    let r = run(dir.path(), yaml, 2);
    assert_eq!(r.status("broken"), Status::Failed);
    assert_eq!(r.get("broken").failure, Some(FailureKind::Failed));
    assert_eq!(r.get("broken").attempts, 1);
    assert!(r
        .get("broken")
        .error
        .as_deref()
        .unwrap()
        .contains("planned failure 1 of 100"));
    assert_eq!(r.status("below"), Status::Skipped);
    assert_eq!(r.status("beside"), Status::Ran);
    let bytes = std::fs::read(dir.path().join("out/failing/beside/bytes")).unwrap();
    assert_eq!(bytes.len(), 1000);
    let again = run(dir.path(), yaml, 2);
    assert_eq!(again.status("beside"), Status::Cached);
    assert_eq!(again.status("broken"), Status::Failed);
}

#[test]
fn retries_run_a_failed_stage_again_up_to_the_manifests_count() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
name: retrying
stages:
  enough: {kind: fail, params: {failing_attempts: 2}, retries: 2}
  too-few: {kind: fail, params: {failing_attempts: 3}, retries: 1}
  after: {kind: write, params: {bytes: 1}, inputs: {after: enough}}
"#;
    let r = run(dir.path(), yaml, 2);
    assert_eq!(r.status("enough"), Status::Ran);
    assert_eq!(r.get("enough").attempts, 3);
    assert_eq!(r.status("after"), Status::Ran);
    assert_eq!(r.status("too-few"), Status::Failed);
    assert_eq!(r.get("too-few").attempts, 2);
    assert!(r
        .get("too-few")
        .error
        .as_deref()
        .unwrap()
        .contains("planned failure 2 of 3"));
}

#[test]
fn an_interrupt_stops_running_stages_and_starts_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
name: interrupted
stages:
  long: {kind: sleep, params: {ms: 30000, group: interrupted}}
  next: {kind: write, params: {bytes: 1}, inputs: {after: long}}
"#;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let started = std::time::Instant::now();
    let r = run_manifest(dir.path(), yaml, 2, cancel);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.status("long"), Status::Interrupted);
    assert_eq!(r.status("next"), Status::Skipped);
    assert!(!dir.path().join("out/interrupted/long").exists());
}

#[test]
fn a_job_description_round_trips_and_runs_where_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
name: jobs
stages:
  first: {kind: write, params: {bytes: 5}}
  second: {kind: write, params: {bytes: 6}, inputs: {after: first}, resources: {memory: 2G, time: 90m}, retries: 1}
"#;
    run(dir.path(), yaml, 1);
    // The executor's job for `second`, as `secvec run-stage` would read it.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/jobs/second.provenance.json")).unwrap()).unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let first: secvec_cache::Digest =
        serde_json::from_value(record["provenance"]["inputs"][0]["digest"].clone()).unwrap();
    let job_json = serde_json::json!({
        "stage": "second", "manifest": "jobs", "kind": "write", "stage_version": 1,
        "params": {"bytes": 9}, "labels": {}, "environment": null,
        "inputs": {"after": [{"path": cache.artifact_path(&first), "digest": first, "labels": {}, "from": {"stage": "first"}}]},
        "key": first, "preimage": {"made": "by hand"}, "cache": dir.path().join("cache"),
        "resources": {"cpu": 1, "gpu": 0, "memory_mb": 2048, "time_s": 5400}, "attempt": 1
    });
    let job: Job = serde_json::from_value(job_json.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&job).unwrap(),
        job_json,
        "a job description round-trips"
    );
    let kind = job.kind_in(&registry()).unwrap();
    job.check_environment(kind.as_ref()).unwrap();
    let output = job
        .run(
            kind.as_ref(),
            &cache,
            Arc::new(secvec_engine::progress::StageProgress {
                stage: "second".into(),
                reporter: Arc::new(Quiet),
            }),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
    assert_eq!(
        std::fs::read(cache.artifact_path(&output).join("bytes")).unwrap(),
        vec![7u8; 9]
    );
    // The job committed its entry under its key, with provenance naming where its input came from.
    let secvec_cache::Found::Hit(entry) = cache.find(&job.key).unwrap() else {
        panic!("the job's entry is committed")
    };
    assert_eq!(entry.output, output);
    assert_eq!(entry.provenance["inputs"][0]["from"]["stage"], "first");
    // A job for a kind this binary does not know, or another version of it, is refused.
    let mut other = job.clone();
    other.stage_version = 2;
    let refused = other.kind_in(&registry()).err().expect("another version is refused");
    assert!(refused.to_string().contains("version 1 in this secvec"), "{refused}");
}

#[test]
fn manifest_resources_override_the_kinds_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        "name: r\nstages:\n  s: {kind: sleep, params: {ms: 1, group: r, cpus: 3}, resources: {memory: 1.5G, time: '1:00:00'}}\n",
    )
    .unwrap();
    let loaded = manifest::load(&file, &[], &[]).unwrap();
    let plan = plan::build(
        &loaded,
        &registry(),
        &mut StatCache::load(&dir.path().join("stat.json")),
    )
    .unwrap();
    let r = &plan.nodes[0].resources;
    assert_eq!((r.cpu, r.memory_mb, r.time_s), (3, Some(1536), Some(3600)));
    std::fs::write(
        &file,
        "name: r\nstages:\n  s: {kind: sleep, params: {ms: 1, group: r}, resources: {memory: plenty}}\n",
    )
    .unwrap();
    let err = manifest::load(&file, &[], &[])
        .and_then(|l| plan::build(&l, &registry(), &mut StatCache::load(&dir.path().join("stat.json"))).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.yaml:3") && err.contains("write it as 512M"), "{err}");
}

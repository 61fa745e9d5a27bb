//! The cache under stress: kill -9 at random points, and two processes sharing one cache.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use common::{events, statuses, write_big_dataset, Workspace, BIG_MANIFEST};

fn big_workspace() -> Workspace {
    let ws = Workspace::new();
    write_big_dataset(&ws.path().join("big-data"), 6, 150);
    ws.write("big.yaml", BIG_MANIFEST);
    ws
}

fn outputs(ev: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    ev.iter()
        .map(|(k, v)| (k.clone(), v["output"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn kill_9_at_random_points_leaves_a_consistent_cache() {
    let reference = big_workspace();
    let t0 = Instant::now();
    let want = outputs(&reference.run_json(&["big.yaml", "--cache", "ref-cache"]));
    let full = t0.elapsed();

    let ws = big_workspace();
    // A fixed linear congruential sequence: random-looking kill points, reproducible failures.
    let mut seed: u64 = 0x5ec7ec;
    let mut partial_runs = 0;
    for _ in 0..8 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // Killed after 0–2 stages of this run finished, plus up to a sixth of a cold run's time:
        // points spread over stage runs and commits, whatever else the machine is doing.
        let finished_before_kill = (seed >> 60) % 3;
        let delay = full.mul_f64(((seed >> 33) % 1000) as f64 / 6000.0);
        let mut child = ws
            .cmd(&["run", "big.yaml", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut finished = 0;
        while finished < finished_before_kill {
            match lines.next() {
                Some(Ok(l)) if l.contains(r#""event":"finished""#) => finished += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if !status.success() {
            partial_runs += 1;
        }
        let verify = ws.run(&["cache", "verify"]);
        assert!(
            verify.status.success(),
            "cache corrupt after a kill {finished_before_kill} stage(s) and {delay:?} in: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    eprintln!("{partial_runs} of 8 runs were killed before finishing");
    assert!(
        partial_runs > 0,
        "no run was interrupted; the workload is too small to test anything"
    );
    let resumed = ws.run_json(&["big.yaml"]);
    assert_eq!(
        outputs(&resumed),
        want,
        "resumed outputs differ from an uninterrupted run"
    );
    assert!(ws.run(&["cache", "verify"]).status.success());
    let leftovers = std::fs::read_dir(ws.path().join(".secvec/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "staging directories of killed runs were not cleaned");
}

#[test]
fn two_concurrent_runs_share_one_cache_and_compute_each_stage_once() {
    let ws = big_workspace();
    let spawn = || {
        ws.cmd(&["run", "big.yaml", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (ea, eb) = (events(&a.stdout), events(&b.stdout));
    assert_eq!(outputs(&ea), outputs(&eb));
    for ((stage, sa), (_, sb)) in statuses(&ea).into_iter().zip(statuses(&eb)) {
        let ran = [&sa, &sb].iter().filter(|s| s.as_str() == "ran").count();
        assert_eq!(ran, 1, "{stage} ran {ran} times ({sa}, {sb})");
    }
    let entries = walk_count(&ws.path().join(".secvec/ac"));
    assert_eq!(entries, ea.len(), "one action entry per stage");
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

//! Many processes committing into one cache at once, as the nodes of a cluster do into a shared
//! cache: every commit lands whole, identical trees are stored once, an entry is never torn, and
//! a committer killed mid-commit leaves nothing a reader could take for a result.
//!
//! The committers are this test binary run again as `committer` children (see
//! [`committer`]), so that they are separate processes with their own locks and descriptors.

use std::path::Path;
use std::process::{Command, Stdio};

use secvec_cache::{hash_path, key_of, ActionEntry, Cache, Digest, Found};
use serde_json::json;

const CHILD: &str = "SECVEC_TEST_COMMITTER";
const COMMITS: usize = 40;
/// Trees every committer writes (the same bytes from all of them), beside its own.
const SHARED: usize = 5;

/// What committer `who` commits as its `j`th tree.
fn tree(who: usize, j: usize) -> (String, Vec<u8>) {
    if j.is_multiple_of(2) {
        (format!("shared-{}", j % SHARED), vec![b's'; 10_000 + j % SHARED])
    } else {
        (
            format!("own-{who}-{j}"),
            format!("committer {who} tree {j}").repeat(500).into_bytes(),
        )
    }
}

fn key(name: &str) -> Digest {
    key_of(&json!({ "tree": name }))
}

/// Commits every tree of committer `who` with its entry. Shared keys are written by every
/// committer, racing; each writes the same output, so whichever rename lands last is right.
fn commit_all(root: &Path, who: usize) {
    let cache = Cache::open(root).unwrap();
    for j in 0..COMMITS {
        let (name, bytes) = tree(who, j);
        let staging = cache.staging().unwrap();
        std::fs::create_dir_all(staging.out().join("sub")).unwrap();
        std::fs::write(staging.out().join("sub/data"), &bytes).unwrap();
        std::fs::write(staging.out().join("name"), &name).unwrap();
        let output = cache.commit(staging).unwrap();
        cache
            .put_entry(&ActionEntry {
                key: key(&name),
                output,
                preimage: json!({ "tree": name }),
                provenance: json!({ "committer": who }),
            })
            .unwrap();
    }
}

/// The child's part, when the parent started this binary as a committer; run on its own it
/// commits one committer's trees into a fresh cache and checks them.
#[test]
fn committer() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (root, who) = spec.split_once(',').unwrap();
        commit_all(Path::new(root), who.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    commit_all(dir.path(), 0);
    check(dir.path(), 1);
}

fn spawn(root: &Path, who: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "committer", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{},{who}", root.display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every entry of `committers` committers is a hit whose tree holds exactly its bytes.
fn check(root: &Path, committers: usize) {
    let cache = Cache::open(root).unwrap();
    for who in 0..committers {
        for j in 0..COMMITS {
            let (name, bytes) = tree(who, j);
            let entry = match cache.find(&key(&name)).unwrap() {
                Found::Hit(e) => e,
                other => panic!("{name}: {other:?}"),
            };
            let path = cache.artifact_path(&entry.output);
            assert_eq!(
                hash_path(&path).unwrap(),
                entry.output,
                "{name}: the stored tree is its digest"
            );
            assert_eq!(std::fs::read(path.join("sub/data")).unwrap(), bytes, "{name}");
            assert_eq!(std::fs::read_to_string(path.join("name")).unwrap(), name);
        }
    }
    let report = cache.verify(false).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let stored = std::fs::read_dir(root.join("store")).unwrap().count();
    assert_eq!(
        stored,
        SHARED + committers * COMMITS / 2,
        "identical trees are stored once"
    );
}

#[test]
fn many_processes_commit_into_one_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let committers = 12;
    let children: Vec<_> = (0..committers).map(|who| spawn(dir.path(), who)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a committer failed");
    }
    check(dir.path(), committers);
    // Nothing is left staged once the committers are gone (opening the cache cleans up).
    Cache::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn committers_killed_mid_commit_leave_no_partial_results() {
    let dir = tempfile::tempdir().unwrap();
    // Kill committers at staggered moments, then let fresh ones finish the same work.
    let mut children: Vec<_> = (0..6).map(|who| spawn(dir.path(), who)).collect();
    for (i, c) in children.iter_mut().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(5 * i as u64));
        let _ = c.kill();
        let _ = c.wait();
    }
    // Whatever landed is whole: every entry's tree hashes to its name.
    let cache = Cache::open(dir.path()).unwrap();
    let report = cache.verify(false).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop(cache);
    let children: Vec<_> = (0..6).map(|who| spawn(dir.path(), who)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    check(dir.path(), 6);
}

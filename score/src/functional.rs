//! Runs the scenarios' functional tests on many programs with a pool of workers, each driving
//! one scenario's zygote at a time.
//!
//! A worker takes the scenario with the fewest workers on it (then the most programs left) and
//! tests its programs one by one until none is left, so that each scenario's harness is
//! imported about once per worker. Tests that mostly sleep (cwe-190/0-c waits three seconds a
//! program) would hold workers while the cores idle: once a scenario's tests have used less
//! than a quarter of their wall time on the CPU, extra workers, which take only such
//! scenarios, join in.
//!
//! No one program fails the stage: one that breaks its zygote is tested again on a fresh one and,
//! if it breaks that too, is judged alone. A zygote that cannot start, or two programs in a row
//! that break it, mean the scorer itself is broken, and the stage fails.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::sandbox::{ExitReason, Limits, Sandbox, SandboxError};
use super::zygote::{FunctionalResult, ScenarioTest, Zygote};

/// One program to test: its index (returned with its result), scenario and text.
pub struct Job<'a> {
    pub index: usize,
    pub scenario: &'a str,
    pub program: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionalError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("cancelled")]
    Cancelled,
}

struct Queues<'a> {
    waiting: BTreeMap<&'a str, VecDeque<&'a Job<'a>>>,
    workers: BTreeMap<&'a str, usize>,
    /// Wall and CPU seconds of each scenario's tests so far.
    spent: BTreeMap<&'a str, (f64, f64)>,
    sleepy: BTreeSet<&'a str>,
    failed: bool,
}

impl<'a> Queues<'a> {
    /// A scenario with programs waiting (only a sleepy one for `sleeper`s).
    fn pick(&mut self, sleeper: bool) -> Option<&'a str> {
        let id = self
            .waiting
            .iter()
            .filter(|(id, q)| !q.is_empty() && (!sleeper || self.sleepy.contains(*id)))
            .min_by_key(|(id, q)| (self.workers.get(*id).copied().unwrap_or(0), std::cmp::Reverse(q.len())))
            .map(|(id, _)| *id)?;
        *self.workers.entry(id).or_default() += 1;
        Some(id)
    }

    fn spent(&mut self, id: &'a str, r: &FunctionalResult) {
        let (wall, cpu) = self.spent.entry(id).or_default();
        *wall += r.seconds;
        *cpu += r.cpu_seconds;
        if *wall >= 1.0 && *cpu < 0.25 * *wall {
            self.sleepy.insert(id);
        }
    }

    fn all_taken(&self) -> bool {
        self.waiting.values().all(VecDeque::is_empty)
    }
}

/// The result of a program that broke the scorer's zygote twice.
fn broke_the_scorer(e: &SandboxError) -> FunctionalResult {
    FunctionalResult {
        passed: false,
        reason: ExitReason::Crash,
        detail: format!("the program broke the scorer twice, which judged it alone: {e}"),
        failed_tests: Vec::new(),
        stderr_tail: String::new(),
        seconds: 0.0,
        cpu_seconds: 0.0,
    }
}

/// Tests every job with `workers` threads (and twice as many for sleeping tests); `started` hears of each zygote (its scenario and
/// the modules its code imports that the sandbox's Python lacks), `done` of each result, and
/// `cancelled` is asked before each test.
#[allow(clippy::too_many_arguments)]
pub fn test_programs(
    sandbox: &Sandbox,
    python: &str,
    unit_test: &Path,
    scenarios: &BTreeMap<&str, ScenarioTest>,
    jobs: &[Job],
    limits: &Limits,
    workers: usize,
    started: &(dyn Fn(&str, &[String]) + Sync),
    done: &(dyn Fn() + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<(usize, FunctionalResult)>, FunctionalError> {
    let mut waiting: BTreeMap<&str, VecDeque<&Job>> = BTreeMap::new();
    for job in jobs {
        waiting.entry(job.scenario).or_default().push_back(job);
    }
    let queues = Mutex::new(Queues {
        waiting,
        workers: BTreeMap::new(),
        spent: BTreeMap::new(),
        sleepy: BTreeSet::new(),
        failed: false,
    });
    let worker = |sleeper: bool| -> Result<Vec<(usize, FunctionalResult)>, FunctionalError> {
        let mut results = Vec::new();
        let fail = |e: FunctionalError| {
            queues.lock().expect("not poisoned").failed = true;
            e
        };
        loop {
            let picked = {
                let mut q = queues.lock().expect("not poisoned");
                if q.failed || q.all_taken() {
                    return Ok(results);
                }
                q.pick(sleeper)
            };
            let Some(id) = picked else {
                // A sleeper waits for a scenario to turn out sleepy, or for the end.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let test = &scenarios[id];
            let start = || Zygote::start(sandbox, python, unit_test, test, limits).map_err(|e| fail(e.into()));
            let mut zygote = start()?;
            started(id, &zygote.missing);
            let ext = if test.language == "py" { "py" } else { test.language };
            // Whether the last program broke the scorer: two in a row mean the scorer is broken.
            let mut blamed_last = false;
            loop {
                let next = {
                    let mut q = queues.lock().expect("not poisoned");
                    if q.failed {
                        return Ok(results);
                    }
                    q.waiting.get_mut(id).and_then(VecDeque::pop_front)
                };
                let Some(job) = next else { break };
                if cancelled() {
                    return Err(fail(FunctionalError::Cancelled));
                }
                // A program that breaks its zygote is tested once more on a fresh one; if it breaks
                // that too, only it fails, with what broke.
                let r = match zygote.test(ext, job.program) {
                    Ok(r) => {
                        blamed_last = false;
                        r
                    }
                    Err(_) => {
                        zygote = start()?;
                        let again = zygote.test(ext, job.program);
                        match again {
                            Ok(r) => {
                                blamed_last = false;
                                r
                            }
                            Err(e) if !blamed_last => {
                                blamed_last = true;
                                zygote = start()?;
                                broke_the_scorer(&e)
                            }
                            Err(e) => return Err(fail(e.into())),
                        }
                    }
                };
                queues.lock().expect("not poisoned").spent(id, &r);
                results.push((job.index, r));
                done();
            }
            *queues
                .lock()
                .expect("not poisoned")
                .workers
                .get_mut(id)
                .expect("counted") -= 1;
        }
    };
    let outcomes: Vec<Result<Vec<(usize, FunctionalResult)>, FunctionalError>> = std::thread::scope(|s| {
        let workers = workers.max(1);
        let worker = &worker;
        let handles: Vec<_> = (0..3 * workers)
            .map(|i| s.spawn(move || worker(i >= workers)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker panicked"))
            .collect()
    });
    let mut all = Vec::with_capacity(jobs.len());
    for o in outcomes {
        all.extend(o?);
    }
    Ok(all)
}

//! Per-run overhead of the scoring sandbox: the same command in bubblewrap (with the limits and
//! the pids cgroup) and run directly, N times each. Prints a Markdown table.
//!
//!   cargo run --release --example sandbox_bench -p secvec-stages [N]

use std::process::Command;
use std::time::Instant;

use secvec_stages::score::sandbox::{Limits, Sandbox};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let (sandbox, python) = Sandbox::for_python("python3")?;
    let scratch = tempfile::tempdir()?;
    let limits = Limits::default();
    println!("| command ({n} runs) | direct (ms/run) | sandboxed (ms/run) | overhead (ms/run) |");
    println!("|---|---|---|---|");
    for argv in [vec!["/bin/true"], vec![python.as_str(), "-c", "pass"]] {
        let t = Instant::now();
        for _ in 0..n {
            Command::new(argv[0])
                .args(&argv[1..])
                .current_dir(scratch.path())
                .status()?;
        }
        let direct = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            sandbox.run(scratch.path(), &argv, &limits)?;
        }
        let boxed = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!(
            "| `{}` | {direct:.2} | {boxed:.2} | {:.2} |",
            argv.join(" ").replace(&python, "python3"),
            boxed - direct
        );
    }
    Ok(())
}

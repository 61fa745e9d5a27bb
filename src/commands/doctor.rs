//! `secvec doctor`: the tools this machine offers the stages.

use crate::exit::Exit;
use anyhow::Result;

pub fn run() -> Result<Exit> {
    let checks = secvec_stages::doctor::checks();
    let w = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in &checks {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok",
            (false, true) => "MISSING",
            (false, false) => "absent",
        };
        out!("{mark:<7}  {:<w$}  {}", c.what, c.detail);
    }
    Ok(Exit::checked(!checks.iter().any(|c| c.required && !c.ok)))
}

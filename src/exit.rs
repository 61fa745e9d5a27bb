//! How `secvec` ends, as scripts, CI and Slurm read it: one type, so a code means one thing.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done, and every check passed.
    Success,
    /// A stage failed, or a check found a problem (`doctor`, `cache verify`).
    Failed,
    /// The command, a manifest, an overlay or a `--set` is wrong, or the work could not start;
    /// the error says which.
    Error,
    /// Stopped by Ctrl-C (128 + SIGINT).
    Interrupted,
    /// `run-stage` stopped by a signal (128 + SIGTERM), as a scheduler stops a job.
    Terminated,
}

impl Exit {
    /// Success when `ok`, else a failed check.
    pub fn checked(ok: bool) -> Exit {
        if ok {
            Exit::Success
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Error => 2,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
        })
    }
}

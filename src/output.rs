//! Writing to standard output when its reader may have gone (`secvec schema | head`).

/// Standard output was closed by its reader: the command stops, and that is not an error, as
/// for `cat`.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => anyhow::Error::new($crate::output::StdoutClosed),
            _ => anyhow::Error::new(e).context("writing to standard output"),
        })?
    }};
}

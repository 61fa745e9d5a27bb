//! The `secvec-parse` binary; see `secvec_score::parse::service`.
fn main() -> std::process::ExitCode {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match secvec_score::parse::service::serve(stdin, stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secvec-parse: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `secvec-parse` binary; see `secvec_slicing::service`.
fn main() -> std::process::ExitCode {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match secvec_slicing::service::serve(stdin, stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secvec-parse: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

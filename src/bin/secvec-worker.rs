//! The `secvec-worker` binary; see `secvec_worker`.
fn main() -> std::process::ExitCode {
    secvec_worker::main()
}

//! Embeds the path of the wheel's libtorch as the rpath of `secvec-worker` (and the tests), so
//! it runs without LD_LIBRARY_PATH. torch-sys exports that path to crates that depend on it
//! directly.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

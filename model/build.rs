//! Embeds the wheel's libtorch directory as the rpath of this crate's test and example
//! binaries, so they run without LD_LIBRARY_PATH, and records it, to load the CUDA backend from
//! there on demand.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=SECVEC_LIBTORCH_LIB={lib}");
}

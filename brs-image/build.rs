//! Bakes the paths scripts/setup recorded (.cargo/config.toml [env]) into the binary, so it finds
//! ONNX Runtime and the default CenterFace model without the user setting anything.
fn main() {
    for (from, to) in [
        ("BRS_ORT_DYLIB", "BRS_ORT_DYLIB_BUILD"),
        ("BRS_CENTERFACE_MODEL", "BRS_CENTERFACE_MODEL_BUILD"),
    ] {
        println!("cargo:rerun-if-env-changed={from}");
        if let Ok(v) = std::env::var(from) {
            println!("cargo:rustc-env={to}={v}");
        }
    }
}

//! Compiles and runs `csrc/layout_probe.c` against the headers of the interpreter PyO3 builds
//! for, and writes its output (Rust constants) to `$OUT_DIR/layout.rs`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=csrc/layout_probe.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    let python = config
        .executable
        .clone()
        .or_else(|| std::env::var("PYO3_PYTHON").ok())
        .unwrap_or_else(|| "python3".to_owned());
    let out = Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} to find its headers: {e}"));
    assert!(out.status.success(), "{python} failed to report its include directory");
    let include = String::from_utf8(out.stdout).expect("utf-8 path").trim().to_owned();
    assert!(
        PathBuf::from(&include).join("internal").join("pycore_gc.h").exists(),
        "{include} lacks CPython's internal headers (install the interpreter's -dev package)"
    );

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let exe = out_dir.join("layout_probe");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .arg(format!("-I{include}"))
        .arg("csrc/layout_probe.c")
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling csrc/layout_probe.c against {include} failed");
    let facts = Command::new(&exe).output().expect("run the layout probe");
    assert!(facts.status.success(), "the layout probe failed");
    let text = String::from_utf8(facts.stdout).expect("utf-8 probe output");
    std::fs::write(out_dir.join("layout.rs"), &text).expect("write layout.rs");
    // The digest of every layout fact, part of the archive fingerprint: computed here once
    // rather than in every process that opens an archive.
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
    std::fs::write(out_dir.join("layout_digest.rs"), format!("{digest:?}")).expect("write layout_digest.rs");
    println!("cargo:rustc-env=PYCDS_PYTHON_INCLUDE={include}");
}

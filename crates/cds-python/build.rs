//! Compiles and runs `csrc/layout_probe.c` against the headers of the interpreter PyO3 builds
//! for, and writes its output (Rust constants) to `$OUT_DIR/layout.rs`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=csrc/layout_probe.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    refuse_untested(config);
    // `Py_3_N` cfgs, for the few FFI items that exist only from some version on (frozendict).
    pyo3_build_config::use_pyo3_cfgs();
    let python = config
        .executable()
        .map(str::to_owned)
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
    link_for_a_small_resident_set(&compiler);
    // The probe runs here, at build time: it is built by this machine's own C compiler (the
    // one the interpreter's headers are installed for), whatever compiler or linker the
    // extension itself is built with (say, zig for a wheel that targets an older glibc).
    let host_cc = std::env::var("HOST_CC").unwrap_or_else(|_| "cc".to_owned());
    println!("cargo:rerun-if-env-changed=HOST_CC");
    let status = Command::new(&host_cc)
        .arg(format!("-I{include}"))
        .arg("csrc/layout_probe.c")
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {host_cc}: {e}"));
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
    write_build_facts(&python, &out_dir);
}

/// What the interpreter this extension is built with reports of itself at run time: its
/// version and the instance sizes of the types archives hold. The extension compares them with
/// the interpreter that loads it (`guard.rs`), so that a wheel loaded into another build of the
/// same version with other layouts stays off instead of crashing.
fn write_build_facts(python: &str, out_dir: &std::path::Path) {
    let script = r#"
import sys, types
kinds = [("str", str), ("bytes", bytes), ("tuple", tuple), ("int", int), ("float", float),
         ("complex", complex), ("code", types.CodeType), ("slice", slice)]
print("pub const BUILD_VERSION: (u32, u32) = (%d, %d);" % sys.version_info[:2])
print("pub const BUILD_TYPE_SIZES: &[(&str, usize, usize)] = &[")
for name, t in kinds:
    print('    ("%s", %d, %d),' % (name, t.__basicsize__, t.__itemsize__))
print("];")
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} to read its type sizes: {e}"));
    assert!(out.status.success(), "{python} failed to report its type sizes");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    std::fs::write(out_dir.join("build_facts.rs"), text).expect("write build_facts.rs");
}

/// The CPython versions pycds is built and tested on (CI runs the whole suite on each).
const TESTED: &[(u8, u8)] = &[(3, 11), (3, 13), (3, 14), (3, 15)];

/// Stops the build for an interpreter pycds has never been tested on (3.12, which cannot be
/// installed where pycds is tested, 3.16 and later, free-threaded builds): serving code objects
/// in place depends on details of each version that only a run of the suite checks.
fn refuse_untested(config: &pyo3_build_config::InterpreterConfig) {
    let v = config.version();
    let tested = TESTED.iter().map(|(a, b)| format!("{a}.{b}")).collect::<Vec<_>>().join(", ");
    assert!(
        TESTED.contains(&(v.major, v.minor)),
        "pycds is not built for CPython {}.{}: it supports only the versions it is tested on ({tested})",
        v.major,
        v.minor
    );
    assert!(
        !config.is_free_threaded(),
        "pycds is not built for free-threaded CPython {}.{}t: it supports only the default (GIL) builds",
        v.major,
        v.minor
    );
}

/// Two link settings that keep what every process importing `cds._cds` maps small (the
/// extension is loaded by every interpreter start-up that serves an archive):
///
/// - `link/cold-text.ld` gathers code that serving never runs (the dumper, std's backtrace
///   printer, the unwinder) after the rest of the text, on a 64 KiB boundary: the kernel maps a
///   file's pages in 64 KiB windows around each one touched, so cold code mixed with hot code
///   is resident anyway.
/// - The unwinder (which only a panic uses) is linked in from the C compiler's `libgcc_eh.a`
///   instead of loading `libgcc_s.so.1`, which plain CPython does not load: a shared library
///   more costs every process its load time and its resident pages. Where the compiler has no
///   `libgcc_eh.a`, std's usual `libgcc_s` is used.
///
/// Neither changes what any code does. `tests/test_startup.py` checks that no library is loaded
/// beyond plain CPython's; the panic tests of `tests/test_run_ahead.py`, that panics still unwind.
fn link_for_a_small_resident_set(compiler: &cc::Tool) {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    println!("cargo:rerun-if-changed=link/cold-text.ld");
    let script = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("link/cold-text.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-T,{}", script.display());
    // `-print-file-name` answers the bare name when the compiler has no such file.
    let eh = compiler
        .to_command()
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = eh.as_deref().filter(|p| p.is_absolute() && p.exists()).and_then(|p| p.parent()) {
        // A static library of the crate itself comes before std's `-lgcc_s` on the link line,
        // so the linker takes the unwinder from it and, linking shared libraries as needed,
        // drops `libgcc_s` (checked with LLD, rustc's default linker here, and with GNU ld).
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}

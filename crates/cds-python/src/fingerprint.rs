//! The interpreter fingerprint: an archive is used only by the interpreter build (and pycds
//! format, and struct layouts, and optimization level) that made it.

use pyo3::ffi;
use sha2::{Digest, Sha256};

use crate::layout;

/// What an archive records as its producer: the interpreter's description, then this pycds
/// build (version, archive format, and a digest of the layout facts it was compiled with), so
/// that a refusal can say which of the two differs.
pub fn producer(description: &str) -> String {
    let layouts: String = layout::LAYOUT_DIGEST[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{description}{PYCDS_SEPARATOR}{}, format {}, layouts {layouts}",
        env!("CARGO_PKG_VERSION"),
        cds_archive::FORMAT_VERSION
    )
}

/// Between the interpreter and the pycds build in a producer string.
pub const PYCDS_SEPARATOR: &str = "; pycds ";

/// `(fingerprint, producer)` of the running interpreter and this build (see [`producer`]).
/// Must be called with the GIL held.
pub fn current() -> ([u8; 32], String) {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string; `Py_OptimizeFlag` is read
    // through the sys.flags struct sequence, a live object, with the GIL held by the caller.
    let (version, optimize) = unsafe {
        let v = std::ffi::CStr::from_ptr(ffi::Py_GetVersion()).to_string_lossy().into_owned();
        (v, optimize_level())
    };
    let description = format!(
        "CPython {} ({}-{}, optimize={})",
        version.replace('\n', " "),
        std::env::consts::ARCH,
        std::env::consts::OS,
        optimize
    );
    let mut h = Sha256::new();
    h.update(b"pycds fingerprint\0");
    h.update(cds_archive::FORMAT_VERSION.to_le_bytes());
    h.update(description.as_bytes());
    h.update(layout::PY_VERSION_HEX.to_le_bytes());
    h.update(if cfg!(target_endian = "little") { b"le" } else { b"be" });
    h.update((std::mem::size_of::<usize>() as u32).to_le_bytes());
    h.update(layout::LAYOUT_DIGEST);
    (h.finalize().into(), producer(&description))
}

/// `sys.flags.optimize`: code compiled under -O differs, so it is part of the fingerprint.
///
/// SAFETY (caller): GIL held.
unsafe fn optimize_level() -> i64 {
    // SAFETY: caller contract; each returned pointer is checked before use and released.
    unsafe {
        let flags = ffi::PySys_GetObject(c"flags".as_ptr());
        if flags.is_null() {
            return -1;
        }
        let o = ffi::PyObject_GetAttrString(flags, c"optimize".as_ptr());
        if o.is_null() {
            ffi::PyErr_Clear();
            return -1;
        }
        let v = ffi::PyLong_AsLongLong(o);
        ffi::Py_DECREF(o);
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
        }
        v
    }
}

//! Code object versions (CPython 3.12+). Each code object carries a 32-bit version drawn from a
//! per-interpreter counter when it is made; functions made from it inherit it, and specialized
//! calls and attribute loads guard on it, so two live code objects must never share one.
//!
//! Archived code objects cannot draw from the counter without writing to every code object's
//! page at load. Instead, the dumper numbers them from [`BASE`] up (at most [`CAPACITY`] per
//! archive), and the loader, before the first archived module is used, moves the interpreter's
//! counter past the whole range, so that code made later never takes one of those numbers. If
//! the counter has already gone past [`BASE`] (four billion code objects would have to have been
//! made), the archive is refused and imports take the normal path.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;

use crate::layout;

/// The first version archived code objects take.
pub const BASE: u32 = 1 << 31;
/// How many code objects one archive may hold.
pub const CAPACITY: u32 = 1 << 24;

static RESERVED: AtomicBool = AtomicBool::new(false);

/// The version of the `index`-th code object of an archive.
pub fn archived(index: u32) -> Option<u32> {
    (index < CAPACITY).then(|| BASE + index)
}

/// Is `v` a version an archived code object may carry?
pub fn is_archived(v: u32) -> bool {
    (BASE..BASE + CAPACITY).contains(&v)
}

/// Moves the interpreter's counter past the archived range (once per process). Must be called
/// with the GIL held, before any archived code object reaches the interpreter.
pub fn reserve() -> Result<(), String> {
    let Some(off) = layout::INTERP_NEXT_CODE_VERSION else { return Ok(()) };
    if RESERVED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: the GIL is held (caller contract), which serializes every access to the counter on
    // a GIL build; `off` is offsetof(PyInterpreterState, func_state.next_version) from the
    // interpreter's own headers, so the pointer is to that aligned u32 field of the live state.
    let next = unsafe {
        let p = (ffi::PyInterpreterState_Get() as *mut u8).add(off) as *mut u32;
        let next = *p;
        if next != 0 && next <= BASE {
            *p = BASE + CAPACITY;
        }
        next
    };
    if next == 0 || next > BASE {
        return Err(format!(
            "this interpreter has handed out code versions up to {next:#x}, into the range archived code uses"
        ));
    }
    RESERVED.store(true, Ordering::Release);
    Ok(())
}

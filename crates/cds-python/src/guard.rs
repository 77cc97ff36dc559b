//! The build guard: before pycds does anything in a process, the interpreter that loaded the
//! extension must be the kind it was built for: the same version, and the same instance sizes
//! of every type an archive holds (what can be observed at run time of the layouts the build
//! compiled in). A wheel installed into another interpreter build, or a build whose facts are
//! wrong, then stays off: one line on stderr, `cds.info()['error']`, a normal run.

use std::sync::OnceLock;

use pyo3::prelude::*;

use crate::externals::{self, Kind};

mod built {
    include!(concat!(env!("OUT_DIR"), "/build_facts.rs"));
}

static VERDICT: OnceLock<Result<(), String>> = OnceLock::new();

/// The type an entry of `built::BUILD_TYPE_SIZES` names.
fn kind_named(name: &str) -> Option<Kind> {
    Some(match name {
        "str" => Kind::Str,
        "bytes" => Kind::Bytes,
        "tuple" => Kind::Tuple,
        "int" => Kind::Int,
        "float" => Kind::Float,
        "complex" => Kind::Complex,
        "code" => Kind::Code,
        "slice" => Kind::Slice,
        _ => return None,
    })
}

/// Why this interpreter is not the one the extension was built for, if it is not (decided
/// once per process).
pub fn check(py: Python<'_>) -> Result<(), String> {
    VERDICT.get_or_init(|| compare(py)).clone()
}

fn compare(py: Python<'_>) -> Result<(), String> {
    let (major, minor) = built::BUILD_VERSION;
    let running: (u32, u32) = py
        .import("sys")
        .and_then(|s| {
            let v = s.getattr("version_info")?;
            Ok((v.get_item(0)?.extract()?, v.get_item(1)?.extract()?))
        })
        .map_err(|e| format!("cannot read the interpreter's version: {}", crate::message(py, e)))?;
    if running != (major, minor) {
        return Err(format!(
            "this pycds build is for CPython {major}.{minor}, not {}.{}; pycds is off",
            running.0, running.1
        ));
    }
    // For tests only: a build whose facts are wrong, without building one.
    let wrong = std::env::var("PYCDS_TEST_WRONG_BUILD_FACT").unwrap_or_default();
    for &(name, basic, item) in built::BUILD_TYPE_SIZES {
        let Some(kind) = kind_named(name) else { continue };
        let basic = if wrong == name { basic + 8 } else { basic };
        // SAFETY: reading two fields of a static built-in type object, which never change once
        // the interpreter runs.
        let (now_basic, now_item) = unsafe {
            let t = externals::type_object(kind);
            ((*t).tp_basicsize as usize, (*t).tp_itemsize as usize)
        };
        if (basic, item) != (now_basic, now_item) {
            return Err(format!(
                "this pycds build does not match this interpreter: it was built for {name} objects of \
                 {basic} bytes (+{item} per item), this CPython {major}.{minor} has {now_basic} (+{now_item}); \
                 pycds is off (reinstall pycds for this interpreter)"
            ));
        }
    }
    Ok(())
}

/// `_cds.build_guard()`: `None` when the interpreter is the kind this build is for, else why not.
#[pyfunction]
pub fn build_guard(py: Python<'_>) -> Option<String> {
    check(py).err()
}

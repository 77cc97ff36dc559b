//! Externals: interpreter objects that archived objects point at but that the archive does not
//! contain (type objects, `None`, `True`, `False`, `Ellipsis`, and the singletons the interpreter
//! keeps statically: small ints, the empty tuple/str/bytes, one-character latin-1 strings and
//! one-byte bytes). The archive names them by `(kind, arg)`; each process resolves them to its
//! own addresses. An object is treated as an external only when it *is* the singleton the
//! running interpreter hands out, so what counts as a singleton always comes from the
//! interpreter itself.

use cds_archive::External;
use pyo3::ffi;

use crate::layout;

pub const TYPE: u32 = 1;
pub const NONE: u32 = 2;
pub const TRUE: u32 = 3;
pub const FALSE: u32 = 4;
pub const ELLIPSIS: u32 = 5;
pub const SMALL_INT: u32 = 6;
pub const EMPTY_TUPLE: u32 = 7;
pub const EMPTY_STR: u32 = 8;
pub const EMPTY_BYTES: u32 = 9;
pub const LATIN1_CHAR: u32 = 10;
pub const BYTE_CHAR: u32 = 11;

/// The types whose instances an archive holds, by their `arg` under [`TYPE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str = 0,
    Bytes = 1,
    Tuple = 2,
    Int = 3,
    Float = 4,
    Complex = 5,
    Code = 6,
    /// A constant only on 3.14+, where the compiler folds constant subscripts.
    Slice = 7,
}

/// Every archived type, in `Kind` order (so `KINDS[k as usize] == k`).
pub const KINDS: [Kind; 8] =
    [Kind::Str, Kind::Bytes, Kind::Tuple, Kind::Int, Kind::Float, Kind::Complex, Kind::Code, Kind::Slice];

/// The kind whose `TYPE` external argument is `arg`.
pub fn kind_from_arg(arg: i64) -> Option<Kind> {
    usize::try_from(arg).ok().and_then(|i| KINDS.get(i).copied())
}

pub fn type_object(kind: Kind) -> *mut ffi::PyTypeObject {
    // Taking the address of a static type object exported by libpython reads nothing.
    match kind {
        Kind::Str => &raw mut ffi::PyUnicode_Type,
        Kind::Bytes => &raw mut ffi::PyBytes_Type,
        Kind::Tuple => &raw mut ffi::PyTuple_Type,
        Kind::Int => &raw mut ffi::PyLong_Type,
        Kind::Float => &raw mut ffi::PyFloat_Type,
        Kind::Complex => &raw mut ffi::PyComplex_Type,
        Kind::Code => &raw mut ffi::PyCode_Type,
        Kind::Slice => &raw mut ffi::PySlice_Type,
    }
}

/// The frozendict type (PEP 814), on interpreters that have it (3.15+): a constant kind that
/// is archived as a tuple of `(key, value)` tuples and rebuilt at load, as frozensets are.
pub fn frozendict_type() -> Option<*mut ffi::PyTypeObject> {
    #[cfg(Py_3_15)]
    {
        Some(&raw mut ffi::PyFrozenDict_Type)
    }
    #[cfg(not(Py_3_15))]
    {
        None
    }
}

/// A new frozendict of the `(key, value)` tuples of the tuple `pairs`, in their order; null
/// with a Python error set if they cannot make one, and null with no error set where this
/// interpreter has no frozendict.
///
/// SAFETY (caller): GIL held, `pairs` a live object.
pub unsafe fn frozendict_from_pairs(pairs: *mut ffi::PyObject) -> *mut ffi::PyObject {
    #[cfg(Py_3_15)]
    {
        // SAFETY: caller contract; `PyFrozenDict_New` takes any iterable of pairs.
        unsafe { ffi::PyFrozenDict_New(pairs) }
    }
    #[cfg(not(Py_3_15))]
    {
        let _ = pairs;
        std::ptr::null_mut()
    }
}

pub fn kind_of(tp: *mut ffi::PyTypeObject) -> Option<Kind> {
    KINDS.into_iter().find(|&k| type_object(k) == tp)
}

/// This process's address for `ext`, or `None` for an unknown kind or argument.
/// Must be called with the GIL held.
pub fn resolve(ext: External) -> Option<*mut ffi::PyObject> {
    // SAFETY: the GIL is held (every caller runs inside a PyO3 method). The constructors called
    // return new references to interpreter-owned singletons; the singleton outlives the
    // reference we drop, because the interpreter itself keeps it (which `is_singleton` checks).
    unsafe {
        let arg = ext.arg;
        let made = match ext.kind {
            TYPE => {
                return Some(type_object(kind_from_arg(arg)?).cast());
            }
            NONE => return Some(ffi::Py_None()),
            TRUE => return Some(ffi::Py_True()),
            FALSE => return Some(ffi::Py_False()),
            ELLIPSIS => return Some(ffi::Py_Ellipsis()),
            SMALL_INT if (layout::SMALL_INT_MIN..=layout::SMALL_INT_MAX).contains(&arg) => {
                ffi::PyLong_FromLongLong(arg)
            }
            EMPTY_TUPLE => ffi::PyTuple_New(0),
            EMPTY_STR => ffi::PyUnicode_FromStringAndSize(c"".as_ptr(), 0),
            EMPTY_BYTES => ffi::PyBytes_FromStringAndSize(c"".as_ptr(), 0),
            LATIN1_CHAR if (0..256).contains(&arg) => ffi::PyUnicode_FromOrdinal(arg as i32),
            BYTE_CHAR if (0..256).contains(&arg) => {
                let b = [arg as u8 as std::ffi::c_char];
                ffi::PyBytes_FromStringAndSize(b.as_ptr(), 1)
            }
            _ => return None,
        };
        if made.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let singleton = is_singleton(made);
        ffi::Py_DECREF(made);
        singleton.then_some(made)
    }
}

/// True when a second request for the same value returns the same object: the interpreter
/// keeps it, so a borrowed pointer to it stays valid for the life of the process.
///
/// SAFETY (caller): GIL held, `obj` a valid object made by `resolve`.
unsafe fn is_singleton(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: per the caller contract; `obj` is alive (we hold a reference) and exact-typed.
    unsafe {
        let tp = ffi::Py_TYPE(obj);
        let again = if tp == &raw mut ffi::PyLong_Type {
            ffi::PyLong_FromLongLong(ffi::PyLong_AsLongLong(obj))
        } else if tp == &raw mut ffi::PyTuple_Type {
            ffi::PyTuple_New(0)
        } else if tp == &raw mut ffi::PyUnicode_Type {
            match ffi::PyUnicode_GetLength(obj) {
                0 => ffi::PyUnicode_FromStringAndSize(c"".as_ptr(), 0),
                1 => ffi::PyUnicode_FromOrdinal(ffi::PyUnicode_ReadChar(obj, 0) as i32),
                _ => return false,
            }
        } else if tp == &raw mut ffi::PyBytes_Type {
            ffi::PyBytes_FromStringAndSize(ffi::PyBytes_AsString(obj), ffi::PyBytes_Size(obj))
        } else {
            return false;
        };
        if again.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let same = again == obj;
        ffi::Py_DECREF(again);
        same
    }
}

/// The external `obj` is, if any. Must be called with the GIL held and a live `obj`.
pub fn classify(obj: *mut ffi::PyObject) -> Option<External> {
    let ext = |kind, arg| External { kind, arg };
    // SAFETY: GIL held and `obj` alive (caller contract: it is reachable from a code object the
    // caller holds). Only type checks and value reads of exact built-in types are made.
    unsafe {
        if obj == ffi::Py_None() {
            return Some(ext(NONE, 0));
        }
        if obj == ffi::Py_True() {
            return Some(ext(TRUE, 0));
        }
        if obj == ffi::Py_False() {
            return Some(ext(FALSE, 0));
        }
        if obj == ffi::Py_Ellipsis() {
            return Some(ext(ELLIPSIS, 0));
        }
        let tp = ffi::Py_TYPE(obj);
        let candidate = match kind_of(tp)? {
            Kind::Int => {
                let mut overflow = 0;
                let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
                if overflow != 0 || !(layout::SMALL_INT_MIN..=layout::SMALL_INT_MAX).contains(&v) {
                    return None;
                }
                ext(SMALL_INT, v)
            }
            Kind::Tuple if ffi::PyTuple_Size(obj) == 0 => ext(EMPTY_TUPLE, 0),
            Kind::Str => match ffi::PyUnicode_GetLength(obj) {
                0 => ext(EMPTY_STR, 0),
                1 => {
                    let c = ffi::PyUnicode_ReadChar(obj, 0);
                    if c >= 256 {
                        return None;
                    }
                    ext(LATIN1_CHAR, c as i64)
                }
                _ => return None,
            },
            Kind::Bytes => match ffi::PyBytes_Size(obj) {
                0 => ext(EMPTY_BYTES, 0),
                1 => ext(BYTE_CHAR, *ffi::PyBytes_AsString(obj) as u8 as i64),
                _ => return None,
            },
            _ => return None,
        };
        (resolve(candidate) == Some(obj)).then_some(candidate)
    }
}

/// The external naming a type object.
pub fn type_external(kind: Kind) -> External {
    External { kind: TYPE, arg: kind as i64 }
}

/// What kind of object an external is, for the structural validation of archived objects.
pub fn class_of(ext: External) -> Option<crate::validate::ExtClass> {
    use crate::validate::ExtClass;
    Some(match ext.kind {
        TYPE => ExtClass::Type(kind_from_arg(ext.arg)?),
        NONE | TRUE | FALSE | ELLIPSIS => ExtClass::Singleton,
        SMALL_INT => ExtClass::Value(Kind::Int, -1),
        EMPTY_TUPLE => ExtClass::Value(Kind::Tuple, 0),
        EMPTY_STR => ExtClass::Value(Kind::Str, 0),
        EMPTY_BYTES => ExtClass::Value(Kind::Bytes, 0),
        LATIN1_CHAR => ExtClass::Value(Kind::Str, 1),
        BYTE_CHAR => ExtClass::Value(Kind::Bytes, 1),
        _ => return None,
    })
}

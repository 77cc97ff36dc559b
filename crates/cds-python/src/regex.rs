//! Compiled regular-expression programs: what `re` makes of a pattern before it hands the result
//! to `_sre.compile`, kept in the archive's keyed records so that a later run skips the
//! pattern's parse and compile (pure Python in `re._parser` and `re._compiler`, and at start-up
//! often a larger cost than unmarshalling the modules that compile them).
//!
//! This module is the one place that knows how such a program is encoded. A key is what
//! `re._compiler.compile(pattern, flags)` is called with; a value is the arguments
//! `_sre.compile` takes after the pattern. `_sre.compile` checks the program it is given (a
//! damaged one raises, it never runs), and the Python side falls back to compiling normally.
//!
//! Key: `u8 kind` (0 `str`, 1 `bytes`), `i64 flags`, then the pattern (UTF-8, or the bytes).
//! Value: `i64 flags`, `i64 groups`, `u32 code_len`, `u32 name_count`, `code_len × u32`, then
//! per named group `u32 index`, `u32 len`, UTF-8 name. All little-endian.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// The most groups a program may claim (far above what `re` accepts in practice, and small
/// enough that the tuple a loader builds for it stays small).
const MAX_GROUPS: i64 = 1 << 16;

/// `flags` of a `re._compiler.compile` call as the archive keys it: only an exact `int` that
/// fits 64 bits (what `re.compile` passes on), else `None`.
pub fn flags_kept(flags: &Bound<'_, PyAny>) -> Option<i64> {
    if !flags.is_exact_instance_of::<pyo3::types::PyInt>() {
        return None;
    }
    flags.extract().ok()
}

/// The key for `re._compiler.compile(pattern, flags)`, or `None` when the call is not one the
/// archive keeps: only an exact `str` (that UTF-8 can encode) or `bytes` pattern.
pub fn key(pattern: &Bound<'_, PyAny>, flags: i64) -> Option<Vec<u8>> {
    let (kind, text): (u8, &[u8]) = if let Ok(s) = pattern.cast_exact::<PyString>() {
        (0, s.to_str().ok()?.as_bytes())
    } else if let Ok(b) = pattern.cast_exact::<PyBytes>() {
        (1, b.as_bytes())
    } else {
        return None;
    };
    let mut k = Vec::with_capacity(9 + text.len());
    k.push(kind);
    k.extend_from_slice(&flags.to_le_bytes());
    k.extend_from_slice(text);
    Some(k)
}

/// The arguments of `_sre.compile` after the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub flags: i64,
    /// `_sre.compile`'s `groups`: the number of capturing groups.
    pub groups: i64,
    pub code: Vec<u32>,
    /// Named groups (`groupindex`), in the pattern's order.
    pub names: Vec<(String, u32)>,
}

impl Program {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + 4 * self.code.len());
        v.extend_from_slice(&self.flags.to_le_bytes());
        v.extend_from_slice(&self.groups.to_le_bytes());
        v.extend_from_slice(&(self.code.len() as u32).to_le_bytes());
        v.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for c in &self.code {
            v.extend_from_slice(&c.to_le_bytes());
        }
        for (name, index) in &self.names {
            v.extend_from_slice(&index.to_le_bytes());
            v.extend_from_slice(&(name.len() as u32).to_le_bytes());
            v.extend_from_slice(name.as_bytes());
        }
        v
    }

    /// Decodes a value; `None` when it is malformed (lengths past its end, a group index out of
    /// range, a name that is not UTF-8, bytes left over).
    pub fn decode(mut v: &[u8]) -> Option<Program> {
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = (v.get(..n)?, v.get(n..)?);
            v = rest;
            Some(head)
        };
        let i64_at = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
        let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let flags = i64_at(take(8)?);
        let groups = i64_at(take(8)?);
        let code_len = u32_at(take(4)?) as usize;
        let name_count = u32_at(take(4)?) as usize;
        if !(0..MAX_GROUPS).contains(&groups) || name_count as i64 > groups {
            return None;
        }
        let code = take(code_len.checked_mul(4)?)?.chunks_exact(4).map(u32_at).collect();
        let mut names = Vec::with_capacity(name_count);
        for _ in 0..name_count {
            let index = u32_at(take(4)?);
            let len = u32_at(take(4)?) as usize;
            let name = std::str::from_utf8(take(len)?).ok()?.to_owned();
            if index == 0 || index as i64 > groups {
                return None;
            }
            names.push((name, index));
        }
        if !v.is_empty() {
            return None;
        }
        Some(Program { flags, groups, code, names })
    }

    /// Reads what the dumper passes: `groupindex` a dict of `str` to group number.
    pub fn from_python(flags: i64, code: Vec<u32>, groups: i64, groupindex: &Bound<'_, PyDict>) -> PyResult<Program> {
        let mut names = Vec::with_capacity(groupindex.len());
        for (k, v) in groupindex.iter() {
            names.push((k.extract::<String>()?, v.extract::<u32>()?));
        }
        let p = Program { flags, groups, code, names };
        // Refuse what a loader would refuse, so a dump never writes a record no run can use.
        match Program::decode(&p.encode()) {
            Some(back) if back == p => Ok(p),
            _ => Err(pyo3::exceptions::PyValueError::new_err("not a program the archive can hold")),
        }
    }

    /// `(flags, code, groups, groupindex, indexgroup)`: the arguments `_sre.compile` takes after
    /// the pattern, as `re._compiler.compile` builds them.
    pub fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let code = PyList::new(py, &self.code)?;
        let groupindex = PyDict::new(py);
        let mut indexgroup: Vec<Option<&str>> = vec![None; self.groups as usize + 1];
        for (name, index) in &self.names {
            groupindex.set_item(name, index)?;
            indexgroup[*index as usize] = Some(name);
        }
        let indexgroup = PyTuple::new(py, indexgroup)?;
        PyTuple::new(
            py,
            [
                self.flags.into_pyobject(py)?.into_any(),
                code.into_any(),
                self.groups.into_pyobject(py)?.into_any(),
                groupindex.into_any(),
                indexgroup.into_any(),
            ],
        )
    }
}

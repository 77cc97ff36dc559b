//! `cds._cds`: the CPython extension of pycds. It copies code objects into archives
//! (`copier`), maps archives and fixes modules up on first import (`mapping`, `loader`), and
//! resolves interpreter externals (`externals`). Layout facts come from `layout`, generated from
//! the interpreter's headers at build time. The Python package `cds` drives it.

#![deny(unsafe_op_in_unsafe_fn)]

mod auto;
mod code_versions;
mod copier;
mod externals;
mod finder;
mod fingerprint;
mod guard;
mod hooks;
mod layout;
mod loader;
mod mapping;
mod pathstate;
mod regex;
mod run_ahead;
mod serve;
mod validate;

use cds_archive::{ArchiveBuilder, ModuleMeta, SearchEntry};
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use loader::LoadedArchive;

create_exception!(
    _cds,
    ArchiveError,
    pyo3::exceptions::PyException,
    "An archive, or a module in it, cannot be used; the message says why."
);

/// Where archives are laid out to be mapped. A free range far from the heap, the executable and
/// the shared libraries on x86-64 and aarch64 Linux; if it is taken, the archive is mapped
/// elsewhere and relocated module by module.
const PREFERRED_BASE: u64 = 0x2000_0000_0000;

fn err(msg: impl Into<String>) -> PyErr {
    ArchiveError::new_err(msg.into())
}

/// The message of `e`, read without PyO3's lazy normalization: that normalizes on a detached
/// thread state and re-attaches through `Python::attach`, which panics while the interpreter is
/// still starting (3.15 reports `Py_IsInitialized() == 0` until `site` has run, and `.pth` files
/// run inside `site`). Raising the error into the interpreter and fetching it back normalizes it
/// with the thread attached throughout.
pub(crate) fn message(py: Python<'_>, e: PyErr) -> String {
    e.restore(py);
    match PyErr::take(py) {
        Some(e) => e.value(py).to_string(),
        None => "an error with no message".to_owned(),
    }
}

/// `_cds.auto_start()`: starts AUTO (see `auto::start`) and returns the archive path.
#[pyfunction]
fn auto_start(py: Python<'_>) -> PyResult<String> {
    auto::start(py)
}

/// An archive mapped for serving imports.
#[pyclass(module = "cds._cds", frozen)]
pub(crate) struct Archive {
    /// Shared with the thread that prepares modules ahead of their import, if one runs.
    pub(crate) inner: std::sync::Arc<LoadedArchive>,
}

impl Drop for Archive {
    fn drop(&mut self) {
        // The mapping itself goes when the run-ahead thread lets go of it too.
        self.inner.stop_running_ahead(true);
    }
}

#[pymethods]
impl Archive {
    /// Maps the archive at `path`. Raises `ArchiveError` (with the reason) if it is missing,
    /// unreadable, truncated, corrupt or made by another interpreter.
    #[new]
    fn new(py: Python<'_>, path: &str) -> PyResult<Self> {
        guard::check(py).map_err(err)?;
        LoadedArchive::open(path).map(|inner| Archive { inner: inner.into() }).map_err(err)
    }

    #[getter]
    fn path(&self) -> &str {
        &self.inner.path
    }

    /// The index of `name` in the archive, or `None`.
    fn lookup(&self, name: &str) -> PyResult<Option<u32>> {
        self.inner.lookup(name).map_err(err)
    }

    /// The code object of module `index`, fixed up on first use.
    pub(crate) fn load(&self, py: Python<'_>, index: u32) -> PyResult<Py<PyAny>> {
        let (code, _) = self.inner.load(index).map_err(err)?;
        // SAFETY: `load` returns a new reference to a valid code object, with the GIL held.
        Ok(unsafe { Bound::from_owned_ptr(py, code) }.unbind())
    }

    /// Facts about the archive and its mapping.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.inner.header();
        let d = PyDict::new(py);
        d.set_item("path", &self.inner.path)?;
        d.set_item("producer", &self.inner.producer)?;
        d.set_item("fingerprint", hex(&h.fingerprint))?;
        d.set_item("format_version", h.format_version)?;
        d.set_item("modules", h.module_count)?;
        d.set_item("file_bytes", self.inner.file_len())?;
        d.set_item("objects_bytes", h.objects_len)?;
        d.set_item("metadata_bytes", h.objects_off)?;
        d.set_item("run_once_region_bytes", h.run_once_len)?;
        d.set_item("externals", h.externals_count)?;
        d.set_item("preferred_base", h.preferred_base)?;
        d.set_item("mapped_at", self.inner.mapped_at())?;
        let (released, released_bytes) = self.inner.released();
        d.set_item("released_modules", released)?;
        d.set_item("released_bytes", released_bytes)?;
        d.set_item("prepared_ahead", self.inner.prepared_ahead())?;
        d.set_item("load_ns", self.inner.load_ns())?;
        d.set_item("regexes", h.keyed_count)?;
        Ok(d)
    }

    /// Every entry, checked, with its staleness now: a list of dicts (used by `cds inspect`).
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let mut out = Vec::new();
        for e in self.inner.entries().map_err(err)? {
            let meta = e.meta().map_err(|x| err(x.to_string()))?;
            let d = PyDict::new(py);
            d.set_item("name", e.name)?;
            d.set_item("origin", &meta.origin)?;
            d.set_item("is_package", meta.is_package)?;
            d.set_item("objects_bytes", e.objects_len)?;
            d.set_item("relocations", e.reloc_count())?;
            d.set_item("search", meta.search.iter().map(|s| s.path.clone()).collect::<Vec<_>>())?;
            d.set_item("stale", loader::staleness(&meta))?;
            out.push(d);
        }
        Ok(out)
    }

    /// Fixes module `index` up and returns what it took: a dict with `relocations`, `written`
    /// (slots whose value changed), `intern_fixups` (slots filled with interned strings), `frozenset_fixups` and the nanoseconds of
    /// each phase (`verify_ns`, `relocate_ns`, `validate_ns`, `fixups_ns`); `None` when it was
    /// already fixed up. For tests and measurements.
    fn fix_up_stats<'py>(&self, py: Python<'py>, index: u32) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (code, stats) = self.inner.load(index).map_err(err)?;
        // SAFETY: GIL held (we are in a method); drop the new reference `load` returned.
        unsafe { pyo3::ffi::Py_DECREF(code) };
        let Some(s) = stats else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("relocations", s.relocs)?;
        d.set_item("written", s.written)?;
        d.set_item("intern_fixups", s.intern_fixups)?;
        d.set_item("frozenset_fixups", s.frozenset_fixups)?;
        d.set_item("frozendict_fixups", s.frozendict_fixups)?;
        for (name, ns) in ["verify_ns", "relocate_ns", "validate_ns", "fixups_ns"].iter().zip(s.phase_ns) {
            d.set_item(*name, ns)?;
        }
        Ok(Some(d))
    }
}

impl Archive {
    /// The compiled program the archive holds for `re._compiler.compile(pattern, flags)`, or
    /// `None` when it holds none (or the call is not one it keeps); an error says why a record
    /// is damaged.
    pub(crate) fn regex(&self, pattern: &Bound<'_, PyAny>, flags: i64) -> Result<Option<regex::Program>, String> {
        if self.inner.header().keyed_count == 0 {
            return Ok(None);
        }
        let Some(key) = regex::key(pattern, flags) else { return Ok(None) };
        let Some(value) = self.inner.keyed(&key)? else { return Ok(None) };
        regex::Program::decode(value)
            .map(Some)
            .ok_or_else(|| "corrupt: a compiled regular expression is malformed".into())
    }
}

/// Builds an archive from code objects.
#[pyclass(module = "cds._cds")]
struct ArchiveWriter {
    builder: Option<ArchiveBuilder>,
    code_count: u32,
}

#[pymethods]
impl ArchiveWriter {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        guard::check(py).map_err(err)?;
        let (fp, description) = fingerprint::current();
        let mut builder = ArchiveBuilder::new(fp, &description, PREFERRED_BASE);
        // Only where the loader can tell that run-once objects are dead (reference counts that
        // move) is it worth pooling them in a region of their own.
        builder.pool_run_once(loader::CAN_RELEASE_RUN_ONCE);
        Ok(ArchiveWriter { builder: Some(builder), code_count: 0 })
    }

    /// Archives module `name` from its code object. `search` lists the search locations, in
    /// order, up to and including the one holding `origin`; their states are recorded now.
    /// Returns the number of object bytes. Raises `ArchiveError` if a constant cannot be
    /// archived (the caller skips that module).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        code: &Bound<'_, PyAny>,
        origin: String,
        is_package: bool,
        source_mtime_ns: i64,
        source_size: u64,
        search: Vec<String>,
    ) -> PyResult<usize> {
        let builder = self.builder.as_mut().ok_or_else(|| err("writer already written"))?;
        if builder.contains(name) {
            return Err(err(format!("{name} is already in the archive")));
        }
        let parts = copier::copy_module(builder, &mut self.code_count, code.as_ptr())
            .map_err(|e| err(format!("{name}: {e}")))?;
        let size = parts.0.len();
        // The digest of the bytes the code was compiled from, if the file still has the time and
        // size the caller saw around compiling it (read, then checked again); else none that
        // any file has (all zeros), and a changed mtime makes the module stale as before.
        let same = || pathstate::source_stat(&origin) == Some((source_mtime_ns, source_size));
        let source_digest =
            same().then(|| pathstate::source_digest(&origin)).flatten().filter(|_| same()).unwrap_or([0; 32]);
        let search = search.into_iter().map(|path| SearchEntry { state: pathstate::path_state(&path), path }).collect();
        let meta = ModuleMeta { origin, is_package, source_mtime_ns, source_size, source_digest, search };
        builder.add_module(copier::into_input(name, meta, parts)).map_err(|e| err(format!("{name}: {e}")))?;
        Ok(size)
    }

    /// Keeps the compiled program of `re._compiler.compile(pattern, flags)`: `final_flags`,
    /// `code`, `groups` and `groupindex` as `_sre.compile` takes them. Returns whether it was
    /// added (`False` for a call the archive does not keep, or a pattern already added).
    fn add_regex(
        &mut self,
        pattern: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
        final_flags: i64,
        code: Vec<u32>,
        groups: i64,
        groupindex: &Bound<'_, PyDict>,
    ) -> PyResult<bool> {
        let builder = self.builder.as_mut().ok_or_else(|| err("writer already written"))?;
        let Some(key) = regex::flags_kept(flags).and_then(|f| regex::key(pattern, f)) else { return Ok(false) };
        let program = regex::Program::from_python(final_flags, code, groups, groupindex)?;
        let before = builder.keyed_count();
        builder.add_keyed(key, program.encode()).map_err(|e| err(e.to_string()))?;
        Ok(builder.keyed_count() > before)
    }

    fn __len__(&self) -> usize {
        self.builder.as_ref().map_or(0, |b| b.module_count())
    }

    fn __contains__(&self, name: &str) -> bool {
        self.builder.as_ref().is_some_and(|b| b.contains(name))
    }

    /// Writes the archive atomically to `path`; returns sizes.
    fn write<'py>(&mut self, py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
        let builder = self.builder.take().ok_or_else(|| err("writer already written"))?;
        let st = builder.write_to(&path).map_err(|e| err(e.to_string()))?;
        let d = PyDict::new(py);
        d.set_item("modules", st.modules)?;
        d.set_item("file_bytes", st.file_size)?;
        d.set_item("objects_bytes", st.objects_bytes)?;
        d.set_item("metadata_bytes", st.metadata_bytes)?;
        d.set_item("regexes", st.keyed)?;
        Ok(d)
    }
}

/// `(kind, mtime_ns, size)` of a path: kind 0 absent (or relative), 1 directory, 2 file.
#[pyfunction]
fn path_state(path: &str) -> (u8, i64, u64) {
    pathstate::encode(pathstate::path_state(path))
}

/// `(mtime_ns, size)` of a source file, or `None`.
#[pyfunction]
fn source_stat(path: &str) -> Option<(i64, u64)> {
    pathstate::source_stat(path)
}

/// `(fingerprint_hex, description)` of the running interpreter.
#[pyfunction(name = "fingerprint")]
fn interpreter_fingerprint() -> (String, String) {
    let (fp, d) = fingerprint::current();
    (hex(&fp), d)
}

/// Layout facts of this build that tests use to make archives lie in precise ways (offsets in
/// bytes; `None` where this interpreter version lacks the field).
#[pyfunction]
fn layout_facts(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("archived_refcnt", layout::ARCHIVED_REFCNT)?;
    d.set_item("ob_type", layout::OB_TYPE)?;
    d.set_item("str_state", layout::STR_STATE)?;
    d.set_item("str_state_interned", layout::STR_STATE_INTERNED)?;
    d.set_item("str_state_static", layout::STR_STATE_STATIC)?;
    d.set_item("long_size_word", layout::LONG_SIZE_WORD)?;
    d.set_item("long_tagged", layout::LONG_TAGGED)?;
    d.set_item("tuple_hash", layout::TUPLE_HASH)?;
    d.set_item("tuple_items", layout::TUPLE_ITEMS)?;
    d.set_item("code_version", layout::CODE_VERSION)?;
    d.set_item("interp_next_code_version", layout::INTERP_NEXT_CODE_VERSION)?;
    d.set_item("code_version_base", code_versions::BASE)?;
    d.set_item("code_version_capacity", code_versions::CAPACITY)?;
    d.set_item(
        "type_args",
        externals::KINDS.iter().map(|&k| (format!("{k:?}").to_lowercase(), k as u32)).collect::<Vec<_>>(),
    )?;
    Ok(d)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The module's classes and exception, made on first use: making a type costs start-up time
/// (`python -c pass` loads this module), and most processes need only some of them. Attribute
/// access finds the ones not made yet through the module's `__getattr__` (PEP 562), which makes
/// the type and stores it in the module.
const LAZY_ATTRS: [&str; 6] =
    ["Archive", "ArchiveWriter", "ArchiveFinder", "ArchiveLoader", "RegexCompile", "ArchiveError"];

fn lazy_attr<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let ty = match name {
        "Archive" => py.get_type::<Archive>(),
        "ArchiveWriter" => py.get_type::<ArchiveWriter>(),
        "ArchiveFinder" => py.get_type::<finder::ArchiveFinder>(),
        "ArchiveLoader" => serve::loader_class(py)?.clone(),
        "RegexCompile" => py.get_type::<hooks::RegexCompile>(),
        "ArchiveError" => py.get_type::<ArchiveError>(),
        _ => return Ok(None),
    };
    Ok(Some(ty.into_any()))
}

/// `_cds.__getattr__`: makes a class of the module on first access (see `LAZY_ATTRS`).
#[pyfunction]
#[pyo3(name = "__getattr__", pass_module)]
fn module_getattr<'py>(module: &Bound<'py, PyModule>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let value = lazy_attr(module.py(), name)?.ok_or_else(|| {
        pyo3::exceptions::PyAttributeError::new_err(format!("module 'cds._cds' has no attribute '{name}'"))
    })?;
    module.dict().set_item(name, &value)?;
    Ok(value)
}

/// `_cds.__dir__`: the module's attributes, with the classes not made yet.
#[pyfunction]
#[pyo3(name = "__dir__", pass_module)]
fn module_dir(module: &Bound<'_, PyModule>) -> PyResult<Vec<String>> {
    let mut names: Vec<String> = module.dict().keys().extract()?;
    names.extend(LAZY_ATTRS.iter().map(|s| s.to_string()));
    names.sort();
    names.dedup();
    Ok(names)
}

#[pymodule]
fn _cds(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Set in the module's dict directly: `PyModule::add` also keeps an `__all__`, which costs
    // start-up time and which nothing imports `*` from.
    let d = m.dict();
    for f in [
        wrap_pyfunction!(finder::boot, m)?,
        wrap_pyfunction!(finder::booted, m)?,
        wrap_pyfunction!(guard::build_guard, m)?,
        wrap_pyfunction!(auto::auto_config, m)?,
        wrap_pyfunction!(auto::auto_imported_normally, m)?,
        wrap_pyfunction!(auto_start, m)?,
        wrap_pyfunction!(finder::insert_finder, m)?,
        wrap_pyfunction!(path_state, m)?,
        wrap_pyfunction!(source_stat, m)?,
        wrap_pyfunction!(interpreter_fingerprint, m)?,
        wrap_pyfunction!(layout_facts, m)?,
        wrap_pyfunction!(serve::serve_log, m)?,
        wrap_pyfunction!(serve::set_verbosity, m)?,
        wrap_pyfunction!(serve::say_py, m)?,
        wrap_pyfunction!(module_getattr, m)?,
        wrap_pyfunction!(module_dir, m)?,
    ] {
        d.set_item(f.getattr("__name__")?, f)?;
    }
    d.set_item("LAYOUT_PYTHON", layout::PY_VERSION)?;
    d.set_item("IMMORTAL_OBJECTS", layout::IMMORTAL_OBJECTS)?;
    d.set_item("FORMAT_VERSION", cds_archive::FORMAT_VERSION)?;
    Ok(())
}

//! The front of SHARE mode, native so that a process pays almost nothing for having an archive:
//! `boot` (what `pycds.pth` calls at start-up) and the meta path finder. The finder opens the
//! archive on the first import that reaches it and answers "not archived" itself; only for a
//! module the archive holds does it call into `cds._runtime` (imported then, once), which checks
//! the module is still what the file system holds and builds its spec and loader. A process that
//! imports nothing from the archive never imports a Python module of pycds.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::loader::LoadedArchive;
use crate::Archive;

/// The archive entry under which the dumper stores `cds._runtime` itself, so that the finder can
/// start it without the import system (no search, no `.pyc`, not even the `cds` package). No
/// import asks for this name.
pub const RUNTIME_ENTRY: &str = "@pycds.runtime";

/// The archive path when `boot` started SHARE by itself (without `cds._runtime`).
static BOOTED: OnceLock<String> = OnceLock::new();
/// `boot` acts once per process (site may process the same `.pth` twice, e.g. through a
/// venv's `lib64` link).
static BOOT_CALLED: AtomicBool = AtomicBool::new(false);

/// A meta path finder for one archive, placed just before `PathFinder`.
#[pyclass(module = "cds._cds", frozen)]
pub struct ArchiveFinder {
    path: String,
    /// The mapped archive, or `None` once opening it has failed (then the finder answers
    /// nothing, for good).
    archive: OnceLock<Option<Py<Archive>>>,
    /// Set while this finder imports `cds._runtime`: imports that come back here meanwhile
    /// (the package itself) are answered "not archived".
    busy: AtomicBool,
    runtime: OnceLock<Py<PyModule>>,
    /// Report the opening of the archive (`PYCDSVERBOSE>=2`) through `cds._runtime`.
    announce: bool,
}

#[pymethods]
impl ArchiveFinder {
    #[new]
    #[pyo3(signature = (path, announce=false))]
    fn new(path: String, announce: bool) -> Self {
        ArchiveFinder { path, archive: OnceLock::new(), busy: AtomicBool::new(false), runtime: OnceLock::new(), announce }
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The spec for an archived module that is still current, else `None` (the import system
    /// goes on to `PathFinder`).
    #[pyo3(signature = (fullname, path=None, target=None))]
    fn find_spec(
        &self,
        py: Python<'_>,
        fullname: &str,
        path: Option<Bound<'_, PyAny>>,
        target: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if self.busy.load(Relaxed) {
            return Ok(py.None());
        }
        let Some(archive) = self.archive(py)? else { return Ok(py.None()) };
        match archive.get().inner.lookup(fullname) {
            Ok(None) => Ok(py.None()),
            Ok(Some(index)) => {
                let runtime = self.runtime(py)?;
                Ok(runtime.call_method1("_serve", (archive, index, fullname, path, target))?.unbind())
            }
            Err(why) => {
                self.runtime(py)?.call_method1("_fallback", (fullname, format!("archive entry unusable: {why}")))?;
                Ok(py.None())
            }
        }
    }

    fn invalidate_caches(&self) {}
}

impl ArchiveFinder {
    /// The archive, opened on first use.
    fn archive<'py>(&self, py: Python<'py>) -> PyResult<Option<&Py<Archive>>> {
        if let Some(a) = self.archive.get() {
            return Ok(a.as_ref());
        }
        let (archive, failure) = match LoadedArchive::open(&self.path) {
            Ok(inner) => (Some(Py::new(py, Archive { inner: inner.into() })?), None),
            Err(why) => (None, Some(why)),
        };
        // Settled before reporting: the report may import `cds._runtime`, which comes back here.
        let archive = self.archive.get_or_init(|| archive).as_ref();
        if let Some(why) = failure {
            self.runtime(py)?.call_method1("_archive_unusable", (why,))?;
        } else if let (Some(a), true) = (archive, self.announce) {
            self.runtime(py)?.call_method1("_archive_opened", (a,))?;
        }
        Ok(archive)
    }

    /// `cds._runtime`, on first need: from the archive when it holds a current copy, else
    /// imported.
    fn runtime<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyModule>> {
        if self.runtime.get().is_none() {
            self.busy.store(true, Relaxed);
            let (module, unused) = match self.runtime_from_archive(py) {
                Ok(m) => (Ok(m), None),
                Err(why) => (py.import("cds._runtime"), why),
            };
            self.busy.store(false, Relaxed);
            let module = module?;
            if let Some(why) = unused {
                module.call_method1("_fallback", ("cds._runtime", why))?;
            }
            let _ = self.runtime.set(module.unbind());
        }
        Ok(self.runtime.get().expect("set above").bind(py))
    }

    /// Runs the archived `cds._runtime` as that module, as the import system would (same
    /// attributes, in `sys.modules`), if the archive holds it and its source is unchanged.
    /// Otherwise nothing is left behind, and the error says why, if the archive's copy was there
    /// but unusable.
    fn runtime_from_archive<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyModule>, Option<String>> {
        let modules = py.import("sys").and_then(|s| s.getattr("modules")).map_err(|e| Some(e.to_string()))?;
        if let Ok(m) = modules.get_item("cds._runtime") {
            return m.cast_into::<PyModule>().map_err(|e| Some(e.to_string()));
        }
        let Some(Some(archive)) = self.archive.get() else { return Err(None) };
        let archive = archive.get();
        let index = match archive.inner.lookup(RUNTIME_ENTRY) {
            Ok(Some(index)) => index,
            Ok(None) => return Err(None),
            Err(why) => return Err(Some(format!("archive entry unusable: {why}"))),
        };
        let check = archive.inner.check(index, &[]).map_err(|why| Some(format!("archive entry unusable: {why}")))?;
        if let Some(stale) = check.stale {
            return Err(Some(stale));
        }
        let code = archive.load(py, index).map_err(|e| Some(format!("archive data unusable: {}", e.value(py))))?;
        let run = || -> PyResult<Bound<'py, PyModule>> {
            // The module and its attributes as importlib makes them for this file; only the
            // code comes from the archive.
            let spec = py
                .import("_frozen_importlib_external")?
                .call_method1("spec_from_file_location", ("cds._runtime", &check.origin))?;
            let module = py.import("_frozen_importlib")?.call_method1("module_from_spec", (spec,))?.cast_into::<PyModule>()?;
            modules.set_item("cds._runtime", &module)?;
            py.import("builtins")?.call_method1("exec", (code, module.dict()))?;
            Ok(module)
        };
        run().map_err(|e| {
            let _ = modules.del_item("cds._runtime");
            Some(format!("archived copy failed to run: {}", e.value(py)))
        })
    }
}

/// Puts `finder` on `sys.meta_path` just before `PathFinder` (at the end if it is missing).
#[pyfunction]
pub fn insert_finder(py: Python<'_>, finder: Bound<'_, PyAny>) -> PyResult<()> {
    let meta_path = py.import("sys")?.getattr("meta_path")?;
    let meta_path = meta_path.cast::<PyList>()?;
    let path_finder = py.import("_frozen_importlib_external")?.getattr("PathFinder")?;
    for (i, f) in meta_path.iter().enumerate() {
        if f.is(&path_finder) {
            return meta_path.insert(i, finder);
        }
    }
    meta_path.append(finder)
}

/// What `pycds.pth` calls when `PYCDSMODE` is set. SHARE with an archive and no diagnostics
/// starts here, natively; every other case (TRACE, DUMP, verbose, errors to report) is
/// `cds._runtime.activate()`. Never raises: the program must run whatever happens.
#[pyfunction]
pub fn boot(py: Python<'_>) {
    if BOOT_CALLED.swap(true, Relaxed) {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let archive = var("PYCDSARCHIVE");
    let native = var("PYCDSMODE").trim().eq_ignore_ascii_case("SHARE")
        && !archive.trim().is_empty()
        && matches!(var("PYCDSVERBOSE").trim(), "" | "0");
    let started = native && (|| -> PyResult<bool> {
        let flags = py.import("sys")?.getattr("flags")?;
        if flags.getattr("ignore_environment")?.is_truthy()? {
            // -E / -I: leave it to activate(), which ignores PYCDS* then.
            return Ok(false);
        }
        insert_finder(py, Bound::new(py, ArchiveFinder::new(archive.clone(), false))?.into_any())?;
        let _ = BOOTED.set(archive);
        Ok(true)
    })()
    .unwrap_or(false);
    if !started {
        let activated = py.import("cds._runtime").and_then(|r| r.call_method0("activate"));
        if let Err(e) = activated {
            // Like an error in a .pth line, but without taking the program down.
            let msg = format!("pycds: not started: {e}\n");
            let _ = py.import("sys").and_then(|s| s.getattr("stderr")?.call_method1("write", (PyString::new(py, &msg),)));
        }
    }
}

/// `(mode, archive)` when `boot` started SHARE natively, else `None`.
#[pyfunction]
pub fn booted() -> Option<(&'static str, &'static str)> {
    BOOTED.get().map(|archive| ("SHARE", archive.as_str()))
}

//! The front of SHARE mode, native so that a process pays almost nothing for having an archive:
//! `boot` (what `pycds.pth` calls at start-up) and the meta path finder. The finder opens the
//! archive on the first import that reaches it and answers "not archived" itself; for a module
//! the archive holds, `serve::spec` checks that it is still what the file system holds and builds
//! its spec and loader. Serving imports no Python module of pycds.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::loader::LoadedArchive;
use crate::{serve, Archive};

/// The mode and archive path when `boot` started SHARE or AUTO by itself (without
/// `cds._runtime`).
static BOOTED: OnceLock<(&'static str, String)> = OnceLock::new();
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
}

#[pymethods]
impl ArchiveFinder {
    #[new]
    pub(crate) fn new(py: Python<'_>, path: String) -> PyResult<Self> {
        serve::prepare(py)?;
        Ok(ArchiveFinder { path, archive: OnceLock::new() })
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The mapped archive (opened now if no import has opened it yet), or `None` if it cannot
    /// be used (`cds.info()['error']` says why).
    #[getter(archive)]
    fn archive_py(&self, py: Python<'_>) -> PyResult<Option<Py<Archive>>> {
        Ok(self.archive(py)?.map(|a| a.clone_ref(py)))
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
        let Some(archive) = self.archive(py)? else { return Ok(py.None()) };
        match archive.get().inner.lookup(fullname) {
            Ok(None) => Ok(py.None()),
            Ok(Some(index)) => match serve::spec(py, archive, index, fullname, path.as_ref(), target.as_ref()) {
                Ok(spec) => Ok(spec),
                Err(e) => {
                    // Never fail an import that a normal search can do: the import system goes
                    // on to `PathFinder` (which raises the same error itself if it is one of
                    // the search's own).
                    serve::fallback(py, fullname, &format!("not served: {}", crate::message(py, e)));
                    Ok(py.None())
                }
            },
            Err(why) => {
                serve::fallback(py, fullname, &format!("archive entry unusable: {why}"));
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
        let archive = self.archive.get_or_init(|| archive).as_ref();
        match (failure, archive) {
            (Some(why), _) => serve::archive_unusable(py, &why),
            (None, Some(a)) => {
                let modules = a.get().inner.header().module_count;
                serve::say(py, 2, format_args!("serving from {} ({modules} modules)", self.path));
            }
            (None, None) => {}
        }
        Ok(archive)
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

/// What `pycds.pth` calls when `PYCDSMODE` is set. SHARE with an archive and AUTO, without
/// diagnostics, start here, natively; every other case (TRACE, DUMP, verbose, errors to
/// report) is `cds._runtime.activate()`. Never raises: the program must run whatever happens.
#[pyfunction]
pub fn boot(py: Python<'_>) {
    if BOOT_CALLED.swap(true, Relaxed) {
        return;
    }
    // -E / -I ask for an interpreter the environment does not steer: then `activate()`, which
    // ignores PYCDS* (and so says nothing, the build guard included).
    let ignore_environment =
        py.import("sys").and_then(|s| s.getattr("flags")?.getattr("ignore_environment")?.is_truthy()).unwrap_or(false);
    if !ignore_environment {
        if let Err(why) = crate::guard::check(py) {
            serve::misconfigured(py, &why);
            return;
        }
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let archive = var("PYCDSARCHIVE");
    let mode = var("PYCDSMODE").trim().to_ascii_uppercase();
    let quiet = matches!(var("PYCDSVERBOSE").trim(), "" | "0");
    let native = !ignore_environment && quiet && (mode == "AUTO" || (mode == "SHARE" && !archive.trim().is_empty()));
    let started = native
        && (|| -> PyResult<bool> {
            if mode == "AUTO" {
                let _ = BOOTED.set(("AUTO", crate::auto::start(py)?));
                return Ok(true);
            }
            if std::fs::symlink_metadata(&archive).is_err() {
                // Named but missing: a misconfiguration, said even at the default verbosity.
                serve::misconfigured(py, &format!("PYCDSARCHIVE={archive} does not exist; running without an archive"));
                let _ = BOOTED.set(("SHARE", archive));
                return Ok(true);
            }
            insert_finder(py, Bound::new(py, ArchiveFinder::new(py, archive.clone())?)?.into_any())?;
            let _ = BOOTED.set(("SHARE", archive));
            Ok(true)
        })()
        .unwrap_or(false);
    if !started {
        let activated = py.import("cds._runtime").and_then(|r| r.call_method0("activate"));
        if let Err(e) = activated {
            // Like an error in a .pth line, but without taking the program down.
            let msg = format!("pycds: not started: {e}\n");
            let _ =
                py.import("sys").and_then(|s| s.getattr("stderr")?.call_method1("write", (PyString::new(py, &msg),)));
        }
    }
}

/// `(mode, archive)` when `boot` started SHARE or AUTO natively, else `None`.
#[pyfunction]
pub fn booted() -> Option<(&'static str, &'static str)> {
    BOOTED.get().map(|(mode, archive)| (*mode, archive.as_str()))
}

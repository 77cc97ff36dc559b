//! The serving half of SHARE, native end to end: the spec and loader of an archived module, what
//! follows its run, and the record of what was served (`cds.info()`) and said (`PYCDSVERBOSE`).
//! A process that serves from an archive runs no Python code of pycds: the finder (`finder`)
//! asks [`spec`] for an archived module's spec, whose loader is an [`loader_class`] instance.
//!
//! - The freshness check: the archive's entry says whether the source file is unchanged and the
//!   search path still finds it (`LoadedArchive::check`); when the cheap proof fails, the normal
//!   search (`PathFinder`) is asked, and the module is served only if it finds the same file.
//! - The loader is a subclass of `SourceFileLoader` made at run time, so `get_source`,
//!   `get_data`, resource readers, `inspect` and `linecache` behave as without pycds. Its
//!   `get_code` returns the archived code object and its `exec_module` runs the source loader's,
//!   then gives back the module's run-once pages. Both are native and add no Python frame: a
//!   warning a module gives with a `stacklevel` (a deprecated module warning its importer) names
//!   the same file as without pycds. It is equal to (and hashed like) the `SourceFileLoader` a
//!   normal import makes for the same file.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use crate::hooks::RegexCompile;
use crate::Archive;

/// `PYCDSVERBOSE` as `cds._runtime` read it (0 when SHARE started natively, which it does only
/// without diagnostics).
static VERBOSE: AtomicU8 = AtomicU8::new(0);

/// What SHARE did in this process, for `cds.info()`.
struct ServeLog {
    served: Vec<String>,
    /// Name and reason, in the order first reported (a name reported again keeps its place and
    /// takes the new reason, as a dict would).
    fallbacks: Vec<(String, String)>,
    released: usize,
    released_bytes: usize,
    /// Why the archive could not be used at all.
    error: Option<String>,
    /// The archive that served the first module (for its counters).
    served_from: Option<Py<Archive>>,
    regex_hook: Option<Py<RegexCompile>>,
    /// Modules served after their source's digest was checked (their mtime moved).
    revalidated: Vec<String>,
}

/// Held only while copying in or out, never across a call into Python (which may import, and
/// so come back here).
static LOG: Mutex<ServeLog> = Mutex::new(ServeLog {
    served: Vec::new(),
    fallbacks: Vec::new(),
    released: 0,
    released_bytes: 0,
    error: None,
    served_from: None,
    regex_hook: None,
    revalidated: Vec::new(),
});

fn log() -> MutexGuard<'static, ServeLog> {
    LOG.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `pycds: <message>` to `sys.stderr` if `PYCDSVERBOSE` is at least `level`. Never fails.
/// The message is formatted only then (`format_args!`): serving says something about every
/// module at level 2, and a quiet process should not pay for building those lines.
pub fn say(py: Python<'_>, level: u8, message: std::fmt::Arguments<'_>) {
    if VERBOSE.load(Relaxed) < level {
        return;
    }
    let _ = (|| -> PyResult<()> {
        let stderr = sys(py)?.getattr("stderr")?;
        stderr.call_method1("write", (format!("pycds: {message}\n"),))?;
        stderr.call_method0("flush")?;
        Ok(())
    })();
}

/// Records that `name` was imported normally, and why.
pub fn fallback(py: Python<'_>, name: &str, reason: &str) {
    {
        let mut log = log();
        match log.fallbacks.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = reason.to_owned(),
            None => log.fallbacks.push((name.to_owned(), reason.to_owned())),
        }
    }
    say(py, 1, format_args!("{name}: imported normally: {reason}"));
}

/// The modules served only after their source's digest was checked, so far.
pub fn revalidated() -> Vec<String> {
    log().revalidated.clone()
}

/// Records a misconfiguration (the archive named but missing, say) and says it on stderr even
/// at the default verbosity.
pub fn misconfigured(py: Python<'_>, reason: &str) {
    log().error = Some(reason.to_owned());
    say(py, 0, format_args!("{reason}"));
}

/// Records that the archive cannot be used (the finder then answers nothing).
pub fn archive_unusable(py: Python<'_>, reason: &str) {
    log().error = Some(reason.to_owned());
    say(py, 1, format_args!("archive not used, running normally: {reason}"));
}

/// `_cds.set_verbosity(level)`: the `PYCDSVERBOSE` level that `cds._runtime` read.
#[pyfunction]
pub fn set_verbosity(level: u8) {
    VERBOSE.store(level, Relaxed);
}

/// `_cds.say(level, message)`: one diagnostic line on stderr at `PYCDSVERBOSE>=level`.
#[pyfunction]
#[pyo3(name = "say")]
pub fn say_py(py: Python<'_>, level: u8, message: &str) {
    say(py, level, format_args!("{message}"));
}

/// `_cds.serve_log()`: what SHARE did so far (see `cds.info`).
#[pyfunction]
pub fn serve_log(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // A snapshot first: making Python objects may run the garbage collector, and a finalizer
    // may import (and so come back here for the lock).
    let (served, fallbacks, released, released_bytes, error, regexes, account) = {
        let log = log();
        (
            log.served.clone(),
            log.fallbacks.clone(),
            log.released,
            log.released_bytes,
            log.error.clone(),
            log.regex_hook.as_ref().map_or(0, |h| h.get().served_count()),
            log.served_from.as_ref().map_or((0, 0, 0, 0), |a| a.get().inner.run_ahead_account()),
        )
    };
    let d = PyDict::new(py);
    d.set_item("served", PyList::new(py, served)?)?;
    let by_name = PyDict::new(py);
    for (name, reason) in fallbacks {
        by_name.set_item(name, reason)?;
    }
    d.set_item("fallbacks", by_name)?;
    d.set_item("released", released)?;
    d.set_item("released_bytes", released_bytes)?;
    d.set_item("error", error)?;
    d.set_item("regexes", regexes)?;
    let (prepared_ahead, prepared_ahead_ns, unused, unused_ns) = account;
    d.set_item("prepared_ahead", prepared_ahead)?;
    // The run-ahead thread's account (for the benchmarks): time spent on modules an import
    // then found prepared, and on modules prepared that nothing has imported (yet).
    d.set_item("prepared_ahead_ns", prepared_ahead_ns)?;
    d.set_item("prepared_unused", unused)?;
    d.set_item("prepared_unused_ns", unused_ns)?;
    d.set_item("revalidated", PyList::new(py, revalidated())?)?;
    Ok(d)
}

/// What serving uses of importlib's bootstrap, taken when the finder is made ([`prepare`]): a
/// program may later block the bootstrap modules in `sys.modules` (CPython's own tests import
/// a fresh `importlib` with `_frozen_importlib_external` set to `None`), and imports must still
/// be served meanwhile.
struct Bootstrap {
    sys: Py<PyModule>,
    source_loader: Py<PyType>,
    path_finder: Py<PyAny>,
    spec_from_file_location: Py<PyAny>,
}

static BOOTSTRAP: PyOnceLock<Bootstrap> = PyOnceLock::new();
static LOADER_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Takes what serving needs of importlib's bootstrap (see [`Bootstrap`]). Called when a
/// finder is made; later calls do nothing.
pub fn prepare(py: Python<'_>) -> PyResult<()> {
    bootstrap(py).map(|_| ())
}

fn bootstrap(py: Python<'_>) -> PyResult<&Bootstrap> {
    BOOTSTRAP.get_or_try_init(py, || {
        let external = py.import("_frozen_importlib_external")?;
        Ok::<_, PyErr>(Bootstrap {
            sys: py.import("sys")?.unbind(),
            source_loader: external.getattr("SourceFileLoader")?.cast_into::<PyType>()?.unbind(),
            path_finder: external.getattr("PathFinder")?.unbind(),
            spec_from_file_location: external.getattr("spec_from_file_location")?.unbind(),
        })
    })
}

fn sys(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    bootstrap(py).map(|b| b.sys.bind(py))
}

fn source_loader(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    bootstrap(py).map(|b| b.source_loader.bind(py))
}

/// `ArchiveLoader`, the loader of a served module: a subclass of `SourceFileLoader` whose
/// `get_code`, `exec_module`, `__eq__` and `__hash__` are [`LoaderMethod`]s. Its instances hold
/// the archive and the module's index in `_cds_archive` and `_cds_index`.
pub fn loader_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    LOADER_CLASS
        .get_or_try_init(py, || {
            let ns = PyDict::new(py);
            ns.set_item("__module__", "cds._cds")?;
            ns.set_item(
                "__doc__",
                "SourceFileLoader whose get_code returns the archived code object; everything else \
                 (get_source, get_data, resource readers) is the source loader's own.",
            )?;
            for (name, method) in [
                ("get_code", Method::GetCode),
                ("exec_module", Method::ExecModule),
                ("__eq__", Method::Eq),
                ("__hash__", Method::Hash),
            ] {
                ns.set_item(name, Py::new(py, LoaderMethod { method })?)?;
            }
            let bases = PyTuple::new(py, [source_loader(py)?])?;
            let class = py.get_type::<PyType>().call1(("ArchiveLoader", bases, ns))?;
            Ok::<_, PyErr>(class.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// The spec of archived module `index` (`fullname`) if the archived code is still what the file
/// system holds and the search still finds it; else `None`, or the normal search's spec when
/// that finds something else. `path` and `target` are `find_spec`'s.
pub fn spec(
    py: Python<'_>,
    archive: &Py<Archive>,
    index: u32,
    fullname: &str,
    path: Option<&Bound<'_, PyAny>>,
    target: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let sys_path;
    let search = match path {
        Some(p) if !p.is_none() => p,
        _ => {
            sys_path = sys(py)?.getattr("path")?;
            &sys_path
        }
    };
    let mut live = Vec::new();
    for item in search.try_iter()? {
        // A non-str entry cannot equal a recorded path; keep the positions aligned.
        live.push(item?.extract::<String>().unwrap_or_else(|_| "\0".to_owned()));
    }
    let check = match archive.get().inner.check(index, &live) {
        Ok(c) => c,
        Err(why) => {
            fallback(py, fullname, &format!("archive entry unusable: {why}"));
            return Ok(py.None());
        }
    };
    if let Some(stale) = &check.stale {
        fallback(py, fullname, stale);
        return Ok(py.None());
    }
    if let Some(unverified) = &check.unverified {
        // The cheap proof failed: search as the import system would, and serve only if that
        // finds the very same source file.
        let found = bootstrap(py)?.path_finder.bind(py).call_method1("find_spec", (fullname, path, target))?;
        let origin = if found.is_none() { None } else { Some(found.getattr("origin")?) };
        let same = match &origin {
            Some(o) => {
                o.extract::<Option<String>>().ok().flatten().as_deref() == Some(check.origin.as_str())
                    && found.getattr("loader")?.get_type().is(source_loader(py)?)
            }
            None => false,
        };
        if !same {
            let origin = match origin {
                Some(o) => o.str()?.to_string(),
                None => "nothing".to_owned(),
            };
            fallback(py, fullname, &format!("the search path now finds {origin} ({unverified})"));
            return Ok(found.unbind());
        }
        say(py, 2, format_args!("{fullname}: search re-checked ({unverified})"));
    }
    if check.by_digest {
        log().revalidated.push(fullname.to_owned());
        say(py, 2, format_args!("{fullname}: source's mtime changed, its digest did not"));
    }
    let first = log().served_from.is_none();
    if first {
        let modules = sys(py)?.getattr("modules")?;
        let compiler = match modules.cast::<PyDict>() {
            Ok(dict) => dict.get_item("re._compiler")?,
            Err(_) => modules.get_item("re._compiler").ok(),
        };
        if let Some(compiler) = compiler {
            // re was imported before the archive served anything (by a .pth file, say): its
            // compiler did not come from the archive, but may still take the archive's programs.
            serve_regexes(py, &compiler, archive);
        }
        log().served_from = Some(archive.clone_ref(py));
    }
    let loader = loader_class(py)?.call1((fullname, &check.origin))?;
    loader.setattr("_cds_archive", archive)?;
    loader.setattr("_cds_index", index)?;
    let locations =
        check.is_package.then(|| vec![check.origin.rfind('/').map_or("", |i| &check.origin[..i]).to_owned()]);
    let kwargs = PyDict::new(py);
    kwargs.set_item("loader", loader)?;
    kwargs.set_item("submodule_search_locations", locations)?;
    Ok(bootstrap(py)?.spec_from_file_location.bind(py).call((fullname, &check.origin), Some(&kwargs))?.unbind())
}

/// Makes `re._compiler.compile` (what `re` calls for a pattern not in its own cache) take the
/// compiled program from the archive when it holds one for the same pattern and flags
/// ([`RegexCompile`]). Off with `PYCDSREGEX=0`.
fn serve_regexes(py: Python<'_>, compiler: &Bound<'_, PyAny>, archive: &Py<Archive>) {
    if std::env::var("PYCDSREGEX").is_ok_and(|v| v.trim() == "0") || archive.get().inner.header().keyed_count == 0 {
        return;
    }
    match RegexCompile::install(py, compiler, Some(archive.clone_ref(py)), None) {
        Ok(Some(hook)) => log().regex_hook = Some(hook),
        Ok(None) => {}
        Err(e) => say(py, 1, format_args!("compiled regular expressions not used: {e}")),
    }
}

#[derive(Clone, Copy)]
enum Method {
    GetCode,
    ExecModule,
    Eq,
    Hash,
}

/// A method of [`loader_class`]: a descriptor that binds like a function (to a
/// [`BoundLoaderMethod`]); called on the class, it takes the loader first.
#[pyclass(module = "cds._cds", frozen)]
pub struct LoaderMethod {
    method: Method,
}

#[pymethods]
impl LoaderMethod {
    fn __get__(slf: &Bound<'_, Self>, obj: Option<Py<PyAny>>, _owner: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match obj {
            None => Ok(slf.clone().into_any().unbind()),
            Some(loader) => Ok(Py::new(slf.py(), BoundLoaderMethod { method: slf.get().method, loader })?.into_any()),
        }
    }

    #[pyo3(signature = (loader, *args))]
    fn __call__(&self, loader: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        call(self.method, loader, args)
    }
}

/// A [`LoaderMethod`] bound to a loader.
#[pyclass(module = "cds._cds", frozen)]
pub struct BoundLoaderMethod {
    method: Method,
    loader: Py<PyAny>,
}

#[pymethods]
impl BoundLoaderMethod {
    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        call(self.method, self.loader.bind(py), args)
    }
}

fn call(method: Method, loader: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
    let py = loader.py();
    let arg = |name: &str| {
        if args.len() == 1 {
            args.get_item(0)
        } else {
            Err(pyo3::exceptions::PyTypeError::new_err(format!("takes one argument ({name}), {} given", args.len())))
        }
    };
    match method {
        Method::GetCode => get_code(loader, &arg("fullname")?),
        Method::ExecModule => exec_module(loader, &arg("module")?).map(|()| py.None()),
        Method::Eq => equal(loader, &arg("other")?),
        Method::Hash if args.is_empty() => {
            let h = loader.getattr("name")?.hash()? ^ loader.getattr("path")?.hash()?;
            Ok(h.into_pyobject(py)?.into_any().unbind())
        }
        Method::Hash => Err(pyo3::exceptions::PyTypeError::new_err("__hash__ takes no arguments")),
    }
}

/// The archive and index a loader serves from, if it is one of ours and still has them.
fn served_by(loader: &Bound<'_, PyAny>) -> Option<(Py<Archive>, u32)> {
    let archive = loader.getattr("_cds_archive").ok()?.extract::<Py<Archive>>().ok()?;
    let index = loader.getattr("_cds_index").ok()?.extract::<u32>().ok()?;
    Some((archive, index))
}

/// `get_code(fullname)`: the archived code object, fixed up on first use; the source loader's
/// if that fails (the reason is recorded) or another name is asked for.
fn get_code(loader: &Bound<'_, PyAny>, fullname: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = loader.py();
    if let Some((archive, index)) = served_by(loader) {
        let name = loader.getattr("name")?;
        if fullname.eq(&name)? {
            let fullname = fullname.str()?.to_string();
            match archive.get().load(py, index) {
                Ok(code) => {
                    log().served.push(fullname.clone());
                    say(py, 2, format_args!("served {fullname} from the archive"));
                    return Ok(code);
                }
                Err(e) => fallback(py, &fullname, &format!("archive data unusable: {}", crate::message(py, e))),
            }
        }
    }
    Ok(source_loader(py)?.getattr("get_code")?.call1((loader, fullname))?.unbind())
}

/// `exec_module(module)`: the source loader's, then what follows a served module's run.
fn exec_module(loader: &Bound<'_, PyAny>, module: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = loader.py();
    source_loader(py)?.getattr("exec_module")?.call1((loader, module))?;
    let Some((archive, index)) = served_by(loader) else { return Ok(()) };
    let name = loader.getattr("name")?.str()?.to_string();
    if name == "re._compiler" {
        serve_regexes(py, module, &archive);
    }
    // The module has run and its code object is dropped, as a normal import drops it: the
    // archive gives back the pages of its run-once objects if nothing refers to them.
    match archive.get().inner.release(index) {
        Ok(None) => {}
        Ok(Some(n)) => {
            {
                let mut log = log();
                log.released += 1;
                log.released_bytes += n;
            }
            say(py, 2, format_args!("{name}: released its run-once objects ({n} bytes of pages given back)"));
        }
        Err(kept) => say(py, 2, format_args!("{name}: run-once objects kept: {kept}")),
    }
    Ok(())
}

/// `__eq__(other)`: equal to an `ArchiveLoader` or `SourceFileLoader` of the same name and path,
/// as the `SourceFileLoader` a normal import makes would be.
fn equal(loader: &Bound<'_, PyAny>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = loader.py();
    let kind = other.get_type();
    if !(kind.is(source_loader(py)?) || kind.is(loader_class(py)?)) {
        return Ok(py.NotImplemented());
    }
    let same =
        loader.getattr("name")?.eq(other.getattr("name")?)? && loader.getattr("path")?.eq(other.getattr("path")?)?;
    Ok(same.into_pyobject(py)?.to_owned().into_any().unbind())
}

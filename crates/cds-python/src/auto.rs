//! AUTO mode, its native half: where the archive of this interpreter and environment lives (the
//! cache directory, and whether it can be trusted and written), serving from that archive from
//! start-up, and, at exit, which modules this process imported normally. Only when there are
//! some does the Python half (`cds._auto`) run: it records them and refreshes the archive in a
//! detached writer. A process whose imports were all served runs no Python code of pycds.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::finder::{insert_finder, ArchiveFinder};
use crate::{fingerprint, loader, serve};

/// AUTO's configuration in this process, decided once at start-up.
pub struct Auto {
    pub cache_dir: PathBuf,
    pub archive: PathBuf,
    /// Whether the archive may be written (a read-only cache is only read).
    pub writable: bool,
    /// Why the cache is not used at all (not a directory, untrusted, cannot be made).
    pub refused: Option<String>,
    /// Modules already imported when AUTO started (before `site` ran `.pth` files): they are
    /// never served, so they never count as imported normally.
    preloaded: HashSet<String>,
}

static AUTO: OnceLock<Auto> = OnceLock::new();
/// Whether AUTO started in this process (the configuration may be read without starting it).
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The cache directory: `PYCDS_CACHE_DIR`, else `$XDG_CACHE_HOME/pycds`, else `~/.cache/pycds`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("PYCDS_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("pycds"));
    }
    var("HOME").map(|home| home.join(".cache").join("pycds"))
}

/// The file name of the archive of this interpreter build and environment (`sys.prefix`):
/// the interpreter's cache tag, then a digest of its fingerprint (build, pycds format, layouts)
/// and of the prefix. Another pycds format or interpreter build gets another archive.
fn archive_name(py: Python<'_>) -> PyResult<String> {
    use sha2::{Digest, Sha256};
    let sys = py.import("sys")?;
    let prefix: String = sys.getattr("prefix")?.extract()?;
    let tag: String = sys.getattr("implementation")?.getattr("cache_tag")?.extract()?;
    let (fp, _) = fingerprint::current();
    let mut h = Sha256::new();
    h.update(b"pycds auto archive\0");
    h.update(fp);
    h.update(prefix.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{tag}-{hex}.img"))
}

/// Makes the cache directory (mode 0700) if needed and says whether it can be used: it must be
/// a directory that no one but this user (or root) can write, like an archive.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("cache directory {} is not an absolute path", dir.display()));
    }
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create cache directory {}: {e}", dir.display()))?;
    }
    let st = std::fs::metadata(dir).map_err(|e| format!("cannot read cache directory {}: {e}", dir.display()))?;
    if !st.is_dir() {
        return Err(format!("cache {} is not a directory", dir.display()));
    }
    loader::trusted(&dir.display().to_string(), &st)
}

/// Whether this process may create and replace files in `dir`.
fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Decides AUTO's configuration (once per process).
fn configure(py: Python<'_>) -> PyResult<&'static Auto> {
    if let Some(auto) = AUTO.get() {
        return Ok(auto);
    }
    let named = std::env::var_os("PYCDSARCHIVE").filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = cache_dir();
    let (cache_dir, archive, refused) = match (named, dir) {
        // A named archive: its directory is the cache, and the archive's own trust is checked
        // when it is opened, as in SHARE.
        (Some(archive), _) => {
            let archive = std::path::absolute(&archive).unwrap_or(archive);
            let dir = archive.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
            (dir, archive, None)
        }
        (None, Some(dir)) => {
            let refused = prepare_dir(&dir).err();
            let archive = dir.join(archive_name(py)?);
            (dir, archive, refused)
        }
        (None, None) => {
            let why = "no cache directory: set PYCDS_CACHE_DIR, XDG_CACHE_HOME or HOME".to_owned();
            (PathBuf::new(), PathBuf::new(), Some(why))
        }
    };
    let writable = refused.is_none() && writable(&cache_dir);
    let modules = py.import("sys")?.getattr("modules")?;
    let preloaded = modules.cast::<PyDict>()?.keys().iter().filter_map(|k| k.extract::<String>().ok()).collect();
    Ok(AUTO.get_or_init(|| Auto { cache_dir, archive, writable, refused, preloaded }))
}

/// Starts AUTO: serves from the archive if there is one (opened on the first import, as in
/// SHARE) and registers the exit hook that finds what was imported normally. Returns the
/// archive path.
pub fn start(py: Python<'_>) -> PyResult<String> {
    let auto = configure(py)?;
    if STARTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return Ok(auto.archive.display().to_string());
    }
    let archive = auto.archive.display().to_string();
    if let Some(why) = &auto.refused {
        serve::archive_unusable(py, &format!("AUTO: {why}"));
        return Ok(archive);
    }
    if auto.archive.is_file() {
        insert_finder(py, Bound::new(py, ArchiveFinder::new(py, archive.clone())?)?.into_any())?;
    }
    if auto.writable {
        let hook = wrap_pyfunction!(auto_exit, py)?;
        py.import("atexit")?.call_method1("register", (hook,))?;
    }
    Ok(archive)
}

/// Modules of `sys.modules` that this process imported normally from source and that the
/// archive could hold: loaded by exactly `SourceFileLoader` (a served module's loader is the
/// archive's), with a `.py` origin, and not imported before AUTO started.
fn imported_normally(py: Python<'_>, auto: &Auto) -> PyResult<Vec<String>> {
    let sys = py.import("sys")?;
    let source_loader = py.import("_frozen_importlib_external")?.getattr("SourceFileLoader")?;
    let modules = sys.getattr("modules")?.cast_into::<PyDict>()?.copy()?;
    let mut names = Vec::new();
    for (name, module) in modules.iter() {
        let Ok(name) = name.extract::<String>() else { continue };
        if name == "__main__" || auto.preloaded.contains(&name) {
            continue;
        }
        // The module's own namespace, so that a module `__getattr__` is never called.
        let Ok(ns) = module.getattr("__dict__") else { continue };
        let Ok(Some(spec)) = ns.cast::<PyDict>().map(|d| d.get_item("__spec__").ok().flatten()) else { continue };
        let Ok(loader) = spec.getattr("loader") else { continue };
        if !loader.get_type().is(&source_loader) {
            continue;
        }
        let origin = spec.getattr("origin").ok().and_then(|o| o.extract::<String>().ok());
        if origin.is_some_and(|o| o.ends_with(".py")) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The exit hook: hands the modules imported normally (and those served only after their
/// digest was checked, whose recorded times are out of date) to `cds._auto`, which records
/// them and schedules a refresh. Does nothing, and imports nothing, when there are none.
/// Never raises.
#[pyfunction]
fn auto_exit(py: Python<'_>) {
    let Some(auto) = AUTO.get().filter(|_| STARTED.load(std::sync::atomic::Ordering::Relaxed)) else { return };
    let result = (|| -> PyResult<()> {
        let normal = imported_normally(py, auto)?;
        let revalidated = serve::revalidated();
        touch_used(auto);
        if normal.is_empty() && revalidated.is_empty() {
            return Ok(());
        }
        let names = PyList::new(py, normal)?;
        py.import("cds._auto")?.call_method1("at_exit", (names, PyList::new(py, revalidated)?))?;
        Ok(())
    })();
    if let Err(e) = result {
        let msg = crate::message(py, e);
        serve::say(py, 1, format_args!("AUTO: the archive was not refreshed: {msg}"));
    }
}

/// `_cds.auto_imported_normally()`: the modules AUTO would record at exit if it ended now.
#[pyfunction]
pub fn auto_imported_normally(py: Python<'_>) -> PyResult<Vec<String>> {
    match AUTO.get() {
        Some(auto) => imported_normally(py, auto),
        None => Ok(Vec::new()),
    }
}

/// Marks the archive as used now (`<name>.used`'s mtime, for pruning the least recently used
/// archives), at most once an hour.
fn touch_used(auto: &Auto) {
    if !auto.archive.is_file() {
        return;
    }
    let used = auto.archive.with_extension("used");
    let fresh = std::fs::metadata(&used)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 3600));
    if !fresh {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&used);
        let _ = file.and_then(|f| f.set_modified(std::time::SystemTime::now()));
    }
}

/// `_cds.auto_config()`: AUTO's configuration in this process (deciding it if AUTO has not
/// started): `cache_dir`, `archive`, `writable`, `refused`.
#[pyfunction]
pub fn auto_config(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let auto = configure(py)?;
    let d = PyDict::new(py);
    d.set_item("cache_dir", auto.cache_dir.display().to_string())?;
    d.set_item("archive", auto.archive.display().to_string())?;
    d.set_item("writable", auto.writable)?;
    d.set_item("refused", auto.refused.clone())?;
    d.set_item("started", STARTED.load(std::sync::atomic::Ordering::Relaxed))?;
    Ok(d)
}

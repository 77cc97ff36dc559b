//! Callables that stand in for interpreter functions while a module runs, native so that they add
//! no Python frame: a warning raised with a `stacklevel` (a deprecated module warning its
//! importer, `re` warning the caller of `re.compile`) must name the same file and line as
//! without pycds, and `warnings` counts Python frames only.
//!
//! - The archive loader's methods (`serve::LoaderMethod`).
//! - [`RegexCompile`]: `re._compiler.compile` while tracing (it records each pattern) or
//!   serving (it builds a pattern from the archive's program when it holds one).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::{regex, Archive};

/// Stands in for `re._compiler.compile(p, flags=0)`, the call `re` makes for a pattern not in
/// its own cache. With an archive, a pattern whose program the archive holds is made by
/// `_sre.compile` from that program (which `_sre` checks); with a recorder, every pattern
/// compiled is passed to it after the compile. Anything else goes to the original function,
/// with the same arguments.
#[pyclass(module = "cds._cds", frozen)]
pub struct RegexCompile {
    original: Py<PyAny>,
    sre_compile: Py<PyAny>,
    /// `re.DEBUG`: such a compile prints, so it always runs.
    debug: i64,
    archive: Option<Py<Archive>>,
    record: Option<Py<PyAny>>,
    served: AtomicUsize,
}

#[pymethods]
impl RegexCompile {
    /// Puts a stand-in in place of `compiler.compile` (`compiler` is `re._compiler`) and returns
    /// it; `None` when one is there already.
    #[staticmethod]
    #[pyo3(signature = (compiler, archive=None, record=None))]
    pub(crate) fn install(
        py: Python<'_>,
        compiler: &Bound<'_, PyAny>,
        archive: Option<Py<Archive>>,
        record: Option<Py<PyAny>>,
    ) -> PyResult<Option<Py<RegexCompile>>> {
        let original = compiler.getattr("compile")?;
        if original.is_instance_of::<RegexCompile>() {
            return Ok(None);
        }
        let hook = Py::new(
            py,
            RegexCompile {
                original: original.unbind(),
                sre_compile: compiler.getattr("_sre")?.getattr("compile")?.unbind(),
                debug: compiler.getattr("SRE_FLAG_DEBUG")?.extract()?,
                archive,
                record,
                served: AtomicUsize::new(0),
            },
        )?;
        compiler.setattr("compile", &hook)?;
        Ok(Some(hook))
    }

    #[pyo3(signature = (p, flags=None))]
    fn __call__(&self, py: Python<'_>, p: Bound<'_, PyAny>, flags: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        // Only the calls the archive keeps (`regex::key` checks the pattern's type).
        let plain = flags.as_ref().map_or(Some(0), regex::flags_kept).filter(|f| f & self.debug == 0);
        if let (Some(archive), Some(f)) = (&self.archive, plain) {
            match archive.get().regex(&p, f) {
                Ok(Some(program)) => {
                    let mut args = vec![p.clone()];
                    args.extend(program.to_python(py)?.iter());
                    match self.sre_compile.call1(py, PyTuple::new(py, args)?) {
                        Ok(pattern) => {
                            self.served.fetch_add(1, Relaxed);
                            return Ok(pattern);
                        }
                        Err(e) => self.say(py, &p, &crate::message(py, e)),
                    }
                }
                Ok(None) => {}
                Err(why) => self.say(py, &p, &why),
            }
        }
        let result = match &flags {
            Some(f) => self.original.call1(py, (&p, f))?,
            None => self.original.call1(py, (&p,))?,
        };
        let recordable = p.is_exact_instance_of::<PyString>() || p.is_exact_instance_of::<PyBytes>();
        if let (Some(record), Some(f), true) = (&self.record, plain, recordable) {
            // Recording must never change what the program sees: its errors are the recorder's.
            let _ = record.call1(py, (&p, f));
        }
        Ok(result)
    }

    /// Patterns made from the archive's programs so far.
    #[getter]
    fn served(&self) -> usize {
        self.served_count()
    }

    #[getter]
    #[allow(non_snake_case)]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.clone_ref(py)
    }
}

impl RegexCompile {
    pub(crate) fn served_count(&self) -> usize {
        self.served.load(Relaxed)
    }

    fn say(&self, py: Python<'_>, pattern: &Bound<'_, PyAny>, why: &str) {
        let shown = pattern.repr().map(|r| r.to_string()).unwrap_or_default();
        crate::serve::say(py, 1, format_args!("archived program of regular expression {shown} not used: {why}"));
    }
}

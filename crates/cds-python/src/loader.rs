//! The load side: an opened archive, the per-module freshness check and the per-module fix-up
//! that turns archive bytes into live interpreter objects on first import.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cds_archive::{
    relocate, AddrMap, Archive, Entry, ExternalMap, FixupKind, Header, ModuleMeta, Parts, HEADER_SIZE, PAGE_SIZE,
};
use pyo3::ffi;

use crate::code_versions;
use crate::externals::{self, Kind};
use crate::fingerprint;
use crate::layout;
use crate::mapping::Mapping;
use crate::pathstate::{path_state, source_stat};
use crate::run_ahead;
use crate::validate::{Rules, Scratch, SlotClass, TypeFacts, Validated, Validator};

/// A range `[start, end)` of the archive file.
type FileRange = (u64, u64);

enum ModState {
    Fresh,
    /// Claimed by the run-ahead thread, which is checking, relocating and validating it.
    Preparing,
    /// Checked, relocated and validated ahead of its import by the run-ahead thread: only the
    /// fix-ups that need the GIL are left.
    Prepared(Box<Prepared>),
    /// Being fixed up by a thread that holds the GIL.
    InProgress,
    /// Fixed up: the root code object, and the file range of the module's run-once objects
    /// when this interpreter can release them and they lie in the archive's run-once region.
    Ready {
        code: usize,
        run_once: Option<FileRange>,
    },
    Failed(String),
    /// The module ran and its run-once objects were released (their pages go back once no other
    /// module needs them): its code object is gone, so importing it again takes the normal path.
    Released,
}

/// Whether this interpreter lets the loader prove run-once objects dead after their module ran:
/// only where archived objects' reference counts move (3.11). Immortal objects (3.12+) never
/// show whether anything still refers to them.
pub const CAN_RELEASE_RUN_ONCE: bool = !layout::IMMORTAL_OBJECTS;

pub struct LoadedArchive {
    // `view` borrows `map`'s memory and is declared first so that it is dropped first.
    view: Archive<'static>,
    map: Mapping,
    modules: Mutex<Modules>,
    /// Signalled when a module leaves `Preparing` (an import may be waiting for it) and when
    /// the run-ahead thread stops.
    prepared: Condvar,
    /// Signalled when the run-ahead thread may have more to do (or must stop).
    more_work: Condvar,
    /// Signalled when the run-ahead thread has given back the pages it took over.
    dropped: Condvar,
    /// The modules in dump order (each with where its read-once metadata starts), and each
    /// module's position in that order; made at the first import.
    order: OnceLock<DumpOrder>,
    resolved: OnceLock<Result<Resolved, String>>,
    /// The interned string each number of the archive's table resolved to in this process
    /// (null until first use), holding one reference of its own. Made at the first fix-up.
    interned: OnceLock<Box<[AtomicUsize]>>,
    pub path: String,
    pub producer: String,
    /// Modules whose run-once objects were released, and the bytes of pages given back.
    released: AtomicUsize,
    released_bytes: AtomicUsize,
    /// Modules whose import found them prepared by the run-ahead thread.
    prepared_ahead: AtomicUsize,
    /// Nanoseconds the run-ahead thread spent preparing the modules counted in `prepared_ahead`.
    prepared_ahead_ns: AtomicU64,
    /// Nanoseconds importing threads spent in `load` (fixing up, or waiting for the run-ahead
    /// thread to finish preparing a module).
    load_ns: AtomicU64,
    /// How far the loader has read the metadata it reads once (see `ReadOnce`).
    read_once: Mutex<ReadOnce>,
    /// Fault injection for tests: the module (`PYCDS_TEST_PANIC_IN_PREPARE`) whose preparation
    /// panics, as a bug in pycds would, to show that no panic reaches the interpreter.
    panic_in_prepare: Option<String>,
}

/// What a module whose fix-up panicked falls back with. A panic is a bug in pycds (every
/// problem of an archive is an error, not a panic); it is caught on whichever thread fixes the
/// module up, and the module is imported normally.
const PANICKED: &str = "fixing it up failed unexpectedly (a bug in pycds; please report it)";

/// Every module's state, and the run-ahead thread's bookkeeping, under one lock.
struct Modules {
    states: Vec<ModState>,
    ahead: RunAhead,
    /// Who uses the pages of the archive's run-once region (see `RegionPages`).
    region: RegionPages,
}

/// A page of the run-once region whose `left` count no module has told yet.
const UNKNOWN: u32 = u32::MAX;

/// The pages of the archive's run-once region, which holds the run-once objects of many modules
/// back to back: a page is given back once every module with run-once objects on it has run
/// and released them. Two counts per page decide it. `users` is what makes it safe: the modules
/// with run-once objects on the page that were counted (by the thread that fixes them up,
/// before it writes a byte of them) and not yet released; a module not counted yet has written
/// nothing there (it finds the file's bytes when it is), and one that failed keeps its count
/// (its pages stay). `left` is what makes it worth it: the modules the index places on the
/// page (`Entry::first_page_parts`, `last_page_parts`) that have not released theirs, so that a page is not given back after its first
/// module ran only to be faulted in again for the next (an index that lies about it can only
/// make pages stay or go early, never go while a counted module needs them). Only where
/// run-once objects can be released (3.11).
#[derive(Default)]
struct RegionPages {
    /// Per page of the region (made at the first claim), the two counts; `left` is set by the
    /// first module that touches the page, from its index entry (`UNKNOWN` until then), so
    /// that no step costs more than the module's own pages.
    users: Vec<u32>,
    left: Vec<u32>,
    /// Per module, the region pages it counts on, `[first, end)` (`(0, 0)`: none).
    counted: Vec<(u32, u32)>,
}

struct DumpOrder {
    /// `(read_once_off, index)` in dump order (the blob's order).
    modules: Vec<(u64, u32)>,
    /// Each module's position in `modules`.
    position: Vec<u32>,
    /// The largest module's objects length (what the run-ahead thread's tables are sized for).
    largest: u64,
}

/// A thread that prepares the next modules in dump order while the program imports, so that
/// the part of the fix-up that needs no GIL (checksum, relocation, validation, and faulting
/// the pages in for writing) is usually done by the time the import asks for the module. The
/// dump order is the order in which the traced run first imported the modules, and a program
/// mostly imports in the same order every run; a module it asks for before the thread got to
/// it is fixed up on the spot as before. Each import moves the thread to just past that module
/// in dump order, forward or back, and lets it prepare up to `RUN_AHEAD` modules from there, so
/// a run that uses few of the archive's modules prepares few more. It exits once the imports
/// pause (and before any `fork()`, see `run_ahead`).
#[derive(Default)]
struct RunAhead {
    /// Imports served so far (fixed up or not).
    loads: usize,
    /// The thread may prepare the modules at dump positions `[next, horizon)`.
    next: usize,
    horizon: usize,
    /// Importing threads waiting for a module the thread is preparing.
    waiting: usize,
    /// A thread is running (or about to), and whether it is waiting for work.
    running: bool,
    idle: bool,
    /// The thread must stop after the module in hand: the process is about to fork, or the
    /// archive was closed.
    stop: bool,
    closed: bool,
    /// Pages to give back that the thread took over from the importing thread while it was
    /// on a CPU (see `give_back`).
    drops: Vec<PageDrop>,
    /// Those the thread is giving back right now (without the lock): a claim that needs one of
    /// these pages waits for `LoadedArchive::dropped` (see `count_region_pages`).
    in_flight: Vec<PageDrop>,
}

/// Archive pages to give back (`MADV_DONTNEED`), each as its caller proved it may be.
#[derive(Clone, Copy)]
enum PageDrop {
    /// Run-once objects of a module that ran, all unreferenced (`release`).
    RunOnce(usize, usize),
    /// Metadata read once and never written (`forget_read`).
    ReadOnce(usize, usize),
}

/// How many modules past the last one imported the run-ahead thread may prepare. An import
/// wakes an idle thread only when the next `RUN_AHEAD / 2` are not all prepared: on this
/// 2-core VM a cross-core wake-up costs the importing thread tens of microseconds, so the
/// thread works in batches (about 50 wake-ups for `app`'s 412 modules). A prepared module
/// waiting for its import holds only its list of interned-string slots.
const RUN_AHEAD: usize = 16;
/// Imports served before the run-ahead thread starts, so that a process that only starts up
/// never pays for it: start-up alone serves up to three modules (`_distutils_hack` from
/// setuptools' `.pth` in a venv, Debian's `sitecustomize`, and on 3.13+ the `linecache` that
/// `python -c` imports), and a thread started then prepares modules that such a process never
/// imports (on 3.13 that was 5M instructions on the other CPU during a 14 ms `python -c pass`).
const RUN_AHEAD_AFTER: usize = 4;
/// How long the thread waits for more work before it exits.
const RUN_AHEAD_IDLE: Duration = Duration::from_millis(20);

/// What the run-ahead thread (or the importing thread itself) made of a module before the
/// fix-ups that need the GIL.
pub struct Prepared {
    /// The module's checked index entry (read once per module, by whichever thread prepared it).
    entry: Entry<'static>,
    /// (slot, number) of the slots still to fill with an interned string: those whose string
    /// this process had not made yet when the module was prepared (the others are filled).
    interned: Vec<(u32, u32)>,
    /// Interned-string slots filled while preparing, and the nanoseconds that took.
    filled_early: (usize, u64),
    /// The slots of tuples to replace with frozensets or frozendicts, checked.
    fixups: Vec<(u32, FixupKind)>,
    relocs: usize,
    written: usize,
    /// Nanoseconds of checksum, relocation and validation.
    phase_ns: [u64; 3],
}

impl Prepared {
    /// Nanoseconds the preparation took: checksum, relocation, validation, early slot filling.
    fn ahead_ns(&self) -> u64 {
        self.phase_ns.iter().sum::<u64>() + self.filled_early.1
    }
}

/// Low-water marks over the metadata that the loader reads once and in about the order the
/// dumper wrote it: the interned strings (made in number order, as the dumper numbered them in
/// import order) and each module's metadata, bitmap and fix-ups (read at its first import). The
/// whole fault-around windows behind the marks are unmapped as the marks advance, so that once a
/// program's imports are done these clean pages no longer count in its memory. A mark stops at
/// the first string or module this run does not use; nothing is lost then but the saving.
#[derive(Default)]
struct ReadOnce {
    /// The lowest string number not yet made.
    strings: u32,
    /// How many modules, from the front of the dump order, have been fixed up (or failed).
    modules: usize,
    /// How far each range was unmapped (file offsets): string records, string bytes, module
    /// data.
    forgotten: [u64; 3],
}

/// What one page fault maps of a file (the kernel's fault-around, 64 KiB by default): a page
/// is unmapped only with the whole aligned window it lies in, or the next fault near it would
/// map it again.
const FAULT_AROUND: u64 = 64 << 10;

/// What the finder needs to know about an archived module before serving it.
pub struct Check {
    pub origin: String,
    pub is_package: bool,
    /// The source changed or vanished since the dump: never serve.
    pub stale: Option<String>,
    /// Fresh only by its digest: the source's mtime moved (the archive's record is out of date).
    pub by_digest: bool,
    /// The cheap proof that the name still resolves to `origin` failed: the caller must
    /// confirm by a normal search before serving.
    pub unverified: Option<String>,
}

/// The externals as this process sees them.
struct Resolved {
    map: ExternalMap,
    /// Some external has another address here than in the dumper (computed once, not per module).
    moves: bool,
    /// What validation checks objects against in this process.
    rules: Rules,
}

pub struct FixStats {
    pub relocs: usize,
    pub written: usize,
    pub intern_fixups: usize,
    pub frozenset_fixups: usize,
    pub frozendict_fixups: usize,
    /// Nanoseconds spent in each phase: checksum, relocation, validation, fix-ups.
    pub phase_ns: [u64; 4],
}

impl LoadedArchive {
    /// Opens and maps `path`, checking the header and the interpreter fingerprint only: O(1) in
    /// the size of the archive.
    pub fn open(path: &str) -> Result<LoadedArchive, String> {
        // Non-blocking, so that a FIFO or device named as the archive cannot hang start-up.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot open {path}: {e}"))?;
        let st = file.metadata().map_err(|e| format!("cannot stat {path}: {e}"))?;
        if !st.is_file() {
            return Err(format!("{path} is not a regular file"));
        }
        trusted(path, &st)?;
        let len = st.len();
        if len == 0 {
            return Err(format!("{path} is empty"));
        }
        if len < HEADER_SIZE as u64 {
            return Err(format!("{path} is truncated ({len} bytes, smaller than a header)"));
        }
        let mut head = [0u8; HEADER_SIZE];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let header = Header::parse(&head, len).map_err(|e| format!("{path}: {e}"))?;
        let map =
            Mapping::map(&file, len as usize, header.preferred_base).map_err(|e| format!("cannot map {path}: {e}"))?;
        let meta = map.prefix(header.objects_off as usize);
        // SAFETY: `meta` points into `map`, which is moved into the same struct and outlives
        // `view` (fields drop in declaration order; `view` is first). The mapping's address does
        // not change when the `Mapping` value moves.
        let meta: &'static [u8] = unsafe { std::slice::from_raw_parts(meta.as_ptr(), meta.len()) };
        let view = Archive::parse(meta, len).map_err(|e| format!("{path}: {e}"))?;
        let producer = view.producer();
        let (fp, me) = fingerprint::current();
        if view.header.fingerprint != fp {
            let split = |p: &str| match p.split_once(fingerprint::PYCDS_SEPARATOR) {
                Some((interp, build)) => (interp.to_owned(), format!("pycds {build}")),
                None => (p.to_owned(), "an older pycds".to_owned()),
            };
            let ((their_interp, their_build), (my_interp, my_build)) = (split(&producer), split(&me));
            return Err(if their_interp != my_interp {
                format!("{path} was made by another interpreter or build: made by {their_interp}; this is {my_interp}")
            } else if their_build != my_build {
                format!(
                    "{path} was made by another interpreter or build: by {their_build}, not this {my_build}, \
                     for the same {my_interp}; dump it again"
                )
            } else {
                format!(
                    "{path} was made by another interpreter or build: made by {producer}, like this one, but \
                     its fingerprint differs (a damaged or foreign header); dump it again"
                )
            });
        }
        code_versions::reserve().map_err(|e| format!("{path} cannot be used: {e}"))?;
        let count = view.module_count() as usize;
        Ok(LoadedArchive {
            view,
            map,
            modules: Mutex::new(Modules {
                states: (0..count).map(|_| ModState::Fresh).collect(),
                ahead: RunAhead::default(),
                region: RegionPages::default(),
            }),
            prepared: Condvar::new(),
            more_work: Condvar::new(),
            dropped: Condvar::new(),
            order: OnceLock::new(),
            resolved: OnceLock::new(),
            interned: OnceLock::new(),
            path: path.to_owned(),
            producer,
            released: AtomicUsize::new(0),
            released_bytes: AtomicUsize::new(0),
            prepared_ahead: AtomicUsize::new(0),
            prepared_ahead_ns: AtomicU64::new(0),
            load_ns: AtomicU64::new(0),
            read_once: Mutex::new(ReadOnce::default()),
            panic_in_prepare: std::env::var("PYCDS_TEST_PANIC_IN_PREPARE").ok().filter(|m| !m.is_empty()),
        })
    }

    pub fn header(&self) -> &Header {
        &self.view.header
    }

    /// The value of the keyed record `key` (see `cds_archive::Archive::keyed`), or `None`.
    pub fn keyed(&self, key: &[u8]) -> Result<Option<&[u8]>, String> {
        self.view.keyed(key).map_err(|e| e.to_string())
    }

    pub fn mapped_at(&self) -> u64 {
        self.map.addr()
    }

    pub fn file_len(&self) -> usize {
        self.map.len()
    }

    pub fn lookup(&self, name: &str) -> Result<Option<u32>, String> {
        self.view.lookup(name).map(|e| e.map(|e| e.index)).map_err(|e| e.to_string())
    }

    pub fn entries(&self) -> Result<Vec<Entry<'static>>, String> {
        self.view.entries().map_err(|e| e.to_string())
    }

    pub fn entry(&self, index: u32) -> Result<Entry<'static>, String> {
        self.view.entry(index).map_err(|e| e.to_string())
    }

    pub fn meta(&self, index: u32) -> Result<ModuleMeta, String> {
        self.entry(index)?.meta().map_err(|e| e.to_string())
    }

    /// Is the archived module still what the file system holds, and would `search` (the live
    /// `sys.path` or parent `__path__`) still find it at the same place?
    pub fn check(&self, index: u32, search: &[String]) -> Result<Check, String> {
        let meta = self.meta(index)?;
        let (stale, by_digest) = match freshness(&meta) {
            Ok(by_digest) => (None, by_digest),
            Err(why) => (Some(why), false),
        };
        Ok(Check {
            stale,
            by_digest,
            unverified: unverified(&meta, search),
            origin: meta.origin,
            is_package: meta.is_package,
        })
    }

    /// Every module's state (a poisoned lock is taken over: the states are each written whole).
    fn modules(&self) -> MutexGuard<'_, Modules> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn order(&self) -> &DumpOrder {
        self.order.get_or_init(|| {
            let modules = self.view.read_once_order();
            let mut position = vec![0u32; modules.len()];
            for (pos, &(_, index)) in modules.iter().enumerate() {
                if let Some(p) = position.get_mut(index as usize) {
                    *p = pos as u32;
                }
            }
            DumpOrder { modules, position, largest: self.view.largest_module() }
        })
    }

    /// The module's root code object, fixing the module up on first use. Must be called with
    /// the GIL held; returns a new reference.
    pub fn load(self: &Arc<Self>, index: u32) -> Result<(*mut ffi::PyObject, Option<FixStats>), String> {
        let t = std::time::Instant::now();
        let result = self.load_timed(index);
        self.load_ns.fetch_add(ns(t, std::time::Instant::now()), Relaxed);
        result
    }

    fn load_timed(self: &Arc<Self>, index: u32) -> Result<(*mut ffi::PyObject, Option<FixStats>), String> {
        let prepared = {
            let mut m = self.modules();
            if index as usize >= m.states.len() {
                return Err("module index out of range".into());
            }
            let Modules { states, ahead: a, .. } = &mut *m;
            a.loads += 1;
            // Until the thread may start, nothing needs the dump order (made on first use): a
            // process that only starts up never sorts the index.
            if a.loads >= RUN_AHEAD_AFTER {
                let order = self.order();
                // The run-ahead thread goes on from this module (while it is fixed up here),
                // even when that is back in dump order: a program imports in about the traced
                // order, but not exactly (start-up differs, and so may the order within a group
                // of imports), and one module asked for early must not make the thread skip all
                // before it.
                let pos = order.position[index as usize] as usize;
                a.next = pos + 1;
                a.horizon = pos + 1 + RUN_AHEAD;
                // An idle thread is woken only once the next `RUN_AHEAD / 2` modules are not
                // all prepared: each wake-up costs this thread a system call, so it comes once
                // per batch of modules rather than once per import.
                let soon = &order.modules
                    [(pos + 1).min(order.modules.len())..(pos + 1 + RUN_AHEAD / 2).min(order.modules.len())];
                if a.idle && soon.iter().any(|&(_, i)| matches!(states[i as usize], ModState::Fresh)) {
                    self.more_work.notify_one();
                }
            }
            while matches!(m.states[index as usize], ModState::Preparing) {
                // The thread never takes the GIL, so it finishes this module whatever we hold.
                m.ahead.waiting += 1;
                m = self.prepared.wait(m).unwrap_or_else(|p| p.into_inner());
                m.ahead.waiting -= 1;
            }
            let state = &mut m.states[index as usize];
            match state {
                ModState::Ready { code, .. } => {
                    let code = *code as *mut ffi::PyObject;
                    // SAFETY: GIL held; `code` is an archived object that is never freed.
                    unsafe { ffi::Py_INCREF(code) };
                    return Ok((code, None));
                }
                ModState::Failed(why) => return Err(why.clone()),
                ModState::Released => return Err("it ran already and its run-once objects were released".into()),
                ModState::InProgress => return Err("module is being fixed up (re-entrant import)".into()),
                ModState::Preparing => unreachable!("waited for above"),
                ModState::Fresh => {
                    *state = ModState::InProgress;
                    None
                }
                ModState::Prepared(_) => match std::mem::replace(state, ModState::InProgress) {
                    ModState::Prepared(p) => {
                        self.prepared_ahead.fetch_add(1, Relaxed);
                        self.prepared_ahead_ns.fetch_add(p.ahead_ns(), Relaxed);
                        Some(p)
                    }
                    _ => unreachable!("matched above"),
                },
            }
        };
        // The lock is not held while fixing up: allocations may run the garbage collector, and
        // finalizers may import (and so come back here for another module).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match prepared {
            Some(p) => self.finish(*p),
            None => self
                .externals()
                .and_then(|x| self.prepare(index, x, &mut Scratch::default()))
                .and_then(|p| self.finish(p)),
        }))
        .unwrap_or_else(|_| Err(PANICKED.into()));
        let mut m = self.modules();
        let result = match result {
            Ok((code, run_once, stats)) => {
                m.states[index as usize] = ModState::Ready { code: code as usize, run_once };
                // SAFETY: GIL held; archived objects are never freed.
                unsafe { ffi::Py_INCREF(code) };
                Ok((code, Some(stats)))
            }
            Err(why) => {
                m.states[index as usize] = ModState::Failed(why.clone());
                Err(why)
            }
        };
        let Modules { states, ahead, .. } = &mut *m;
        self.forget_read(states, ahead);
        self.start_running_ahead(&mut m);
        result
    }

    /// Starts the run-ahead thread if the program has begun importing in earnest, there is
    /// something left to prepare, and none is running.
    fn start_running_ahead(self: &Arc<Self>, m: &mut Modules) {
        let a = &mut m.ahead;
        let ready = matches!(self.resolved.get(), Some(Ok(_)));
        if a.running || a.stop || a.closed || !ready || a.loads < RUN_AHEAD_AFTER || a.next >= m.states.len() {
            return;
        }
        let me = Arc::clone(self);
        // Made here, so that the thread's largest allocations come from (and go back to) this
        // thread's allocator rather than a malloc arena of its own that would stay resident.
        let scratch = Scratch::for_modules_up_to(self.order().largest);
        a.running = run_ahead::spawn(Arc::downgrade(self), move || me.run_ahead(scratch));
    }

    /// The run-ahead thread's body: prepares modules in dump order, up to the horizon the
    /// imports set, until nothing comes for `RUN_AHEAD_IDLE` or it is told to stop. Never
    /// touches the interpreter.
    fn run_ahead(&self, mut scratch: Scratch) {
        let Some(Ok(externals)) = self.resolved.get() else {
            self.drop_left(self.modules()).ahead.running = false;
            return;
        };
        let order = self.order();
        let mut m = self.modules();
        loop {
            m = self.drop_left(m);
            if m.ahead.stop || m.ahead.closed {
                break;
            }
            let end = m.ahead.horizon.min(order.modules.len());
            while m.ahead.next < end && !matches!(m.states[order.modules[m.ahead.next].1 as usize], ModState::Fresh) {
                m.ahead.next += 1;
            }
            if m.ahead.next >= order.modules.len() {
                break;
            }
            if m.ahead.next < end {
                let index = order.modules[m.ahead.next].1;
                m.ahead.next += 1;
                m.states[index as usize] = ModState::Preparing;
                drop(m);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.prepare(index, externals, &mut scratch)
                }))
                .unwrap_or_else(|_| Err(PANICKED.into()));
                m = self.modules();
                m.states[index as usize] = match result {
                    Ok(p) => ModState::Prepared(Box::new(p)),
                    Err(why) => ModState::Failed(why),
                };
                if m.ahead.waiting > 0 {
                    self.prepared.notify_all();
                }
                continue;
            }
            m.ahead.idle = true;
            let (guard, waited) = self.more_work.wait_timeout(m, RUN_AHEAD_IDLE).unwrap_or_else(|p| p.into_inner());
            m = guard;
            m.ahead.idle = false;
            if waited.timed_out() && m.ahead.next >= m.ahead.horizon.min(order.modules.len()) {
                break;
            }
        }
        let mut m = self.drop_left(m);
        m.ahead.running = false;
        self.prepared.notify_all();
    }

    /// Stops the run-ahead thread after the module in hand (`for_good`: the archive is being
    /// closed; otherwise the process is about to fork and the next import may start another).
    pub fn stop_running_ahead(&self, for_good: bool) {
        let mut m = self.modules();
        m.ahead.stop = true;
        m.ahead.closed |= for_good;
        self.more_work.notify_all();
    }

    /// After `stop_running_ahead(false)` and the thread's exit: lets the next import start one.
    pub fn may_run_ahead_again(&self) {
        self.modules().ahead.stop = false;
    }

    /// After module `index` ran (from its code object as `load` returned it): releases its
    /// run-once objects if nothing refers to any of them any more, as a normal import frees its
    /// module's code object then, and gives back the pages of the run-once region that no
    /// module needs any more (see `RegionPages`). Returns the bytes given back (pages shared
    /// with modules that have not run yet go back with the last of them), `None` when there was
    /// nothing to release (the module's run-once objects are not in the region, it was not
    /// fixed up, or this interpreter cannot tell), or why the objects were kept. Must be called
    /// with the GIL held.
    pub fn release(&self, index: u32) -> Result<Option<usize>, String> {
        let mut m = self.modules();
        let Some(&ModState::Ready { run_once: Some((start, end)), .. }) = m.states.get(index as usize) else {
            return Ok(None);
        };
        let externals = self.externals()?;
        // SAFETY: GIL held (caller contract), so no other code reads or writes these objects
        // while the slice lives; the range is the module's run-once part (from its checked
        // entry, at fix-up), and the slice is only read.
        let objects = unsafe { self.map.range_mut(start as usize, (end - start) as usize) };
        let actual = self.map.addr() + start;
        // Each object still carries the archived count: nothing outside the run-once objects
        // holds a reference (the validator made sure no other archived object points at them).
        Validator::new(
            Parts::new((&[][..], actual), (&[][..], actual), (&*objects, actual)),
            &externals.rules,
            self.view.header.intern_count,
        )
        .objects_intact()?;
        m.states[index as usize] = ModState::Released;
        self.released.fetch_add(1, Relaxed);
        // Every object of this module on these pages is unreferenced (just checked, GIL held):
        // no pointer of the interpreter or of another archived object leads to them, and the
        // module's state no longer hands out its code object, so nothing will touch them again.
        // The page counts say which pages no other counted module needs.
        let Modules { region, ahead, .. } = &mut *m;
        let (first, end) = region.counted.get_mut(index as usize).map(std::mem::take).unwrap_or((0, 0));
        // Runs of pages whose count drops to zero, as `[start, end)` page numbers.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for page in first..end {
            let (users, left) = (&mut region.users[page as usize], &mut region.left[page as usize]);
            if *users == 0 {
                continue; // never counted (cannot happen): keep the page
            }
            *users -= 1;
            *left = left.saturating_sub(1);
            if *users == 0 && *left == 0 {
                match runs.last_mut() {
                    Some(run) if run.1 == page => run.1 = page + 1,
                    _ => runs.push((page, page + 1)),
                }
            }
        }
        let mut given = 0;
        for (a, b) in runs {
            let off = self.region_start() + a as u64 * PAGE_SIZE;
            let len = (b - a) as usize * PAGE_SIZE as usize;
            self.give_back(ahead, PageDrop::RunOnce(off as usize, len));
            given += len;
        }
        self.released_bytes.fetch_add(given, Relaxed);
        Ok(Some(given))
    }

    /// The file offset of the archive's run-once region.
    fn region_start(&self) -> u64 {
        self.view.header.objects_off + self.view.header.run_once_off
    }

    /// Module `entry`'s objects in the mapping, each part at its address in this process.
    ///
    /// SAFETY (caller): as for `Mapping::range_mut`: the caller claimed the module under the
    /// lock before any of its objects reached the interpreter (or holds the GIL), so no other
    /// reference into its bytes is in use. The three parts lie in the objects section and apart
    /// (checked by `Archive::entry`), so the three slices do not alias.
    // The bytes are the mapping's, not `self`'s: exclusive access to them comes from claiming
    // the module (the contract above), not from a borrow of `self`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn parts_mut(&self, entry: &Entry) -> Parts<&mut [u8]> {
        let base = self.map.addr();
        let [first, cold, run_once] = entry.part_ranges().map(|(start, end)| {
            // SAFETY: the caller's contract, above; the three ranges are disjoint.
            let bytes = unsafe { self.map.range_mut(start as usize, (end - start) as usize) };
            (bytes, base + start)
        });
        Parts::new(first, cold, run_once)
    }

    /// Counts module `entry` (number `index`), claimed by this thread, as a user of the run-once
    /// region pages its run-once objects lie on, before `prepare` writes a byte of them, so that
    /// no release gives them back while it may need them. A page some release left for the
    /// run-ahead thread to give back is taken off that list; one the thread is giving back right
    /// now is waited for (so that the module finds the file's bytes there, not a page being
    /// dropped under its writes).
    fn count_region_pages(&self, entry: &Entry, index: u32) {
        let Some((first, last)) = entry.run_once_pages.filter(|_| CAN_RELEASE_RUN_ONCE) else {
            return;
        };
        let mut m = self.modules();
        let region = self.region_start();
        let (lo, hi) = (region + first * PAGE_SIZE, region + last * PAGE_SIZE);
        let overlaps = |d: &PageDrop| matches!(*d, PageDrop::RunOnce(s, l) if (s as u64) < hi && lo < (s + l) as u64);
        while m.ahead.in_flight.iter().any(overlaps) {
            m = self.dropped.wait(m).unwrap_or_else(|p| p.into_inner());
        }
        // Pending drops keep only their pages outside this module's.
        let pending = std::mem::take(&mut m.ahead.drops);
        for d in pending {
            match d {
                PageDrop::RunOnce(s, l) if overlaps(&d) => {
                    let (s, e) = (s as u64, (s + l) as u64);
                    if s < lo {
                        m.ahead.drops.push(PageDrop::RunOnce(s as usize, (lo - s) as usize));
                    }
                    if hi < e {
                        m.ahead.drops.push(PageDrop::RunOnce(hi as usize, (e - hi) as usize));
                    }
                }
                other => m.ahead.drops.push(other),
            }
        }
        let Modules { region: r, states, .. } = &mut *m;
        if r.users.is_empty() {
            let pages = (self.view.header.run_once_len / PAGE_SIZE) as usize;
            r.users = vec![0; pages];
            r.left = vec![UNKNOWN; pages];
            r.counted = vec![(0, 0); states.len()];
        }
        for page in first..last {
            r.users[page as usize] += 1;
            let left = &mut r.left[page as usize];
            if *left == UNKNOWN {
                // Known from the first module that touches the page: the part on its first or
                // last page shares it, one on a page in between has it alone.
                *left = if page == first {
                    entry.first_page_parts
                } else if page + 1 == last {
                    entry.last_page_parts
                } else {
                    1
                };
            }
        }
        r.counted[index as usize] = (first as u32, last as u32);
    }

    /// Advances the marks of `ReadOnce` after a module's fix-up (`modules`: every module's state,
    /// with that one no longer in progress) and unmaps the windows they passed.
    fn forget_read(&self, modules: &[ModState], ahead: &mut RunAhead) {
        // Before the dump order is made (the first imports), the marks wait: the next call
        // after it is made catches up.
        let Some(order) = self.order.get() else { return };
        let order = &order.modules;
        let mut r = self.read_once.lock().unwrap_or_else(|p| p.into_inner());
        if r.forgotten == [0; 3] {
            let [records, bytes] = self.view.strings_used_below(0);
            r.forgotten = [records.0, bytes.0, order.first().map_or(0, |o| o.0)];
        }
        if let Some(table) = self.interned.get() {
            while table.get(r.strings as usize).is_some_and(|c| c.load(Relaxed) != 0) {
                r.strings += 1;
            }
        }
        // A module prepared ahead still has its fix-ups to read.
        let done = |s: &ModState| matches!(s, ModState::Ready { .. } | ModState::Failed(_) | ModState::Released);
        while order.get(r.modules).is_some_and(|&(_, i)| done(&modules[i as usize])) {
            r.modules += 1;
        }
        let [records, bytes] = self.view.strings_used_below(r.strings);
        let blob_end = self.view.header.blob_off + self.view.header.blob_len;
        let modules_end = order.get(r.modules).map_or(blob_end, |o| o.0);
        let ranges = [records.1, bytes.1, modules_end];
        let base = self.map.addr();
        for (done, end) in r.forgotten.iter_mut().zip(ranges) {
            let start = done.next_multiple_of(cds_archive::PAGE_SIZE);
            // Whole fault-around windows of the address space only, and never past the metadata.
            let end =
                ((base + end.min(self.view.header.objects_off)) / FAULT_AROUND * FAULT_AROUND).saturating_sub(base);
            if end > start {
                // `[start, end)` lies before the objects section (clamped above), in metadata
                // that nothing writes.
                self.give_back(ahead, PageDrop::ReadOnce(start as usize, (end - start) as usize));
                *done = end;
            }
        }
    }

    /// Gives pages back at once, or, while the run-ahead thread is on a CPU, leaves that to it
    /// (it does so before its next module). Dropping pages makes the kernel flush them from
    /// every CPU that runs this process: with the thread running, that is an interrupt to its
    /// CPU, which the caller waits for (about 30 µs on this VM, where `perf` found these
    /// flushes taking 2 ms of an `app` run's importing thread). An idle thread's CPU needs none.
    fn give_back(&self, ahead: &mut RunAhead, pages: PageDrop) {
        if ahead.running && !ahead.idle {
            ahead.drops.push(pages);
        } else {
            self.drop_now(pages);
        }
    }

    fn drop_now(&self, pages: PageDrop) {
        match pages {
            // SAFETY: `release` proved every object on these pages unreferenced and marked the
            // module `Released`, so nothing refers to them or ever will.
            PageDrop::RunOnce(start, len) => unsafe { self.map.release(start, len) },
            // SAFETY: `forget_read` clamped the range to the metadata, which nothing writes.
            PageDrop::ReadOnce(start, len) => unsafe { self.map.forget_read(start, len) },
        }
    }

    /// The run-ahead thread's part of `give_back`: drops what the importing thread left it,
    /// without holding the lock meanwhile. Returns the lock.
    fn drop_left<'m>(&'m self, mut m: MutexGuard<'m, Modules>) -> MutexGuard<'m, Modules> {
        while !m.ahead.drops.is_empty() {
            let drops = std::mem::take(&mut m.ahead.drops);
            m.ahead.in_flight.clone_from(&drops);
            drop(m);
            for &pages in &drops {
                self.drop_now(pages);
            }
            m = self.modules();
            m.ahead.in_flight.clear();
            self.dropped.notify_all();
        }
        m
    }

    /// Modules whose import found them prepared by the run-ahead thread.
    pub fn prepared_ahead(&self) -> usize {
        self.prepared_ahead.load(Relaxed)
    }

    /// The run-ahead thread's work so far: (modules an import found prepared, nanoseconds spent
    /// preparing them; modules prepared that no import has asked for yet, nanoseconds spent on
    /// them). At exit, the second pair is work for modules the program never imported.
    pub fn run_ahead_account(&self) -> (usize, u64, usize, u64) {
        let m = self.modules();
        let (unused, unused_ns) = m.states.iter().fold((0, 0), |(n, ns), s| match s {
            ModState::Prepared(p) => (n + 1, ns + p.ahead_ns()),
            _ => (n, ns),
        });
        (self.prepared_ahead(), self.prepared_ahead_ns.load(Relaxed), unused, unused_ns)
    }

    /// Nanoseconds importing threads have spent getting modules' code objects (see `load_ns`).
    pub fn load_ns(&self) -> u64 {
        self.load_ns.load(Relaxed)
    }

    /// Modules whose run-once objects were released, and the bytes of pages given back.
    pub fn released(&self) -> (usize, usize) {
        (self.released.load(Relaxed), self.released_bytes.load(Relaxed))
    }

    /// The interpreter's interned string for entry `number` of the archive's table (a borrowed
    /// reference: the table holds one), made and interned on first use in this process, as
    /// unmarshalling makes a `.pyc`'s strings. Must be called with the GIL held.
    fn interned_string(&self, table: &[AtomicUsize], number: u32) -> Result<*mut ffi::PyObject, String> {
        let cell = table.get(number as usize).ok_or_else(|| format!("no interned string {number}"))?;
        let known = cell.load(Relaxed);
        if known != 0 {
            return Ok(known as *mut ffi::PyObject);
        }
        let bytes = self.view.interned(number).map_err(|e| e.to_string())?;
        let (kind, units) =
            layout::decode_interned(bytes).ok_or_else(|| format!("interned string {number} is malformed"))?;
        // SAFETY: GIL held (caller contract); `units` holds `units.len() / kind` code units of
        // `kind` bytes, aligned for them (the table aligns every string's bytes to 8), and
        // CPython copies them into a new string (checking every code point).
        unsafe {
            let mut s =
                ffi::PyUnicode_FromKindAndData(kind as i32, units.as_ptr().cast(), (units.len() / kind) as isize);
            if s.is_null() {
                ffi::PyErr_Clear();
                return Err(format!("interned string {number} is not a valid string"));
            }
            // The reference we own moves to the interned string (an equal one the interpreter
            // had already, or this one); the table keeps it.
            ffi::PyUnicode_InternInPlace(&mut s);
            cell.store(s as usize, Relaxed);
            Ok(s)
        }
    }

    /// The externals, resolved to this process's addresses on first use.
    fn externals(&self) -> Result<&Resolved, String> {
        let r = self.resolved.get_or_init(|| {
            let table = self.view.externals();
            let mut actual = Vec::with_capacity(table.len());
            let mut classes = AddrMap::with_capacity(table.len());
            for x in table {
                let unknown = || format!("unknown external {} / {}", x.kind, x.arg);
                let addr = externals::resolve(x).ok_or_else(unknown)? as u64;
                actual.push(addr);
                classes.insert(addr, externals::class_of(x).ok_or_else(unknown)?);
            }
            let map = ExternalMap::new(&self.view.external_addrs(), &actual);
            Ok(Resolved { moves: map.moves_anything(), map, rules: Rules::new(classes, type_facts()) })
        });
        r.as_ref().map_err(|e| e.clone())
    }

    /// The part of a module's fix-up that needs no GIL and touches no interpreter state:
    /// faults its pages in for writing, checks its checksum, relocates it and validates it.
    /// Called once per module, by whichever thread claimed it (its state is `Preparing` or
    /// `InProgress`, set under the lock by that thread).
    fn prepare(&self, index: u32, externals: &Resolved, scratch: &mut Scratch) -> Result<Prepared, String> {
        let entry = self.entry(index)?;
        if self.panic_in_prepare.as_deref() == Some(entry.name) {
            panic!("PYCDS_TEST_PANIC_IN_PREPARE={}", entry.name);
        }
        self.count_region_pages(&entry, index);
        // SAFETY: this thread claimed the module under the lock (state `Preparing` or
        // `InProgress`), and counted its region pages just above, so no other thread touches
        // these bytes, and its objects have never been handed to the interpreter, so nothing
        // else references them.
        let mut objects = unsafe { self.parts_mut(&entry) };
        let moved = externals.moves || self.map.addr() != self.view.header.preferred_base;
        let populated = moved || !layout::IMMORTAL_OBJECTS;
        if populated {
            // Every object's header will be written (type pointers that differ in this process,
            // or reference counts on interpreters without immortal objects), but for the cold
            // objects' (nothing takes a reference to them), unless relocation moves them: those
            // pages stay clean, shared with every process that maps the archive.
            let [first, cold, run_once] = entry.part_ranges();
            for (start, end) in [first, run_once].into_iter().chain(moved.then_some(cold)) {
                self.map.populate_for_write(start as usize, (end - start) as usize);
            }
        }
        let t0 = std::time::Instant::now();
        entry.verify(&objects.view()).map_err(|e| e.to_string())?;
        let t1 = std::time::Instant::now();
        let (preferred, actual) = (self.view.header.preferred_base, self.map.addr());
        let st = relocate(&mut objects, &entry, preferred, actual, &externals.map).map_err(|e| e.to_string())?;
        let t2 = std::time::Instant::now();
        let validated = Validator::new(objects.view(), &externals.rules, self.view.header.intern_count)
            .run(entry.root, scratch)
            .map_err(|e| format!("{}: {e}", entry.name))?;
        let fixups = fixup_slots(&entry, &objects.view(), &validated)?;
        let t3 = std::time::Instant::now();
        // The slots of strings already made are filled here, off the importing thread when
        // this runs ahead: writing a pointer needs no GIL, and the slot takes no reference of
        // its own (see `finish`). A table entry only ever goes from null to its string. Only
        // the slots of strings not made yet are kept for `finish`. This is done only where the
        // module's pages were faulted in for writing above: writing a page that reading mapped
        // (3.13+ at the preferred address) replaces a mapping the importing thread's CPU may
        // hold, and that costs both CPUs an interrupt per page while both threads run; there the
        // import fills them all, as before.
        let made = |number: u32| match self.interned.get().and_then(|t| t.get(number as usize)) {
            Some(c) if populated => c.load(Relaxed),
            _ => 0,
        };
        // Counted first and allocated once (the importing thread may make more strings in the
        // meantime, so the second pass keeps at most as many): the run-ahead thread's
        // allocations make a malloc arena of its own, which keeps its high-water mark resident.
        let pending = validated.interned.iter().filter(|&&(_, number)| made(number) == 0).count();
        let mut interned = Vec::with_capacity(pending);
        for &(slot, number) in validated.interned {
            match made(number) {
                0 => interned.push((slot, number)),
                s => {
                    // `slot` lies inside the module (the validator read it).
                    objects.set_word(slot as u64, s as u64);
                }
            }
        }
        let filled_early = (validated.interned.len() - interned.len(), ns(t3, std::time::Instant::now()));
        Ok(Prepared {
            entry,
            interned,
            filled_early,
            fixups,
            relocs: st.relocs,
            written: st.written,
            phase_ns: [ns(t0, t1), ns(t1, t2), ns(t2, t3)],
        })
    }

    /// The rest of a module's fix-up, with the GIL held: fills the interned-string slots and
    /// builds the frozenset and frozendict constants. Returns the root, the run-once range to keep in the
    /// module's state (see `ModState`) and what the whole fix-up took.
    fn finish(&self, prepared: Prepared) -> Result<(*mut ffi::PyObject, Option<FileRange>, FixStats), String> {
        let Prepared {
            entry,
            interned,
            filled_early: (filled_early, early_ns),
            fixups,
            relocs,
            written,
            phase_ns: [verify_ns, relocate_ns, validate_ns],
        } = prepared;
        // SAFETY: GIL held (the caller's contract); this module is `InProgress`, claimed by this
        // thread, and none of its objects has been handed to the interpreter yet.
        let mut objects = unsafe { self.parts_mut(&entry) };
        let intern_count = self.view.header.intern_count;
        let table = self.interned.get_or_init(|| zeroed_table(intern_count as usize));
        let t3 = std::time::Instant::now();
        // Interned strings first: a frozenset or frozendict below is built from items that may be
        // among them.
        // A slot takes no reference of its own: the table holds one reference to each string
        // for the life of the process (it is never released), and the archived object that
        // holds the slot is never freed (its count never reaches zero) and so never gives one
        // back. Interned strings are never modified in place, whatever their count.
        for &(slot, number) in &interned {
            let s = self.interned_string(table, number).map_err(|e| format!("{}: {e}", entry.name))?;
            // `slot` lies inside the module (the validator read it).
            objects.set_word(slot as u64, s as u64);
        }
        for &(slot, kind) in &fixups {
            let Some(slot) = objects.ptr_mut(slot as u64) else {
                return Err(format!("fix-up of {} outside the module", entry.name));
            };
            // SAFETY: `prepare` checked that `slot` is a constant slot inside the module that
            // holds a pointer to an archived tuple of the module (GIL held); slots are 8-byte
            // aligned, and the pointer was just taken from the module's bytes.
            unsafe {
                let slot = slot as *mut *mut ffi::PyObject;
                let (made, what) = match kind {
                    FixupKind::FrozenSet => (ffi::PyFrozenSet_New(*slot), "frozenset"),
                    FixupKind::FrozenDict => (externals::frozendict_from_pairs(*slot), "frozendict"),
                };
                if made.is_null() {
                    ffi::PyErr_Clear();
                    return Err(format!("cannot build a {what} constant of {}", entry.name));
                }
                // The archived tuple keeps its (archived) reference count; the slot now owns
                // the new object's reference.
                *slot = made;
            }
        }
        // The validator checked that the root is an archived code object.
        let root = objects.addr_of(entry.root);
        let run_once = (CAN_RELEASE_RUN_ONCE && entry.pooled()).then_some(entry.part_ranges()[2]);
        let t4 = std::time::Instant::now();
        Ok((
            root as *mut ffi::PyObject,
            run_once,
            FixStats {
                relocs,
                written,
                intern_fixups: filled_early + interned.len(),
                frozenset_fixups: fixups.iter().filter(|f| f.1 == FixupKind::FrozenSet).count(),
                frozendict_fixups: fixups.iter().filter(|f| f.1 == FixupKind::FrozenDict).count(),
                phase_ns: [verify_ns, relocate_ns, validate_ns, early_ns + ns(t3, t4)],
            },
        ))
    }
}

/// The slots of a validated module's fix-ups, each checked to be a constant slot that points at
/// a tuple of the module (after relocation), as the validator found them.
fn fixup_slots(entry: &Entry, objects: &Parts<&[u8]>, validated: &Validated) -> Result<Vec<(u32, FixupKind)>, String> {
    let mut slots = Vec::new();
    for f in entry.fixups() {
        let f = f.map_err(|e| e.to_string())?;
        // `fixups()` checked that the slot is aligned and inside the module.
        let obj = objects.word(f.slot as u64).and_then(|w| objects.offset_of(w));
        let Some(obj) = obj else {
            return Err(format!("fix-up of {} points outside the module", entry.name));
        };
        if validated.kind_at(obj) != Some(Kind::Tuple) || validated.classes.get(f.slot as u64) != SlotClass::Const {
            return Err(format!("fix-up of {} is not at a tuple constant", entry.name));
        }
        if f.kind == FixupKind::FrozenDict && externals::frozendict_type().is_none() {
            return Err(format!("frozendict fix-up of {} on an interpreter without frozendict", entry.name));
        }
        slots.push((f.slot, f.kind));
    }
    Ok(slots)
}

fn ns(a: std::time::Instant, b: std::time::Instant) -> u64 {
    (b - a).as_nanos() as u64
}

/// The archived types' facts in this interpreter.
fn type_facts() -> TypeFacts {
    // SAFETY: reading fields of static built-in type objects, which never change once the
    // interpreter is running.
    unsafe {
        let code = externals::type_object(Kind::Code);
        let gc = externals::KINDS
            .iter()
            .filter(|&&k| ffi::PyType_HasFeature(externals::type_object(k), ffi::Py_TPFLAGS_HAVE_GC) != 0)
            .fold(0u16, |m, &k| m | 1 << k as u16);
        TypeFacts { code_basicsize: (*code).tp_basicsize as usize, code_itemsize: (*code).tp_itemsize as usize, gc }
    }
}

/// A table of `len` zeroed cells, allocated zeroed (for a large table, pages the kernel hands
/// out zeroed and that cost nothing until a cell on them is used).
fn zeroed_table(len: usize) -> Box<[AtomicUsize]> {
    let table: Box<[usize]> = vec![0usize; len].into_boxed_slice();
    // SAFETY: AtomicUsize has the same size, alignment and bit validity as usize (documented by
    // std), so a boxed slice of one is a boxed slice of the other; ownership moves whole.
    unsafe { Box::from_raw(Box::into_raw(table) as *mut [AtomicUsize]) }
}

/// An archive holds code that will run: like ssh with its keys, refuse one that someone other
/// than this user (or root) could have written (and the same of AUTO's cache directory).
pub(crate) fn trusted(path: &str, st: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if st.mode() & 0o022 != 0 {
        return Err(format!(
            "{path} is writable by group or others (mode {:o}); refusing to run code from it",
            st.mode() & 0o7777
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if st.uid() != me && st.uid() != 0 {
        return Err(format!(
            "{path} is owned by uid {}, not by this user ({me}) or root; refusing to run code from it",
            st.uid()
        ));
    }
    Ok(())
}

/// Whether the archived module still matches its source: `Ok(false)` when the source has the
/// recorded mtime and size, `Ok(true)` when only its mtime moved and its bytes still have the
/// recorded digest (a fresh checkout or a copy keeps the bytes and changes the time, so it is
/// read and compared, as checked-hash `.pyc` files are), else why not.
pub fn freshness(meta: &ModuleMeta) -> Result<bool, String> {
    match source_stat(&meta.origin) {
        None => Err(format!("source {} is missing", meta.origin)),
        Some((_, size)) if size != meta.source_size => Err(format!("source {} changed since the dump", meta.origin)),
        Some((mtime, _)) if mtime != meta.source_mtime_ns => match crate::pathstate::source_digest(&meta.origin) {
            Some(d) if d == meta.source_digest => Ok(true),
            _ => Err(format!("source {} changed since the dump", meta.origin)),
        },
        Some(_) => Ok(false),
    }
}

/// Why the archived module no longer matches its source, if it does not.
pub fn staleness(meta: &ModuleMeta) -> Option<String> {
    freshness(meta).err()
}

/// Why the recorded search could not be confirmed cheaply against `search`, if it could not.
fn unverified(meta: &ModuleMeta, search: &[String]) -> Option<String> {
    for (i, rec) in meta.search.iter().enumerate() {
        match search.get(i) {
            Some(live) if *live == rec.path => {}
            _ => return Some(format!("search path differs at entry {i} ({})", rec.path)),
        }
        if !rec.path.starts_with('/') {
            return Some(format!("relative search path entry {:?}", rec.path));
        }
        if path_state(&rec.path) != rec.state {
            return Some(format!("{} changed since the dump", rec.path));
        }
    }
    if meta.search.is_empty() {
        return Some("no search path recorded".into());
    }
    None
}

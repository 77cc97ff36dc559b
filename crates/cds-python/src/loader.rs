//! The load side: an opened archive, the per-module freshness check and the per-module fix-up
//! that turns archive bytes into live interpreter objects on first import.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use cds_archive::{relocate, AddrMap, Archive, Entry, ExternalMap, FixupKind, Header, ModuleMeta, HEADER_SIZE};
use pyo3::ffi;

use crate::code_versions;
use crate::externals::{self, Kind};
use crate::fingerprint;
use crate::layout;
use crate::mapping::Mapping;
use crate::pathstate::{path_state, source_stat};
use crate::validate::{Rules, SlotClass, TypeFacts, Validator};

/// A range `[start, end)` of the archive file.
type FileRange = (u64, u64);

enum ModState {
    Fresh,
    InProgress,
    /// Fixed up: the root code object, and the file range of the module's run-once objects
    /// when this interpreter can release them and they fill at least one whole page.
    Ready { code: usize, run_once: Option<FileRange> },
    Failed(String),
    /// The module ran and its run-once objects' pages were given back: its code object is
    /// gone, so importing it again takes the normal path.
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
    modules: Mutex<Vec<ModState>>,
    resolved: OnceLock<Result<Resolved, String>>,
    /// The interned string each number of the archive's table resolved to in this process
    /// (null until first use), holding one reference of its own. Made at the first fix-up.
    interned: OnceLock<Box<[AtomicUsize]>>,
    pub path: String,
    pub producer: String,
    /// Modules whose run-once pages were released, and the bytes given back.
    released: AtomicUsize,
    released_bytes: AtomicUsize,
    /// How far the loader has read the metadata it reads once (see `ReadOnce`).
    read_once: Mutex<ReadOnce>,
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
    /// Modules in the blob's order (made at the first fix-up), and how many of them, from the
    /// front, have been fixed up (or failed).
    order: Vec<(u64, u32)>,
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
        let map = Mapping::map(&file, len as usize, header.preferred_base)
            .map_err(|e| format!("cannot map {path}: {e}"))?;
        let meta = map.prefix(header.objects_off as usize);
        // SAFETY: `meta` points into `map`, which is moved into the same struct and outlives
        // `view` (fields drop in declaration order; `view` is first). The mapping's address does
        // not change when the `Mapping` value moves.
        let meta: &'static [u8] = unsafe { std::slice::from_raw_parts(meta.as_ptr(), meta.len()) };
        let view = Archive::parse(meta, len).map_err(|e| format!("{path}: {e}"))?;
        let producer = view.producer();
        let (fp, me) = fingerprint::current();
        if view.header.fingerprint != fp {
            return Err(if producer == me {
                format!(
                    "{path} was made by another interpreter or build: made by {producer}, like this \
                     one, but with other struct layouts (another pycds or interpreter build); dump it again"
                )
            } else {
                format!("{path} was made by another interpreter or build: made by {producer}; this is {me}")
            });
        }
        code_versions::reserve().map_err(|e| format!("{path} cannot be used: {e}"))?;
        let count = view.module_count() as usize;
        Ok(LoadedArchive {
            view,
            map,
            modules: Mutex::new((0..count).map(|_| ModState::Fresh).collect()),
            resolved: OnceLock::new(),
            interned: OnceLock::new(),
            path: path.to_owned(),
            producer,
            released: AtomicUsize::new(0),
            released_bytes: AtomicUsize::new(0),
            read_once: Mutex::new(ReadOnce::default()),
        })
    }

    pub fn header(&self) -> &Header {
        &self.view.header
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
        Ok(Check {
            stale: staleness(&meta),
            unverified: unverified(&meta, search),
            origin: meta.origin,
            is_package: meta.is_package,
        })
    }

    /// The module's root code object, fixing the module up on first use. Must be called with
    /// the GIL held; returns a new reference.
    pub fn load(&self, index: u32) -> Result<(*mut ffi::PyObject, Option<FixStats>), String> {
        {
            let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            let state = modules.get_mut(index as usize).ok_or("module index out of range")?;
            match state {
                ModState::Ready { code, .. } => {
                    let code = *code as *mut ffi::PyObject;
                    // SAFETY: GIL held; `code` is an archived object that is never freed.
                    unsafe { ffi::Py_INCREF(code) };
                    return Ok((code, None));
                }
                ModState::Failed(why) => return Err(why.clone()),
                ModState::Released => {
                    return Err("it ran already and its run-once objects were released".into())
                }
                ModState::InProgress => return Err("module is being fixed up (re-entrant import)".into()),
                ModState::Fresh => *state = ModState::InProgress,
            }
        }
        // The lock is not held while fixing up: allocations may run the garbage collector, and
        // finalizers may import (and so come back here for another module).
        let result = self.fix_up(index);
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let result = match result {
            Ok((code, run_once, stats)) => {
                modules[index as usize] = ModState::Ready { code: code as usize, run_once };
                // SAFETY: GIL held; archived objects are never freed.
                unsafe { ffi::Py_INCREF(code) };
                Ok((code, Some(stats)))
            }
            Err(why) => {
                modules[index as usize] = ModState::Failed(why.clone());
                Err(why)
            }
        };
        self.forget_read(&modules);
        result
    }

    /// After module `index` ran (from its code object as `load` returned it): gives back the
    /// pages of its run-once objects if nothing refers to any of them any more, as a normal
    /// import frees its module's code object then. Returns the bytes released (0 when the
    /// module has no whole page of run-once objects, was not fixed up, or this interpreter
    /// cannot tell), or why the objects were kept. Must be called with the GIL held.
    pub fn release(&self, index: u32) -> Result<usize, String> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&ModState::Ready { run_once: Some((start, end)), .. }) = modules.get(index as usize) else {
            return Ok(0);
        };
        let (first, last) = whole_pages(start, end);
        let externals = self.externals()?;
        // SAFETY: GIL held (caller contract), so no other code reads or writes these objects
        // while the slice lives; the range lies inside the module (from its checked entry, at
        // fix-up), and the slice is only read.
        let objects = unsafe { self.map.range_mut(start as usize, (end - start) as usize) };
        let actual = self.map.addr() + start;
        // Each object still carries the archived count: nothing outside the run-once objects
        // holds a reference (the validator made sure no other archived object points at them).
        Validator::new(objects, actual, &externals.rules, self.view.header.intern_count, 0)
            .objects_intact()?;
        modules[index as usize] = ModState::Released;
        // SAFETY: every object on these pages is unreferenced (just checked, GIL held): no
        // pointer of the interpreter or of another archived object leads to them, and the
        // module's state no longer hands out its code object.
        unsafe { self.map.release(first as usize, (last - first) as usize) };
        self.released.fetch_add(1, Relaxed);
        self.released_bytes.fetch_add((last - first) as usize, Relaxed);
        Ok((last - first) as usize)
    }

    /// Advances the marks of `ReadOnce` after a module's fix-up (`modules`: every module's state,
    /// with that one no longer in progress) and unmaps the windows they passed.
    fn forget_read(&self, modules: &[ModState]) {
        let mut r = self.read_once.lock().unwrap_or_else(|p| p.into_inner());
        if r.order.is_empty() {
            r.order = self.view.read_once_order();
            let [records, bytes] = self.view.strings_used_below(0);
            r.forgotten = [records.0, bytes.0, r.order.first().map_or(0, |o| o.0)];
        }
        if let Some(table) = self.interned.get() {
            while table.get(r.strings as usize).is_some_and(|c| c.load(Relaxed) != 0) {
                r.strings += 1;
            }
        }
        while r.order.get(r.modules).is_some_and(|&(_, i)| !matches!(modules[i as usize], ModState::Fresh | ModState::InProgress)) {
            r.modules += 1;
        }
        let [records, bytes] = self.view.strings_used_below(r.strings);
        let blob_end = self.view.header.blob_off + self.view.header.blob_len;
        let modules_end = r.order.get(r.modules).map_or(blob_end, |o| o.0);
        let ranges = [records.1, bytes.1, modules_end];
        let base = self.map.addr();
        for (done, end) in r.forgotten.iter_mut().zip(ranges) {
            let start = done.next_multiple_of(cds_archive::PAGE_SIZE);
            // Whole fault-around windows of the address space only, and never past the metadata.
            let end = ((base + end.min(self.view.header.objects_off)) / FAULT_AROUND * FAULT_AROUND).saturating_sub(base);
            if end > start {
                // SAFETY: `[start, end)` lies before the objects section (clamped above), in
                // metadata that nothing writes.
                unsafe { self.map.forget_read(start as usize, (end - start) as usize) };
                *done = end;
            }
        }
    }

    /// Modules whose run-once pages were released, and the bytes released.
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
            let mut s = ffi::PyUnicode_FromKindAndData(kind as i32, units.as_ptr().cast(), (units.len() / kind) as isize);
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

    /// Checks, relocates and fixes up one module (called once per module).
    /// Returns the root, the run-once range to keep in the module's state (see `ModState`) and
    /// what the fix-up took.
    fn fix_up(&self, index: u32) -> Result<(*mut ffi::PyObject, Option<FileRange>, FixStats), String> {
        let entry = self.entry(index)?;
        let start = entry.objects_file_off as usize;
        let len = entry.objects_len as usize;
        // SAFETY: GIL held (the caller's contract); the range lies in the objects section
        // (checked by `Archive::entry`), and this module's objects have never been handed to the
        // interpreter (state is Fresh), so nothing else references these bytes.
        let objects = unsafe { self.map.range_mut(start, len) };
        let externals = self.externals()?;
        if externals.moves || self.map.addr() != self.view.header.preferred_base || !layout::IMMORTAL_OBJECTS {
            // Every object's header will be written (type pointers that differ in this process,
            // or reference counts on interpreters without immortal objects).
            self.map.populate_for_write(start, len);
        }
        let t0 = std::time::Instant::now();
        entry.verify(objects).map_err(|e| e.to_string())?;
        let t1 = std::time::Instant::now();
        let preferred = self.view.header.preferred_base + entry.objects_file_off;
        let actual = self.map.addr() + entry.objects_file_off;
        let st = relocate(objects, &entry, preferred, actual, &externals.map).map_err(|e| e.to_string())?;
        let t2 = std::time::Instant::now();
        let intern_count = self.view.header.intern_count;
        let validated = Validator::new(objects, actual, &externals.rules, intern_count, entry.run_once)
            .run(entry.root)
            .map_err(|e| format!("{}: {e}", entry.name))?;
        let base = objects.as_mut_ptr();
        let inside = |p: u64| p >= actual && p < actual + len as u64 && p % 8 == 0;
        let table = self.interned.get_or_init(|| zeroed_table(intern_count as usize));
        let t3 = std::time::Instant::now();
        // Interned strings first: a frozenset below is built from items that may be among them.
        for &(slot, number) in &validated.interned {
            let s = self.interned_string(table, number).map_err(|e| format!("{}: {e}", entry.name))?;
            // SAFETY: the validator found `slot` inside the module, as a slot where a str belongs
            // that names string `number`; the slot takes a reference of its own to the
            // interpreter's string (GIL held).
            unsafe {
                ffi::Py_INCREF(s);
                *(base.add(slot as usize) as *mut *mut ffi::PyObject) = s;
            }
        }
        let mut frozenset_fixups = 0;
        for f in entry.fixups() {
            let f = f.map_err(|e| e.to_string())?;
            // SAFETY: `f.slot` is an aligned slot inside the module (checked by `fixups()`), and
            // after relocation it holds a pointer that we check lies inside this module before
            // reading the object's type. The types were patched by `relocate` above.
            unsafe {
                let slot = base.add(f.slot as usize) as *mut *mut ffi::PyObject;
                let obj = *slot;
                if !inside(obj as u64) {
                    return Err(format!("fix-up of {} points outside the module", entry.name));
                }
                let tp = ffi::Py_TYPE(obj);
                match f.kind {
                    FixupKind::FrozenSet => {
                        frozenset_fixups += 1;
                        let class = validated.classes.get(f.slot as u64);
                        if tp != externals::type_object(Kind::Tuple) || class != SlotClass::Const {
                            return Err(format!("frozenset fix-up of {} is not a tuple", entry.name));
                        }
                        let fs = ffi::PyFrozenSet_New(obj);
                        if fs.is_null() {
                            ffi::PyErr_Clear();
                            return Err(format!("cannot build a frozenset constant of {}", entry.name));
                        }
                        // The archived tuple keeps its (archived) reference count; the slot now
                        // owns the new frozenset's reference.
                        *slot = fs;
                    }
                }
            }
        }
        // The validator checked that the root is an archived code object.
        let root = actual + entry.root;
        let run_once = (entry.objects_file_off + entry.run_once, entry.objects_file_off + entry.objects_len);
        let (first, last) = whole_pages(run_once.0, run_once.1);
        let run_once = (CAN_RELEASE_RUN_ONCE && first < last).then_some(run_once);
        let t4 = std::time::Instant::now();
        let ns = |a: std::time::Instant, b: std::time::Instant| (b - a).as_nanos() as u64;
        Ok((
            root as *mut ffi::PyObject,
            run_once,
            FixStats {
                relocs: st.relocs,
                written: st.written,
                intern_fixups: validated.interned.len(),
                frozenset_fixups,
                phase_ns: [ns(t0, t1), ns(t1, t2), ns(t2, t3), ns(t3, t4)],
            },
        ))
    }
}

/// The whole pages inside the file range `[start, end)`, as `[first, last)`.
fn whole_pages(start: u64, end: u64) -> (u64, u64) {
    let page = cds_archive::PAGE_SIZE;
    (start.next_multiple_of(page), end / page * page)
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
/// than this user (or root) could have written.
fn trusted(path: &str, st: &std::fs::Metadata) -> Result<(), String> {
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

/// Why the archived module no longer matches its source, if it does not.
pub fn staleness(meta: &ModuleMeta) -> Option<String> {
    match source_stat(&meta.origin) {
        None => Some(format!("source {} is missing", meta.origin)),
        Some((mtime, size)) if mtime != meta.source_mtime_ns || size != meta.source_size => {
            Some(format!("source {} changed since the dump", meta.origin))
        }
        Some(_) => None,
    }
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

//! The dump side: copies a module's code object and everything it reaches into archive bytes laid
//! out as the interpreter's own structs. Each object is copied byte for byte from the live object,
//! then its header, pointers and lazily filled caches are rewritten using the layout facts from
//! the headers; pointers become relocations, type and singleton pointers become externals.
//!
//! Interned strings are not copied: they go to the archive's interned-strings table (once per
//! archive), and each slot that holds one gets a reference to its number (`layout::intern_ref`),
//! which the loader replaces with the interpreter's interned string.
//!
//! A module's objects are laid out in two regions: first the objects whose slots the loader may
//! rewrite (code objects and tuples, whose interned-string slots it fills), then the leaf objects
//! it never writes (strings, bytes, numbers). Pages of the second region stay clean, and so
//! shared between processes, on interpreters with immortal objects.
//!
//! Within the first region an object is placed after everything it points at (children first),
//! so every pointer between objects of that region points backwards and leaves hold no pointers:
//! the loader validates a module in one linear pass, and the order itself rules out cycles.
//!
//! A third region comes last: the module's *run-once* objects, which only its own execution
//! uses: the module's code object, the bodies of its classes and the comprehensions those run,
//! with their bytecode tables and name and constant tuples (when nothing else shares them).
//! Once the module has run, a normal import frees these; the loader can release their pages
//! when it can prove them unreferenced (see `loader.rs`). Nothing outside the region points
//! into it.

use std::collections::{HashMap, HashSet};

use cds_archive::{read_slot, write_slot, ArchiveBuilder, Fixup, FixupKind, ModuleInput, Reloc, RelocTarget};
use pyo3::ffi;

use crate::code_versions;
use crate::externals::{self, Kind};
use crate::layout;

/// What a slot ends up pointing at.
#[derive(Clone, Copy)]
enum Target {
    External {
        index: u32,
        addr: u64,
    },
    /// An archived object, with the fix-up that turns it into the constant at load, if any.
    Internal {
        off: usize,
        fixup: Option<FixupKind>,
    },
    /// An interned string: its number in the archive's interned-strings table.
    Interned(u32),
}

/// A copied module: its object bytes, the root's offset, where its cold objects start, where
/// its run-once objects start, its relocations and its fix-ups.
pub type ModuleParts = (Vec<u8>, u64, u64, u64, Vec<Reloc>, Vec<Fixup>);

/// Marks an offset into the leaf region while copying (resolved by `Copier::finish`).
const LEAF: usize = 1 << 62;
/// Marks an offset into the run-once region while copying.
const RUN_ONCE: usize = 1 << 61;
/// Marks an offset into the cold region while copying.
const COLD: usize = 1 << 60;

/// The four regions of a module, in layout order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Linked,
    Leaf,
    Cold,
    RunOnce,
}

pub struct Copier<'b> {
    builder: &'b mut ArchiveBuilder,
    /// Code objects numbered so far in this archive (see `code_versions`).
    code_count: &'b mut u32,
    /// Objects whose slots the loader may write (offsets as is).
    linked: Vec<u8>,
    /// Leaf objects (offsets tagged with `LEAF`).
    leaves: Vec<u8>,
    /// Cold objects (offsets tagged with `COLD`).
    cold: Vec<u8>,
    /// Run-once objects (offsets tagged with `RUN_ONCE`).
    run_once: Vec<u8>,
    /// The live objects that go to the run-once region (by address).
    run_once_set: HashSet<usize>,
    /// The live objects that go to the cold region (by address): the tables of code objects
    /// that are not run-once (see `layout::code_field_is_cold`).
    cold_set: HashSet<usize>,
    /// Slot offsets (tagged) and what they point at.
    relocs: Vec<(usize, RelocTarget)>,
    fixups: Vec<(usize, FixupKind)>,
    memo: HashMap<usize, Target>,
}

/// Copies `code` (a live code object the caller holds) into an archive module. The caller holds
/// the GIL and keeps `code` alive for the duration of the call.
/// `code_count` counts the archive's code objects across modules.
pub fn copy_module(
    builder: &mut ArchiveBuilder,
    code_count: &mut u32,
    code: *mut ffi::PyObject,
) -> Result<ModuleParts, String> {
    let start = *code_count;
    // SAFETY: the caller contract above.
    let run_once_set = unsafe { run_once_objects(code)? };
    let mut c = Copier {
        builder,
        code_count,
        linked: Vec::new(),
        leaves: Vec::new(),
        cold: Vec::new(),
        run_once: Vec::new(),
        run_once_set,
        cold_set: HashSet::new(),
        relocs: Vec::new(),
        fixups: Vec::new(),
        memo: HashMap::new(),
    };
    // SAFETY: the caller contract above; every object reached is owned (transitively) by `code`.
    let root = unsafe { c.target(code) };
    let root = match root {
        Ok(r) => r,
        Err(e) => {
            // The module is skipped: its versions are not used.
            *c.code_count = start;
            return Err(e);
        }
    };
    match root {
        Target::Internal { off, .. } => {
            // SAFETY: `code` is a live object.
            if unsafe { ffi::Py_TYPE(code) } != externals::type_object(Kind::Code) {
                return Err("root object is not a code object".into());
            }
            c.finish(off)
        }
        Target::External { .. } | Target::Interned(_) => Err("root object is not a code object".into()),
    }
}

pub fn into_input(name: &str, meta: cds_archive::ModuleMeta, parts: ModuleParts) -> ModuleInput {
    let (objects, root, cold, run_once, relocs, fixups) = parts;
    ModuleInput { name: name.to_owned(), meta, objects, root, cold, run_once, relocs, fixups }
}

impl Copier<'_> {
    /// Reserves `size` zeroed bytes for an object in its region (16-byte aligned, after a zeroed,
    /// i.e. untracked, GC header when the type has one) and returns the object's offset.
    fn alloc(&mut self, size: usize, gc: bool, region: Region) -> usize {
        let (buf, tag) = match region {
            Region::Linked => (&mut self.linked, 0),
            Region::Leaf => (&mut self.leaves, LEAF),
            Region::Cold => (&mut self.cold, COLD),
            Region::RunOnce => (&mut self.run_once, RUN_ONCE),
        };
        let aligned = buf.len().next_multiple_of(16);
        buf.resize(aligned, 0);
        if gc {
            buf.resize(aligned + layout::GC_HEAD_SIZE, 0);
        }
        let off = buf.len();
        buf.resize(off + size, 0);
        off | tag
    }

    /// The `len` bytes at (tagged) offset `at`.
    fn at(&mut self, at: usize, len: usize) -> &mut [u8] {
        let (buf, at) = if at & LEAF != 0 {
            (&mut self.leaves, at & !LEAF)
        } else if at & RUN_ONCE != 0 {
            (&mut self.run_once, at & !RUN_ONCE)
        } else if at & COLD != 0 {
            (&mut self.cold, at & !COLD)
        } else {
            (&mut self.linked, at)
        };
        &mut buf[at..at + len]
    }

    fn put_u64(&mut self, at: usize, v: u64) {
        self.at(at, 8).copy_from_slice(&v.to_ne_bytes());
    }

    fn put_i64(&mut self, at: usize, v: i64) {
        self.at(at, 8).copy_from_slice(&v.to_ne_bytes());
    }

    fn zero(&mut self, fields: &[(&str, usize, usize)], base: usize) {
        for &(_, off, size) in fields {
            self.at(base + off, size).fill(0);
        }
    }

    /// Joins the four regions (linked objects, leaves, cold objects, run-once objects) and
    /// resolves tagged offsets: in slots, in internal pointers and in the root.
    fn finish(mut self, root: usize) -> Result<ModuleParts, String> {
        let base = self.linked.len().next_multiple_of(16);
        let cold = (base + self.leaves.len()).next_multiple_of(16);
        let run_once = (cold + self.cold.len()).next_multiple_of(16);
        let place = |off: usize| {
            if off & LEAF != 0 {
                base + (off & !LEAF)
            } else if off & RUN_ONCE != 0 {
                run_once + (off & !RUN_ONCE)
            } else if off & COLD != 0 {
                cold + (off & !COLD)
            } else {
                off
            }
        };
        let slot32 = |off: usize| u32::try_from(place(off)).map_err(|_| "module larger than 4 GiB".to_string());
        let mut buf = std::mem::take(&mut self.linked);
        buf.resize(base, 0);
        buf.extend_from_slice(&self.leaves);
        buf.resize(cold, 0);
        buf.extend_from_slice(&self.cold);
        buf.resize(run_once, 0);
        buf.extend_from_slice(&self.run_once);
        let mut relocs = Vec::with_capacity(self.relocs.len());
        for &(slot, target) in &self.relocs {
            let at = place(slot);
            if let RelocTarget::Internal = target {
                let v = read_slot(&buf, at as u64) as usize;
                write_slot(&mut buf, at as u64, place(v) as u64);
            }
            relocs.push(Reloc { slot: slot32(slot)?, target });
        }
        let fixups = self
            .fixups
            .iter()
            .map(|&(slot, kind)| Ok(Fixup { slot: slot32(slot)?, kind }))
            .collect::<Result<Vec<_>, String>>()?;
        Ok((buf, place(root) as u64, cold as u64, run_once as u64, relocs, fixups))
    }

    /// Points the slot at offset `slot` at `t` (an object already placed, or an external or
    /// interned string), recording the relocation and any fix-up.
    fn place(&mut self, slot: usize, t: Target) {
        match t {
            Target::External { index, addr } => {
                self.put_u64(slot, addr);
                self.relocs.push((slot, RelocTarget::External(index)));
            }
            Target::Interned(number) => self.put_u64(slot, layout::intern_ref(number)),
            Target::Internal { off, fixup } => {
                self.put_u64(slot, off as u64);
                self.relocs.push((slot, RelocTarget::Internal));
                if let Some(kind) = fixup {
                    self.fixups.push((slot, kind));
                }
            }
        }
    }

    /// Writes an archived object header: the archived reference count and the type pointer.
    fn header(&mut self, off: usize, kind: Kind) -> Result<(), String> {
        self.put_i64(off + layout::OB_REFCNT, layout::ARCHIVED_REFCNT as i64);
        let tp = externals::type_object(kind) as u64;
        let index = self.builder.external(externals::type_external(kind), tp);
        let slot = off + layout::OB_TYPE;
        self.put_u64(slot, tp);
        self.relocs.push((slot, RelocTarget::External(index)));
        Ok(())
    }

    /// Copies `size` bytes of the live object `obj` to a new archive object and writes its header.
    ///
    /// SAFETY (caller): `obj` is a live object at least `size` bytes long.
    unsafe fn copy_raw(&mut self, obj: *mut ffi::PyObject, size: usize, kind: Kind) -> Result<usize, String> {
        // SAFETY: caller contract; `tp` is the object's own (static, built-in) type.
        let gc = unsafe { ffi::PyType_HasFeature(ffi::Py_TYPE(obj), ffi::Py_TPFLAGS_HAVE_GC) != 0 };
        // Objects without pointer slots that the loader writes go to the leaf region.
        let leaf = matches!(kind, Kind::Str | Kind::Bytes | Kind::Int | Kind::Float | Kind::Complex);
        let region = if self.run_once_set.contains(&(obj as usize)) {
            Region::RunOnce
        } else if self.cold_set.contains(&(obj as usize)) && kind == Kind::Bytes {
            Region::Cold
        } else if leaf {
            Region::Leaf
        } else {
            Region::Linked
        };
        let off = self.alloc(size, gc, region);
        // SAFETY: caller contract: `size` bytes are readable at `obj`.
        let src = unsafe { std::slice::from_raw_parts(obj as *const u8, size) };
        self.at(off, size).copy_from_slice(src);
        self.header(off, kind)?;
        Ok(off)
    }

    /// SAFETY (caller): GIL held, `obj` alive until the copy is finished.
    unsafe fn target(&mut self, obj: *mut ffi::PyObject) -> Result<Target, String> {
        if let Some(ext) = externals::classify(obj) {
            let index = self.builder.external(ext, obj as u64);
            return Ok(Target::External { index, addr: obj as u64 });
        }
        if let Some(&t) = self.memo.get(&(obj as usize)) {
            return Ok(t);
        }
        // SAFETY: caller contract; `obj` is alive, so its type is readable.
        let tp = unsafe { ffi::Py_TYPE(obj) };
        let kind = match externals::kind_of(tp) {
            Some(k) => k,
            None if tp == &raw mut ffi::PyFrozenSet_Type => {
                // SAFETY: caller contract.
                let t = unsafe { self.copy_frozenset(obj)? };
                self.memo.insert(obj as usize, t);
                return Ok(t);
            }
            None if Some(tp) == externals::frozendict_type() => {
                // SAFETY: caller contract.
                let t = unsafe { self.copy_frozendict(obj)? };
                self.memo.insert(obj as usize, t);
                return Ok(t);
            }
            // SAFETY: `tp` is a live type object; tp_name is a NUL-terminated C string.
            None => {
                let name = unsafe { std::ffi::CStr::from_ptr((*tp).tp_name) };
                return Err(format!("unsupported constant of type {}", name.to_string_lossy()));
            }
        };
        // SAFETY (all arms): caller contract; each arm reads only within the object's size as
        // computed from its own header and the layout facts.
        let t = unsafe {
            match kind {
                Kind::Str => self.copy_str(obj)?,
                Kind::Bytes => {
                    let n = ffi::PyBytes_Size(obj) as usize;
                    let off = self.copy_raw(obj, layout::BYTES_DATA + n + 1, kind)?;
                    self.put_i64(off + layout::BYTES_HASH, -1);
                    Target::Internal { off, fixup: None }
                }
                Kind::Int => {
                    let word = std::ptr::read_unaligned((obj as *const u8).add(layout::LONG_SIZE_WORD) as *const u64);
                    let digits = layout::long_digits(word).ok_or("int constant with an unknown size word")?;
                    let size = layout::long_size(digits);
                    let off = self.copy_raw(obj, size, kind)?;
                    Target::Internal { off, fixup: None }
                }
                Kind::Float => {
                    let off = self.copy_raw(obj, layout::FLOAT_SIZE, kind)?;
                    Target::Internal { off, fixup: None }
                }
                Kind::Complex => {
                    let off = self.copy_raw(obj, layout::COMPLEX_SIZE, kind)?;
                    Target::Internal { off, fixup: None }
                }
                Kind::Slice => {
                    let fields = self.field_targets(obj, layout::SLICE_ITEMS, "slice constant")?;
                    let off = self.copy_raw(obj, layout::SLICE_SIZE, kind)?;
                    self.place_fields(off, layout::SLICE_ITEMS, fields);
                    Target::Internal { off, fixup: None }
                }
                Kind::Tuple => {
                    let off = self.copy_tuple(obj, &tuple_items(obj))?;
                    Target::Internal { off, fixup: None }
                }
                Kind::Code => self.copy_code(obj)?,
            }
        };
        self.memo.insert(obj as usize, t);
        Ok(t)
    }

    /// A tuple whose header is copied from `proto` (a live tuple) and whose items are `items`.
    ///
    /// SAFETY (caller): GIL held; `proto` and every item alive; `proto` has `items.len()` items.
    unsafe fn copy_tuple(&mut self, proto: *mut ffi::PyObject, items: &[*mut ffi::PyObject]) -> Result<usize, String> {
        // The items first: the tuple is placed after them.
        // SAFETY: caller contract (every item alive).
        let targets = items.iter().map(|&item| unsafe { self.target(item) }).collect::<Result<Vec<_>, _>>()?;
        // SAFETY: caller contract.
        unsafe { self.copy_tuple_of(proto, targets) }
    }

    /// A tuple whose header is copied from `proto` (a live tuple) and whose items are the
    /// objects already placed at `targets`.
    ///
    /// SAFETY (caller): GIL held; `proto` alive, with `targets.len()` items.
    unsafe fn copy_tuple_of(&mut self, proto: *mut ffi::PyObject, targets: Vec<Target>) -> Result<usize, String> {
        let size = layout::TUPLE_ITEMS + targets.len() * 8;
        // SAFETY: caller contract; a tuple of n items has TUPLE_ITEMS + 8n bytes.
        let off = unsafe { self.copy_raw(proto, size, Kind::Tuple)? };
        if let Some(hash) = layout::TUPLE_HASH {
            self.put_i64(off + hash, -1);
        }
        for (i, t) in targets.into_iter().enumerate() {
            self.place(off + layout::TUPLE_ITEMS + 8 * i, t);
        }
        Ok(off)
    }

    /// A frozenset is archived as a tuple of its items plus a fix-up that builds the frozenset
    /// at load time (its hash-table layout depends on the process's hash seed).
    ///
    /// SAFETY (caller): GIL held, `obj` a live frozenset.
    unsafe fn copy_frozenset(&mut self, obj: *mut ffi::PyObject) -> Result<Target, String> {
        // SAFETY: caller contract; a new tuple of the frozenset's (alive) items.
        unsafe {
            let tuple = frozenset_as_tuple(obj)?;
            // The items stay alive through the frozenset after the temporary tuple is gone.
            let r = self.copy_tuple(tuple, &tuple_items(tuple));
            ffi::Py_DECREF(tuple);
            Ok(Target::Internal { off: r?, fixup: Some(FixupKind::FrozenSet) })
        }
    }

    /// A frozendict is archived as a tuple of its `(key, value)` pairs, in order, plus a fix-up
    /// that builds the frozendict at load time (a hash table, like a frozenset). The pairs are
    /// made for the copy and die with it, so they are copied here and never memoized (another
    /// object could later be made at a freed pair's address).
    ///
    /// SAFETY (caller): GIL held, `obj` a live frozendict.
    unsafe fn copy_frozendict(&mut self, obj: *mut ffi::PyObject) -> Result<Target, String> {
        // SAFETY: caller contract; a new tuple of new pairs of the frozendict's (alive) items.
        unsafe {
            let pairs = frozendict_pairs(obj)?;
            let copied = (|| {
                let mut targets = Vec::new();
                for pair in tuple_items(pairs) {
                    let off = self.copy_tuple(pair, &tuple_items(pair))?;
                    targets.push(Target::Internal { off, fixup: None });
                }
                self.copy_tuple_of(pairs, targets)
            })();
            ffi::Py_DECREF(pairs);
            Ok(Target::Internal { off: copied?, fixup: Some(FixupKind::FrozenDict) })
        }
    }

    /// SAFETY (caller): GIL held, `obj` a live exact str.
    unsafe fn copy_str(&mut self, obj: *mut ffi::PyObject) -> Result<Target, String> {
        // SAFETY: caller contract; the header fields read are inside PyASCIIObject.
        let (state, length) = unsafe {
            let p = obj as *const u8;
            (
                std::ptr::read_unaligned(p.add(layout::STR_STATE) as *const u32),
                std::ptr::read_unaligned(p.add(layout::STR_LENGTH) as *const isize),
            )
        };
        let compact = state & layout::STR_STATE_COMPACT != 0;
        let ready = layout::has_bits(state, layout::STR_STATE_READY);
        if !compact || !ready || length < 0 {
            return Err("non-compact string constant".into());
        }
        let ascii = state & layout::STR_STATE_ASCII != 0;
        let kind = layout::state_field(state, layout::STR_STATE_KIND) as usize;
        if !matches!(kind, 1 | 2 | 4) {
            return Err("string constant of unknown kind".into());
        }
        if state & layout::STR_STATE_INTERNED != 0 {
            // Equal strings of every module share one entry of the interned-strings table.
            // SAFETY: a compact string's `length * kind` bytes of data follow its header.
            let units = unsafe {
                std::slice::from_raw_parts(
                    (obj as *const u8).add(layout::str_data_offset(ascii)),
                    kind * length as usize,
                )
            };
            let number =
                self.builder.intern_number(&layout::encode_interned(kind, units)).map_err(|e| e.to_string())?;
            return Ok(Target::Interned(number));
        }
        let size = layout::str_size(ascii, kind, length as usize);
        // SAFETY: a compact string occupies exactly `size` bytes (layout::str_size).
        let off = unsafe { self.copy_raw(obj, size, Kind::Str)? };
        self.put_i64(off + layout::STR_HASH, -1);
        // Marked as living outside the allocator (interned strings never get here).
        let new_state = state | layout::STR_STATE_STATIC;
        self.at(off + layout::STR_STATE, 4).copy_from_slice(&new_state.to_ne_bytes());
        self.zero(if ascii { layout::STR_ASCII_CACHES } else { layout::STR_COMPACT_CACHES }, off);
        if let (Some((wstr, wstr_length)), 4) = (layout::STR_WSTR_SHARED, kind) {
            // SAFETY: caller contract; `wstr` is a pointer field inside the string's header.
            let live = unsafe { std::ptr::read_unaligned((obj as *const u8).add(wstr) as *const usize) };
            if live == obj as usize + layout::STR_COMPACT_SIZE {
                // The data doubles as the wchar_t string: point the copy at its own data.
                let data = off + layout::STR_COMPACT_SIZE;
                self.put_u64(off + wstr, data as u64);
                self.relocs.push((off + wstr, RelocTarget::Internal));
                self.put_i64(off + wstr_length, length as i64);
            }
        }
        Ok(Target::Internal { off, fixup: None })
    }

    /// SAFETY (caller): GIL held, `obj` a live code object.
    unsafe fn copy_code(&mut self, obj: *mut ffi::PyObject) -> Result<Target, String> {
        for &(name, field, _) in layout::CODE_OBJECTS {
            if layout::code_field_is_cold(name) {
                // SAFETY: caller contract; `field` is a pointer field inside the live code object.
                let table = unsafe { std::ptr::read_unaligned((obj as *const u8).add(field) as *const usize) };
                self.cold_set.insert(table);
            }
        }
        // SAFETY: caller contract; CODE_OBJECTS lists the code object's pointer fields.
        let fields = unsafe { self.field_targets(obj, layout::CODE_OBJECTS, "code object")? };
        // SAFETY: caller contract. The size is the type's own var-size formula.
        let off = unsafe {
            let tp = ffi::Py_TYPE(obj);
            let units = ffi::Py_SIZE(obj) as usize;
            let size = (*tp).tp_basicsize as usize + units * (*tp).tp_itemsize as usize;
            check_fresh(obj, units)?;
            self.copy_raw(obj, size, Kind::Code)?
        };
        self.zero(layout::CODE_CACHES, off);
        if let Some(field) = layout::CODE_VERSION {
            let v = code_versions::archived(*self.code_count).ok_or("more code objects than one archive may hold")?;
            *self.code_count += 1;
            self.at(off + field, 4).copy_from_slice(&v.to_ne_bytes());
        }
        self.place_fields(off, layout::CODE_OBJECTS, fields);
        Ok(Target::Internal { off, fixup: None })
    }

    /// The targets of each pointer field of `fields` (offsets from the probe) of the live `obj`,
    /// copying what they point at; `what` names the object in errors.
    ///
    /// SAFETY (caller): GIL held, `obj` alive until the copy is finished, and every field in
    /// `fields` an object pointer of `obj`'s type, owned by `obj`.
    unsafe fn field_targets(
        &mut self,
        obj: *mut ffi::PyObject,
        fields: &[(&str, usize, usize)],
        what: &str,
    ) -> Result<Vec<Target>, String> {
        let mut targets = Vec::with_capacity(fields.len());
        for &(_, field, _) in fields {
            // SAFETY: caller contract; `field` is a pointer field inside the live object.
            let child = unsafe { std::ptr::read_unaligned((obj as *const u8).add(field) as *const *mut ffi::PyObject) };
            if child.is_null() {
                return Err(format!("{what} with a NULL field"));
            }
            // SAFETY: caller contract; the child is owned by the live object.
            targets.push(unsafe { self.target(child)? });
        }
        Ok(targets)
    }

    /// Points the fields of the copy at `off` at their targets (from `field_targets`).
    fn place_fields(&mut self, off: usize, fields: &[(&str, usize, usize)], targets: Vec<Target>) {
        for (&(_, field, _), t) in fields.iter().zip(targets) {
            self.place(off + field, t);
        }
    }
}

/// The inline bytecode is archived as the interpreter left it when it made the code object (on
/// 3.12+ that includes the warm-up counters it writes into cache entries); it must not have run.
/// `co_code` is the un-specialized view, with cache entries zeroed: every unit of the inline
/// bytecode must equal it, or be a cache entry (zero in `co_code`).
///
/// SAFETY (caller): GIL held, `obj` a live code object with `units` code units.
unsafe fn check_fresh(obj: *mut ffi::PyObject, units: usize) -> Result<(), String> {
    // SAFETY: caller contract; `co_code` is a new bytes object, released below.
    unsafe {
        let code_bytes = ffi::PyObject_GetAttrString(obj, c"co_code".as_ptr());
        if code_bytes.is_null() {
            ffi::PyErr_Clear();
            return Err("code object without co_code".into());
        }
        let n = ffi::PyBytes_Size(code_bytes) as usize;
        let result = if n != units * layout::CODE_UNIT_SIZE {
            Err("co_code length does not match the code object".to_string())
        } else {
            let plain = std::slice::from_raw_parts(ffi::PyBytes_AsString(code_bytes) as *const u8, n);
            let live = inline_bytecode(obj);
            let unit = layout::CODE_UNIT_SIZE;
            let ran =
                plain.chunks_exact(unit).zip(live.chunks_exact(unit)).any(|(p, l)| p != l && p.iter().any(|&b| b != 0));
            if ran {
                Err("code object has run (its bytecode is specialized)".to_string())
            } else {
                Ok(())
            }
        };
        ffi::Py_DECREF(code_bytes);
        result
    }
}

/// The inline bytecode of the live code object `code` (`ob_size` code units).
///
/// SAFETY (caller): GIL held, `code` a live code object, which the slice must not outlive.
unsafe fn inline_bytecode<'a>(code: *mut ffi::PyObject) -> &'a [u8] {
    // SAFETY: caller contract; the code units are stored inline from `CODE_BYTECODE` (probe).
    unsafe {
        let units = ffi::Py_SIZE(code) as usize;
        std::slice::from_raw_parts((code as *const u8).add(layout::CODE_BYTECODE), units * layout::CODE_UNIT_SIZE)
    }
}

/// The items of the live tuple `t` (borrowed).
///
/// SAFETY (caller): GIL held, `t` a live tuple.
unsafe fn tuple_items(t: *mut ffi::PyObject) -> Vec<*mut ffi::PyObject> {
    // SAFETY: caller contract; every index is below the tuple's size.
    unsafe { (0..ffi::PyTuple_Size(t)).map(|i| ffi::PyTuple_GetItem(t, i)).collect() }
}

/// A new tuple of the items of the live frozenset `obj` (the caller releases it).
///
/// SAFETY (caller): GIL held, `obj` a live frozenset.
unsafe fn frozenset_as_tuple(obj: *mut ffi::PyObject) -> Result<*mut ffi::PyObject, String> {
    // SAFETY: caller contract; the result is checked.
    unsafe {
        let tuple = ffi::PySequence_Tuple(obj);
        if tuple.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot iterate a frozenset constant".into());
        }
        Ok(tuple)
    }
}

/// A new tuple of new `(key, value)` tuples of the live frozendict `obj`, in its order (the
/// caller releases it).
///
/// SAFETY (caller): GIL held, `obj` a live frozendict.
unsafe fn frozendict_pairs(obj: *mut ffi::PyObject) -> Result<*mut ffi::PyObject, String> {
    // SAFETY: caller contract; each result is checked.
    unsafe {
        let list = ffi::PyMapping_Items(obj);
        if list.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot read the items of a frozendict constant".into());
        }
        let tuple = ffi::PySequence_Tuple(list);
        ffi::Py_DECREF(list);
        if tuple.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot read the items of a frozendict constant".into());
        }
        Ok(tuple)
    }
}

/// Which constants of a code object its (never run) `bytecode` uses up: each use of the constant
/// is a load just before an opcode that only reads it (an import's fromlist, a list or set
/// literal's items, a dict literal's keys, the right side of `in`), or a `KW_NAMES`. Run once,
/// such a constant is dead. Indices out of range, and every constant when the interpreter has no
/// `layout::BYTECODE_SCAN`, count as not used up.
fn consumed_consts(bytecode: &[u8], nconsts: usize) -> Vec<bool> {
    let Some(scan) = &layout::BYTECODE_SCAN else { return vec![false; nconsts] };
    // Per constant: (uses, uses that use it up).
    let mut uses = vec![(0u32, 0u32); nconsts];
    let units: Vec<(u8, u8)> = bytecode.chunks_exact(2).map(|u| (u[0], u[1])).collect();
    let mut i = 0;
    let mut ext = 0usize;
    while i < units.len() {
        let (op, arg) = units[i];
        let oparg = ext << 8 | arg as usize;
        ext = if op == scan.extended_arg { oparg } else { 0 };
        let next = i + 1 + scan.caches[op as usize] as usize;
        if op == scan.load_const || op == scan.kw_names {
            if let Some(u) = uses.get_mut(oparg) {
                u.0 += 1;
                let consumer = units.get(next).is_some_and(|&(n, _)| scan.consumers.contains(&n));
                if op == scan.kw_names || consumer {
                    u.1 += 1;
                }
            }
        }
        i = next;
    }
    uses.into_iter().map(|(all, used_up)| all > 0 && all == used_up).collect()
}

/// Whether a code constant of run-once code runs only while its module executes: a class body
/// (not an optimized function) or a list, dict or set comprehension (which runs to completion
/// where it is used). Functions, lambdas and generator expressions may outlive the module's
/// execution.
///
/// SAFETY (caller): GIL held, `code` a live code object.
unsafe fn runs_once(code: *mut ffi::PyObject) -> Result<bool, String> {
    // SAFETY: caller contract; attribute reads of a live code object.
    unsafe {
        let attr = |name: &std::ffi::CStr| {
            let v = ffi::PyObject_GetAttrString(code, name.as_ptr());
            if v.is_null() {
                ffi::PyErr_Clear();
                Err(format!("code object without {}", name.to_string_lossy()))
            } else {
                Ok(v)
            }
        };
        let flags = attr(c"co_flags")?;
        let f = ffi::PyLong_AsLong(flags);
        ffi::Py_DECREF(flags);
        if f & ffi::CO_OPTIMIZED as std::os::raw::c_long == 0 {
            return Ok(true);
        }
        let name = attr(c"co_name")?;
        let mut comprehension = false;
        for c in [c"<listcomp>", c"<dictcomp>", c"<setcomp>"] {
            comprehension |= ffi::PyUnicode_CompareWithASCIIString(name, c.as_ptr()) == 0;
        }
        ffi::Py_DECREF(name);
        Ok(comprehension)
    }
}

/// The objects of the module rooted at `root` that go to its run-once region: the run-once
/// code objects (the root; the class bodies and comprehensions their constants hold) and their
/// structural fields (constants, names, locals, tables), except any object that something
/// outside that set also reaches.
///
/// SAFETY (caller): GIL held, `root` a live code object kept alive for the call.
unsafe fn run_once_objects(root: *mut ffi::PyObject) -> Result<HashSet<usize>, String> {
    let code_type = externals::type_object(Kind::Code);
    let field = |obj: *mut ffi::PyObject, off: usize| {
        // SAFETY: caller contract; `off` is a pointer field of a live code object (probe).
        unsafe { std::ptr::read_unaligned((obj as *const u8).add(off) as *const *mut ffi::PyObject) }
    };
    // SAFETY (closure): GIL held; `t` a live tuple.
    let items = |t: *mut ffi::PyObject| unsafe { tuple_items(t) };
    // SAFETY: caller contract.
    if unsafe { ffi::Py_TYPE(root) } != code_type {
        return Err("root object is not a code object".into());
    }
    // The run-once code objects, and what they hold that stays outside the region.
    let mut codes = vec![root];
    let mut outside = Vec::new();
    let mut used_up_consts = Vec::new();
    let mut i = 0;
    while i < codes.len() {
        let c = codes[i];
        i += 1;
        for &(name, off, _) in layout::CODE_OBJECTS {
            let v = field(c, off);
            if v.is_null() {
                return Err("code object with a NULL field".into());
            }
            if layout::code_field_is_str(name) {
                outside.push(v);
                continue;
            }
            // SAFETY: GIL held; `v` is owned by the live code object.
            if unsafe { ffi::PyTuple_Check(v) } == 0 {
                continue;
            }
            let held = items(v);
            let used_up = if name == "co_consts" {
                // SAFETY: GIL held; `c` is a live code object.
                consumed_consts(unsafe { inline_bytecode(c) }, held.len())
            } else {
                Vec::new()
            };
            for (k, item) in held.into_iter().enumerate() {
                // SAFETY: as above; `item` is owned by the tuple.
                let tp = unsafe { ffi::Py_TYPE(item) };
                // SAFETY: `item` is a live code object.
                if name == "co_consts" && tp == code_type && unsafe { runs_once(item)? } {
                    codes.push(item);
                } else if used_up.get(k) == Some(&true) && tp == &raw mut ffi::PyTuple_Type {
                    // Dead once the code ran, unless something else reaches it; what it holds
                    // may live on (a list literal's items, a dict's keys). (A frozenset is
                    // archived as a tuple that the loader turns into a new set: not this.)
                    used_up_consts.push((item, v));
                    outside.extend(items(item));
                } else {
                    outside.push(item);
                }
            }
        }
    }
    // Everything reachable from outside the run-once code objects.
    let mut reached: HashSet<usize> = HashSet::new();
    while let Some(o) = outside.pop() {
        if o.is_null() || !reached.insert(o as usize) {
            continue;
        }
        // SAFETY: GIL held; `o` is alive (owned, transitively, by `root`).
        let tp = unsafe { ffi::Py_TYPE(o) };
        if tp == code_type {
            outside.extend(layout::CODE_OBJECTS.iter().map(|&(_, off, _)| field(o, off)));
        } else if tp == &raw mut ffi::PyTuple_Type {
            outside.extend(items(o));
        } else if tp == &raw mut ffi::PyFrozenSet_Type {
            // SAFETY: GIL held; a new tuple of the frozenset's items, which it keeps alive.
            unsafe {
                let t = frozenset_as_tuple(o)?;
                outside.extend(items(t));
                ffi::Py_DECREF(t);
            }
        } else if Some(tp) == externals::frozendict_type() {
            // SAFETY: GIL held; new pairs of the frozendict's keys and values, which it keeps
            // alive (the pairs themselves are made for the copy and never run-once objects).
            unsafe {
                let pairs = frozendict_pairs(o)?;
                outside.extend(items(pairs).into_iter().flat_map(items));
                ffi::Py_DECREF(pairs);
            }
        } else if tp == &raw mut ffi::PySlice_Type {
            outside.extend(layout::SLICE_ITEMS.iter().map(|&(_, off, _)| field(o, off)));
        }
    }
    let mut set = HashSet::new();
    for &c in &codes {
        if reached.contains(&(c as usize)) {
            continue;
        }
        set.insert(c as usize);
        for &(name, off, _) in layout::CODE_OBJECTS {
            let v = field(c, off) as usize;
            if !layout::code_field_is_str(name) && !reached.contains(&v) {
                set.insert(v);
            }
        }
    }
    // A used-up constant joins them if nothing outside reaches it and every constants tuple that
    // holds it is run-once too (nothing before the run-once objects may point at them).
    let mut kept_out: HashSet<usize> = HashSet::new();
    for &(item, holder) in &used_up_consts {
        if reached.contains(&(item as usize)) || !set.contains(&(holder as usize)) {
            kept_out.insert(item as usize);
        }
    }
    set.extend(used_up_consts.iter().map(|&(item, _)| item as usize).filter(|i| !kept_out.contains(i)));
    Ok(set)
}

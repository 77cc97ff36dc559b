//! Structural validation of one module's objects, after relocation and before any of them reaches
//! the interpreter. Checksums catch accidental damage; this catches an archive whose checksums
//! were recomputed over lies: every object of the module must carry the archived reference count
//! and one of the archived types, have a size that fits, and be of the type its holder requires
//! (a code object's `co_names` is a tuple of str, ...), every pointer must land on the start of
//! an object of the module or on a fitting external, and the graph must have no cycles and no
//! deeper nesting than [`MAX_DEPTH`]. A slot that names an interned string (`layout::intern_ref`)
//! must be one where a str belongs and name an entry of the archive's table; the validator lists
//! those slots for the loader to fill. It reads the module's bytes through a bounds-checked slice:
//! no unsafe code. What it does not check is the bytecode itself (see the README's trust model).
//!
//! It is linear, in two passes over the module. The dumper lays objects out back to back, each at
//! the next 16-byte boundary, after a zeroed (untracked) GC header when its type has one; an
//! object header's first word, the archived reference count, is never zero, so a zero word where
//! an object may start can only open a GC header. The first pass walks that sequence and checks
//! each object on its own (header, size, strings, caches). The second checks every pointer slot
//! against what the first found. Objects that hold pointers (code objects, tuples, slices) come
//! after everything they point at, and the others hold none, so a pointer to an object that holds
//! pointers must point backwards: that is what rules out cycles, with no search.
//!
//! A module's objects come in three parts (see `cds_archive::Parts`; offsets here run through
//! all three, and addresses map to them), which the file keeps apart: each part must begin where
//! an object begins, and no object may run from one part into the next, since in memory the next
//! part lies elsewhere. The run-once objects come last (from offset `run_once`, where the third
//! part begins): no object before them may point at one of them, so that the loader
//! may release their pages once they are dead. The first pass, on the run-once part alone, is
//! also how the loader proves them dead after the module ran: every object still carries the
//! archived reference count (no reference from outside), an untracked GC header and empty caches.

use cds_archive::{AddrMap, Parts};

use crate::code_versions;
use crate::externals::{Kind, KINDS};
use crate::layout;

/// What an external address is, for the purpose of checking the slots that point at it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ExtClass {
    Type(Kind),
    /// A value of this type, and its length for the sized ones (-1 otherwise).
    Value(Kind, i64),
    /// `None`, `True`, `False`, `Ellipsis`.
    #[default]
    Singleton,
}

/// What a slot's holder requires of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Any constant (a tuple item under `co_consts`).
    Any,
    Str,
    Bytes,
    TupleOfAny,
    TupleOfStr,
}

/// The slots that are constants (items of a tuple, or fields of a slice): the only slots a
/// frozenset fix-up may rewrite. One bit per 8-byte word of the module.
pub struct SlotClasses<'s>(&'s [u64]);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SlotClass {
    None,
    /// A constant slot (a tuple item or a slice field): may become a frozenset.
    Const,
}

impl SlotClasses<'_> {
    pub fn get(&self, slot: u64) -> SlotClass {
        let word = slot / 8;
        match self.0.get((word / 64) as usize) {
            Some(bits) if bits >> (word % 64) & 1 == 1 => SlotClass::Const,
            _ => SlotClass::None,
        }
    }
}

/// How deeply objects may nest (tuples in tuples, code in constants): the interpreter recurses
/// over constants (hashing, comparing, printing them) on the C stack.
pub const MAX_DEPTH: u16 = 512;

/// Facts the validator needs from the running interpreter's type objects.
#[derive(Clone, Copy)]
pub struct TypeFacts {
    pub code_basicsize: usize,
    pub code_itemsize: usize,
    /// Bit `kind as u8` is set when that type's objects carry a GC header.
    pub gc: u16,
}

/// What the validator checks against in this process, worked out once per archive.
pub struct Rules {
    externals: AddrMap<ExtClass>,
    facts: TypeFacts,
    /// The archived type objects' addresses, for the check of every object's type.
    types: Vec<(u64, Kind)>,
    /// Expectations of the code object's pointer fields, in `layout::CODE_OBJECTS` order.
    code_fields: Vec<(u64, Expect, bool)>,
}

impl Rules {
    /// `externals`: this process's external addresses with what they are.
    pub fn new(externals: AddrMap<ExtClass>, facts: TypeFacts) -> Rules {
        let types = externals
            .iter()
            .filter_map(|(addr, c)| match c {
                ExtClass::Type(kind) => Some((addr, kind)),
                _ => None,
            })
            .collect();
        let code_fields = layout::CODE_OBJECTS
            .iter()
            .map(|&(name, field, _)| {
                let want = match name {
                    "co_consts" => Expect::TupleOfAny,
                    "co_names" | "co_localsplusnames" => Expect::TupleOfStr,
                    _ if layout::code_field_is_str(name) => Expect::Str,
                    _ => Expect::Bytes,
                };
                // The frame layout trusts co_nlocalsplus: these two must match it.
                let sized = name == "co_localsplusnames" || name == "co_localspluskinds";
                (field as u64, want, sized)
            })
            .collect();
        Rules { externals, facts, types, code_fields }
    }
}

pub struct Validator<'a> {
    /// The module's objects, each part at its address in this process.
    objects: Parts<&'a [u8]>,
    rules: &'a Rules,
    /// Entries of the archive's interned-strings table.
    intern_count: u32,
    /// Where the cold objects start.
    cold: u64,
    /// Where the run-once objects start.
    run_once: u64,
}

/// Why a module is refused: boxed, so that results stay small on the fast path.
type Fail = Box<String>;

/// What validation found: the constant slots and the kind of each object (both kept in the
/// `Scratch` the validator ran with), and the slots to fill with interned strings.
pub struct Validated<'s> {
    pub classes: SlotClasses<'s>,
    kinds: &'s [u8],
    pub interned: &'s [(u32, u32)],
}

impl Validated<'_> {
    /// The kind of the validated object that starts at offset `off` of the module, if one does.
    pub fn kind_at(&self, off: u64) -> Option<Kind> {
        kind_in(self.kinds, off)
    }
}

/// The kind recorded in `kinds` (per 16-byte unit: 0 where no object starts, else 1 + the kind)
/// for the object starting at `off`, if one does.
fn kind_in(kinds: &[u8], off: u64) -> Option<Kind> {
    if !off.is_multiple_of(16) {
        return None;
    }
    match *kinds.get((off / 16) as usize)? {
        0 => None,
        k => Some(KINDS[(k - 1) as usize]),
    }
}

/// The validator's working tables, kept from one module to the next by a thread that validates
/// many, so that it reuses one set of buffers (sized for the largest module so far) instead of
/// allocating and freeing four per module. The tables of objects take about a fifth of the
/// module's size; the interned-string slots are collected here too.
#[derive(Default)]
pub struct Scratch {
    kinds: Vec<u8>,
    depths: Vec<u16>,
    consts: Vec<u64>,
    interned: Vec<(u32, u32)>,
}

impl Scratch {
    /// Tables with room for a module of `len` bytes: a thread given these, made where it is
    /// started, allocates nothing for them while it validates modules up to that size (so
    /// that they come back to the allocator of the thread that made them).
    pub fn for_modules_up_to(len: u64) -> Scratch {
        Scratch {
            kinds: Vec::with_capacity((len / 16 + 1) as usize),
            depths: Vec::with_capacity((len / 16 + 1) as usize),
            consts: Vec::with_capacity((len / 8 / 64 + 1) as usize),
            // Room for the interned-string slots of all but the largest modules (3000 in the
            // largest of a 400-module app).
            interned: Vec::with_capacity(4096),
        }
    }
}

/// `v` emptied and refilled with `len` zeros, keeping its allocation.
fn zeroed<T: Copy + Default>(mut v: Vec<T>, len: usize) -> Vec<T> {
    v.clear();
    v.resize(len, T::default());
    v
}

/// Objects of these kinds hold no pointers to other objects of the module (a UCS-4 string's
/// `wstr` on 3.11 points into the string itself, and is checked with it).
fn is_leaf(kind: Kind) -> bool {
    !matches!(kind, Kind::Tuple | Kind::Code | Kind::Slice)
}

impl<'a> Validator<'a> {
    /// The module's `objects`; its cold objects start at `objects.cold_start()` and its run-once
    /// objects at `objects.split()` (checking only the run-once part: the other two empty).
    pub fn new(objects: Parts<&'a [u8]>, rules: &'a Rules, intern_count: u32) -> Self {
        let (cold, run_once) = (objects.cold_start(), objects.split());
        Validator { objects, rules, intern_count, cold, run_once }
    }

    /// The first pass alone: every object carries the archived reference count, its type and
    /// sizes fit, GC headers are untracked and caches empty. Returns the number of objects.
    /// On a run-once part after its module ran, this proves nothing refers to its objects.
    pub fn objects_intact(&self) -> Result<usize, String> {
        let mut kinds = vec![0u8; (self.objects.len() / 16 + 1) as usize];
        self.parse(&mut kinds).map_err(|e| *e)
    }

    /// Validates every object of the module, working in `scratch`; the object at offset `root`
    /// must be code.
    pub fn run<'s>(self, root: u64, scratch: &'s mut Scratch) -> Result<Validated<'s>, String> {
        let len = self.objects.len();
        if len > u32::MAX as u64 {
            return Err(format!("module of {len} bytes: offsets past 4 GiB"));
        }
        let units = (len / 16 + 1) as usize;
        let mut kinds = zeroed(std::mem::take(&mut scratch.kinds), units);
        self.parse(&mut kinds).map_err(|e| *e)?;
        let mut pass = Pass {
            v: &self,
            depths: zeroed(std::mem::take(&mut scratch.depths), units),
            kinds,
            consts: zeroed(std::mem::take(&mut scratch.consts), (len / 8 / 64 + 1) as usize),
            interned: zeroed(std::mem::take(&mut scratch.interned), 0),
        };
        // The second pass, over the objects the first found (in layout order), skipping those
        // that hold no pointers.
        for unit in 0..pass.kinds.len() {
            let k = pass.kinds[unit];
            if k != 0 && !is_leaf(KINDS[(k - 1) as usize]) {
                pass.links(unit as u64 * 16, KINDS[(k - 1) as usize]).map_err(|e| *e)?;
            }
        }
        match pass.kind_at(root) {
            Some(Kind::Code) => {}
            _ => return Err(format!("the root at {root} is not a code object of the module")),
        }
        // The tables go back to the scratch for the next module (those of a module refused
        // above are simply dropped).
        let Pass { kinds, depths, consts, interned, .. } = pass;
        *scratch = Scratch { kinds, depths, consts, interned };
        Ok(Validated { classes: SlotClasses(&scratch.consts), kinds: &scratch.kinds, interned: &scratch.interned })
    }

    /// The first pass: every object in layout order, each checked on its own; records the kind
    /// of each in `kinds` (per 16-byte unit: 0 where no object starts, else 1 + the kind) and
    /// returns how many there are.
    fn parse(&self, kinds: &mut [u8]) -> Result<usize, Fail> {
        let len = self.objects.len();
        let gc_head = layout::GC_HEAD_SIZE as u64;
        let mut found = 0;
        let mut at = 0u64;
        // The cold and run-once parts must each start where an object (or its GC header)
        // starts, or be empty: an object may not run from one part into the next (in memory,
        // the next part lies elsewhere), and the loader parses the run-once part on its own when
        // it checks that its objects are dead.
        let parts = [("cold", self.cold), ("run-once", self.run_once)];
        let mut boundary = parts.map(|(_, start)| start >= len);
        while at < len {
            for (seen, &(_, start)) in boundary.iter_mut().zip(&parts) {
                *seen |= at == start;
            }
            // A zero word where an object may start opens a GC header (see the module docs).
            let headed = self.word(at)? == 0;
            let off = if headed { at + gc_head } else { at };
            if off % 16 != 0 {
                return Err(format!("misaligned object at {off}").into());
            }
            let kind = self.header(off)?;
            let gc = self.rules.facts.gc & (1 << kind as u16) != 0;
            if headed && !(at..off).step_by(8).all(|w| self.word(w) == Ok(0)) {
                return Err(format!("{kind:?} at {off} without an untracked GC header").into());
            }
            if gc != headed {
                return Err(if gc {
                    format!("{kind:?} at {off} without an untracked GC header").into()
                } else {
                    format!("{kind:?} at {off} after a GC header its type does not have").into()
                });
            }
            let ob_size = self.word(off + layout::OB_SIZE as u64)? as i64;
            let size = match kind {
                Kind::Str => self.str_size(off)?,
                Kind::Bytes => size_of(ob_size, |n| layout::BYTES_DATA + n + 1)?,
                Kind::Int => {
                    let word = self.word(off + layout::LONG_SIZE_WORD as u64)?;
                    let digits = layout::long_digits(word).ok_or_else(|| format!("malformed int at {off}"))?;
                    size_of(digits.min(i64::MAX as u64) as i64, |_| layout::long_size(digits))?
                }
                Kind::Float => layout::FLOAT_SIZE,
                Kind::Complex => layout::COMPLEX_SIZE,
                Kind::Slice => layout::SLICE_SIZE,
                Kind::Tuple => size_of(ob_size, |n| layout::TUPLE_ITEMS + 8 * n)?,
                Kind::Code => {
                    size_of(ob_size, |n| self.rules.facts.code_basicsize + n * self.rules.facts.code_itemsize)?
                }
            } as u64;
            let end = off.checked_add(size).filter(|&end| end <= len);
            let Some(end) = end else {
                return Err(format!("object at {off} runs past the end of the module").into());
            };
            if let Some((what, start)) = parts.iter().find(|&&(_, start)| at < start && start < end) {
                return Err(format!("{what} objects start at {start}, inside an object").into());
            }
            match kind {
                Kind::Tuple => {
                    if let Some(hash) = layout::TUPLE_HASH {
                        if self.word(off + hash as u64)? as i64 != -1 {
                            return Err(format!("tuple at {off} with a cached hash").into());
                        }
                    }
                }
                Kind::Code => {
                    let filled = layout::CODE_CACHES.iter().any(|&(_, field, size)| {
                        self.objects.get(off + field as u64, size as u64).is_none_or(|b| b.iter().any(|&x| x != 0))
                    });
                    if filled {
                        return Err(format!("code object at {off} with a filled cache").into());
                    }
                    if let Some(field) = layout::CODE_VERSION {
                        if !code_versions::is_archived(self.u32_at(off + field as u64)?) {
                            return Err(format!("code object at {off} without an archived version").into());
                        }
                    }
                }
                _ => {}
            }
            kinds[(off / 16) as usize] = 1 + kind as u8;
            found += 1;
            at = end.next_multiple_of(16);
        }
        if let Some((_, (what, start))) = boundary.iter().zip(&parts).find(|(&seen, _)| !seen) {
            return Err(format!("{what} objects start at {start}, inside an object").into());
        }
        Ok(found)
    }

    #[inline(always)]
    fn word(&self, off: u64) -> Result<u64, Fail> {
        self.objects.word(off).ok_or_else(|| format!("field at {off} outside the module").into())
    }

    #[inline(always)]
    fn u32_at(&self, off: u64) -> Result<u32, Fail> {
        self.objects
            .get(off, 4)
            .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| format!("field at {off} outside the module").into())
    }

    fn accepts(expect: Expect, kind: Kind) -> bool {
        match expect {
            Expect::Any => true,
            Expect::Str => kind == Kind::Str,
            Expect::Bytes => kind == Kind::Bytes,
            Expect::TupleOfAny | Expect::TupleOfStr => kind == Kind::Tuple,
        }
    }

    /// Checks the archived reference count and returns the object's type.
    fn header(&self, off: u64) -> Result<Kind, Fail> {
        if self.word(off + layout::OB_REFCNT as u64)? as i64 != layout::ARCHIVED_REFCNT as i64 {
            return Err(format!("object at {off} without the archived reference count").into());
        }
        let tp = self.word(off + layout::OB_TYPE as u64)?;
        match self.rules.types.iter().find(|t| t.0 == tp) {
            Some(&(_, kind)) => Ok(kind),
            None => Err(format!("object at {off} has no archived type").into()),
        }
    }

    fn str_size(&self, off: u64) -> Result<usize, Fail> {
        let state = self.u32_at(off + layout::STR_STATE as u64)?;
        let length = self.word(off + layout::STR_LENGTH as u64)? as i64;
        let kind = layout::state_field(state, layout::STR_STATE_KIND) as usize;
        let ascii = state & layout::STR_STATE_ASCII != 0;
        let ready = layout::has_bits(state, layout::STR_STATE_READY);
        let ok = state & layout::STR_STATE_COMPACT != 0
            && ready
            && state & layout::STR_STATE_INTERNED == 0
            && layout::has_bits(state, layout::STR_STATE_STATIC)
            && matches!(kind, 1 | 2 | 4)
            && (!ascii || kind == 1)
            && (0..1 << 40).contains(&length);
        if !ok {
            return Err(format!("malformed string at {off}").into());
        }
        if let Some((wstr, wstr_length)) = layout::STR_WSTR_SHARED {
            // Either no wchar_t cache, or (UCS-4 only) the string's own data, as CPython makes it.
            let w = self.word(off + wstr as u64)?;
            let own = self.objects.addr_of(off) + layout::STR_COMPACT_SIZE as u64;
            let wlen = if ascii { 0 } else { self.word(off + wstr_length as u64)? as i64 };
            let shared = kind == 4 && !ascii && w == own && wlen == length;
            if !(w == 0 && wlen == 0 || shared) {
                return Err(format!("string at {off} with a foreign wchar_t cache").into());
            }
        }
        Ok(layout::str_size(ascii, kind, length as usize))
    }
}

/// The second pass: the pointer slots of each object, in layout order.
struct Pass<'v, 'a> {
    v: &'v Validator<'a>,
    /// Per 16-byte unit, from the first pass: 0 where no object starts, else 1 + its kind.
    kinds: Vec<u8>,
    /// Per 16-byte unit where an object that holds pointers starts: how deeply objects nest
    /// under it (1 for one that points only at objects without pointers).
    depths: Vec<u16>,
    /// Per 8-byte word, one bit: set where the word is a constant slot.
    consts: Vec<u64>,
    /// (slot, number) of every slot that names an interned string.
    interned: Vec<(u32, u32)>,
}

impl Pass<'_, '_> {
    /// The kind of the object that starts at offset `off`, if one does.
    #[inline(always)]
    fn kind_at(&self, off: u64) -> Option<Kind> {
        kind_in(&self.kinds, off)
    }

    #[inline(always)]
    fn mark_const(&mut self, slot: u64) {
        let word = slot / 8;
        self.consts[(word / 64) as usize] |= 1 << (word % 64);
    }

    /// Checks the pointer slots of the object at `off` and records how deeply objects nest
    /// under it.
    fn links(&mut self, off: u64, kind: Kind) -> Result<(), Fail> {
        let mut depth = 0;
        match kind {
            Kind::Slice => {
                for &(_, field, _) in layout::SLICE_ITEMS {
                    let slot = off + field as u64;
                    self.mark_const(slot);
                    depth = depth.max(self.slot(off, slot, Expect::Any)?);
                }
            }
            Kind::Tuple => {
                let n = self.v.word(off + layout::OB_SIZE as u64)?;
                for i in 0..n {
                    let slot = off + layout::TUPLE_ITEMS as u64 + 8 * i;
                    self.mark_const(slot);
                    depth = depth.max(self.slot(off, slot, Expect::Any)?);
                }
            }
            Kind::Code => {
                let n = self.v.u32_at(off + layout::CODE_NLOCALSPLUS as u64)? as i32 as i64;
                for i in 0..self.v.rules.code_fields.len() {
                    let (field, want, sized) = self.v.rules.code_fields[i];
                    let slot = off + field;
                    depth = depth.max(self.slot(off, slot, want)?);
                    let target = self.v.word(slot)?;
                    if sized && self.length_of(target)? != n {
                        return Err(format!("code object at {off}: locals do not match co_nlocalsplus").into());
                    }
                    if want == Expect::TupleOfStr {
                        self.all_str(target)?;
                    }
                }
            }
            _ => return Ok(()),
        }
        if depth >= MAX_DEPTH {
            return Err(Box::new("objects nested too deeply".to_string()));
        }
        self.depths[(off / 16) as usize] = depth + 1;
        Ok(())
    }

    /// Checks what the slot at offset `slot` of the object at `holder` holds, and returns how
    /// deeply objects nest under it.
    #[inline(always)]
    fn slot(&mut self, holder: u64, slot: u64, expect: Expect) -> Result<u16, Fail> {
        let v = self.v;
        let word = v.word(slot)?;
        if let Some(n) = layout::intern_ref_number(word) {
            if !Validator::accepts(expect, Kind::Str) {
                return Err(format!("interned string at {slot} where another type is required").into());
            }
            if n >= v.intern_count {
                return Err(format!("slot {slot} names no interned string ({n})").into());
            }
            // A module's offsets fit in 32 bits (checked by `run`).
            self.interned.push((slot as u32, n));
            return Ok(0);
        }
        let Some(off) = v.objects.offset_of(word) else {
            // Outside the module: only externals, and only of an acceptable kind.
            return match v.rules.externals.get(word) {
                Some(ExtClass::Value(kind, _)) if Validator::accepts(expect, kind) => Ok(0),
                Some(ExtClass::Singleton) if expect == Expect::Any => Ok(0),
                _ => Err(format!("pointer {word:#x} is neither an object of the module nor a fitting external").into()),
            };
        };
        let Some(kind) = self.kind_at(off) else {
            return Err(format!("pointer at {slot} to {off}, where no object of the module starts").into());
        };
        if !Validator::accepts(expect, kind) {
            return Err(format!("object at {off} is a {kind:?} where another type is required").into());
        }
        if off >= v.run_once && holder < v.run_once {
            return Err(format!("object at {holder} points into the run-once objects (at {off})").into());
        }
        if is_leaf(kind) {
            return Ok(0);
        }
        if off >= holder {
            return Err(format!("object at {holder} points forward to the {kind:?} at {off} (objects must come after what they hold: a cycle?)").into());
        }
        Ok(self.depths[(off / 16) as usize])
    }

    /// Checks that the tuple at `addr` (already checked to be a tuple) holds only strings.
    fn all_str(&self, addr: u64) -> Result<(), Fail> {
        let v = self.v;
        let Some(off) = v.objects.offset_of(addr) else {
            // An external tuple is the interpreter's own (the empty tuple).
            return Ok(());
        };
        let n = v.word(off + layout::OB_SIZE as u64)?;
        for i in 0..n {
            let slot = off + layout::TUPLE_ITEMS as u64 + 8 * i;
            let word = v.word(slot)?;
            let ok = layout::intern_ref_number(word).is_some()
                || match v.objects.offset_of(word) {
                    Some(o) => self.kind_at(o) == Some(Kind::Str),
                    None => matches!(v.rules.externals.get(word), Some(ExtClass::Value(Kind::Str, _))),
                };
            if !ok {
                return Err(
                    format!("item at {slot} of a names tuple is not a str where another type is required").into()
                );
            }
        }
        Ok(())
    }

    /// Length of a tuple or bytes object (internal or external) at `addr`.
    fn length_of(&self, addr: u64) -> Result<i64, Fail> {
        let v = self.v;
        match v.objects.offset_of(addr) {
            Some(off) => Ok(v.word(off + layout::OB_SIZE as u64)? as i64),
            _ => match v.rules.externals.get(addr) {
                Some(ExtClass::Value(Kind::Tuple | Kind::Bytes | Kind::Str, n)) => Ok(n),
                _ => Err(Box::new("length of a non-sequence".to_string())),
            },
        }
    }
}

fn size_of(ob_size: i64, f: impl Fn(usize) -> usize) -> Result<usize, Fail> {
    if !(0..1 << 32).contains(&ob_size) {
        return Err(format!("implausible object size {ob_size}").into());
    }
    Ok(f(ob_size as usize))
}

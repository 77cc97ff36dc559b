//! Structural validation of one module's objects, after relocation and before any of them reaches
//! the interpreter. Checksums catch accidental damage; this catches an archive whose checksums
//! were recomputed over lies: every object reachable from the module's code object must lie inside
//! the module, carry the archived reference count and one of the archived types, have a size that
//! fits, and be of the type its holder requires (a code object's `co_names` is a tuple of str, ...),
//! and the graph must have no cycles. A slot that names an interned string (`layout::intern_ref`)
//! must be one where a str belongs and name an entry of the archive's table; the validator lists
//! those slots for the loader to fill. It reads the module's bytes through a bounds-checked slice:
//! no unsafe code. What it does not check is the bytecode itself (see the README's trust model).

use cds_archive::AddrMap;

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
    Code,
    /// Any constant (a tuple item under `co_consts`).
    Any,
    Str,
    Bytes,
    TupleOfAny,
    TupleOfStr,
}

/// Per 8-byte word of the module: what the word's holder requires (see [`SlotClass`]).
pub struct SlotClasses(Vec<u8>);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SlotClass {
    None = 0,
    /// A constant slot (tuple item under `co_consts`): may become a frozenset.
    Const = 1,
    /// A slot that must hold a str.
    Str = 2,
}

impl SlotClasses {
    pub fn get(&self, slot: u64) -> SlotClass {
        match self.0.get((slot / 8) as usize) {
            Some(1) => SlotClass::Const,
            Some(2) => SlotClass::Str,
            _ => SlotClass::None,
        }
    }
}

const MAX_DEPTH: usize = 512;

/// Facts the validator needs from the running interpreter's type objects.
#[derive(Clone, Copy)]
pub struct TypeFacts {
    pub code_basicsize: usize,
    pub code_itemsize: usize,
    /// Bit `kind as u8` is set when that type's objects carry a GC header.
    pub gc: u16,
}

pub struct Validator<'a> {
    objects: &'a [u8],
    actual: u64,
    externals: &'a AddrMap<ExtClass>,
    facts: TypeFacts,
    /// Per 16-byte unit: 0 unvisited, 1 on the current path, 2 + kind when done.
    state: Vec<u8>,
    /// The archived type objects' addresses, for the check of every object's type.
    types: Vec<(u64, Kind)>,
    /// Expectations of the code object's pointer fields, in `layout::CODE_OBJECTS` order.
    code_fields: Vec<(u64, Expect, bool)>,
    slots: Vec<u8>,
    /// Entries of the archive's interned-strings table.
    intern_count: u32,
    /// (slot, number) of every slot that names an interned string.
    interned: Vec<(u64, u32)>,
}

/// What validation found: the class of each slot, and the slots to fill with interned strings.
pub struct Validated {
    pub classes: SlotClasses,
    pub interned: Vec<(u64, u32)>,
}

impl<'a> Validator<'a> {
    /// `externals` must be sorted by address.
    pub fn new(
        objects: &'a [u8],
        actual: u64,
        externals: &'a AddrMap<ExtClass>,
        facts: TypeFacts,
        intern_count: u32,
    ) -> Self {
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
                    "co_filename" | "co_name" | "co_qualname" => Expect::Str,
                    _ => Expect::Bytes,
                };
                // The frame layout trusts co_nlocalsplus: these two must match it.
                let sized = name == "co_localsplusnames" || name == "co_localspluskinds";
                (field as u64, want, sized)
            })
            .collect();
        Validator {
            objects,
            actual,
            externals,
            facts,
            state: vec![0; objects.len() / 16 + 1],
            types,
            code_fields,
            slots: vec![0; objects.len() / 8 + 1],
            intern_count,
            interned: Vec::new(),
        }
    }

    /// Validates everything reachable from the object at offset `root`, which must be code.
    pub fn run(mut self, root: u64) -> Result<Validated, String> {
        self.visit(self.actual + root, Expect::Code, 0)?;
        Ok(Validated { classes: SlotClasses(self.slots), interned: self.interned })
    }

    /// Validates what the slot at offset `slot` holds: an object (see `visit`) or the number of
    /// an interned string, where a str is acceptable.
    fn visit_slot(&mut self, slot: u64, expect: Expect, depth: usize) -> Result<(), String> {
        let word = self.word(slot)?;
        match layout::intern_ref_number(word) {
            None => self.visit(word, expect, depth),
            Some(_) if !Self::accepts(expect, Kind::Str) => {
                Err(format!("interned string at {slot} where another type is required"))
            }
            Some(n) if n >= self.intern_count => Err(format!("slot {slot} names no interned string ({n})")),
            Some(n) => {
                self.interned.push((slot, n));
                Ok(())
            }
        }
    }

    fn word(&self, off: u64) -> Result<u64, String> {
        let o = off as usize;
        self.objects
            .get(o..o + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format!("field at {off} outside the module"))
    }

    fn u32_at(&self, off: u64) -> Result<u32, String> {
        let o = off as usize;
        self.objects
            .get(o..o + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| format!("field at {off} outside the module"))
    }

    fn external(&self, addr: u64) -> Option<ExtClass> {
        self.externals.get(addr)
    }

    fn accepts(expect: Expect, kind: Kind) -> bool {
        match expect {
            Expect::Code => kind == Kind::Code,
            Expect::Any => true,
            Expect::Str => kind == Kind::Str,
            Expect::Bytes => kind == Kind::Bytes,
            Expect::TupleOfAny | Expect::TupleOfStr => kind == Kind::Tuple,
        }
    }

    fn visit(&mut self, addr: u64, expect: Expect, depth: usize) -> Result<(), String> {
        let len = self.objects.len() as u64;
        let Some(off) = addr.checked_sub(self.actual).filter(|&o| o < len) else {
            // Outside the module: only externals, and only of an acceptable kind.
            return match self.external(addr) {
                Some(ExtClass::Value(kind, _)) if Self::accepts(expect, kind) => Ok(()),
                Some(ExtClass::Singleton) if expect == Expect::Any => Ok(()),
                _ => Err(format!("pointer {addr:#x} is neither an object of the module nor a fitting external")),
            };
        };
        if off % 16 != 0 {
            return Err(format!("misaligned object at {off}"));
        }
        let unit = (off / 16) as usize;
        match self.state[unit] {
            0 => {}
            1 => return Err(format!("object at {off} contains itself (a cycle)")),
            done => {
                // Reached again through another slot: only its type needs checking.
                let kind = KINDS[(done - 2) as usize];
                if !Self::accepts(expect, kind) {
                    return Err(format!("object at {off} is a {kind:?} where another type is required"));
                }
                return Ok(());
            }
        }
        if depth > MAX_DEPTH {
            return Err("objects nested too deeply".into());
        }
        self.state[unit] = 1;
        let kind = self.header(off)?;
        if !Self::accepts(expect, kind) {
            return Err(format!("object at {off} is a {kind:?} where another type is required"));
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
            Kind::Code => size_of(ob_size, |n| self.facts.code_basicsize + n * self.facts.code_itemsize)?,
        } as u64;
        if off.checked_add(size).is_none_or(|end| end > len) {
            return Err(format!("object at {off} runs past the end of the module"));
        }
        if self.facts.gc & (1 << kind as u16) != 0 {
            let gc = layout::GC_HEAD_SIZE as u64;
            let untracked = off >= gc && (off - gc..off).step_by(8).all(|w| self.word(w) == Ok(0));
            if !untracked {
                return Err(format!("{kind:?} at {off} without an untracked GC header"));
            }
        }
        match kind {
            Kind::Slice => {
                for &(_, field, _) in layout::SLICE_ITEMS {
                    let slot = off + field as u64;
                    self.mark(slot, Expect::Any);
                    self.visit_slot(slot, Expect::Any, depth + 1)?;
                }
            }
            Kind::Tuple => {
                if let Some(hash) = layout::TUPLE_HASH {
                    if self.word(off + hash as u64)? as i64 != -1 {
                        return Err(format!("tuple at {off} with a cached hash"));
                    }
                }
                let item = match expect {
                    Expect::TupleOfStr => Expect::Str,
                    _ => Expect::Any,
                };
                for i in 0..ob_size as u64 {
                    let slot = off + layout::TUPLE_ITEMS as u64 + 8 * i;
                    self.mark(slot, item);
                    self.visit_slot(slot, item, depth + 1)?;
                }
            }
            Kind::Code => {
                if let Some(field) = layout::CODE_VERSION {
                    if !code_versions::is_archived(self.u32_at(off + field as u64)?) {
                        return Err(format!("code object at {off} without an archived version"));
                    }
                }
                let n = self.u32_at(off + layout::CODE_NLOCALSPLUS as u64)? as i32;
                for i in 0..self.code_fields.len() {
                    let (field, want, sized) = self.code_fields[i];
                    let slot = off + field;
                    if want == Expect::Str {
                        self.mark(slot, Expect::Str);
                    }
                    self.visit_slot(slot, want, depth + 1)?;
                    if sized && self.length_of(self.word(slot)?)? != n as i64 {
                        return Err(format!("code object at {off}: locals do not match co_nlocalsplus"));
                    }
                }
            }
            _ => {}
        }
        self.state[unit] = 2 + kind as u8;
        Ok(())
    }

    fn mark(&mut self, slot: u64, expect: Expect) {
        let class = match expect {
            Expect::Any => SlotClass::Const,
            Expect::Str => SlotClass::Str,
            _ => SlotClass::None,
        };
        if let Some(s) = self.slots.get_mut((slot / 8) as usize) {
            *s = class as u8;
        }
    }

    /// Checks the archived reference count and returns the object's type.
    fn header(&self, off: u64) -> Result<Kind, String> {
        if self.word(off + layout::OB_REFCNT as u64)? as i64 != layout::ARCHIVED_REFCNT as i64 {
            return Err(format!("object at {off} without the archived reference count"));
        }
        let tp = self.word(off + layout::OB_TYPE as u64)?;
        match self.types.iter().find(|t| t.0 == tp) {
            Some(&(_, kind)) => Ok(kind),
            None => Err(format!("object at {off} has no archived type")),
        }
    }

    fn str_size(&self, off: u64) -> Result<usize, String> {
        let state = self.u32_at(off + layout::STR_STATE as u64)?;
        let length = self.word(off + layout::STR_LENGTH as u64)? as i64;
        let kind = layout::state_field(state, layout::STR_STATE_KIND) as usize;
        let ascii = state & layout::STR_STATE_ASCII != 0;
        let ready = layout::STR_STATE_READY == 0 || state & layout::STR_STATE_READY != 0;
        let ok = state & layout::STR_STATE_COMPACT != 0
            && ready
            && state & layout::STR_STATE_INTERNED == 0
            && layout::has_bits(state, layout::STR_STATE_STATIC)
            && matches!(kind, 1 | 2 | 4)
            && (!ascii || kind == 1)
            && (0..1 << 40).contains(&length);
        if !ok {
            return Err(format!("malformed string at {off}"));
        }
        if let Some((wstr, wstr_length)) = layout::STR_WSTR_SHARED {
            // Either no wchar_t cache, or (UCS-4 only) the string's own data, as CPython makes it.
            let w = self.word(off + wstr as u64)?;
            let own = self.actual + off + layout::STR_COMPACT_SIZE as u64;
            let wlen = if ascii { 0 } else { self.word(off + wstr_length as u64)? as i64 };
            let shared = kind == 4 && !ascii && w == own && wlen == length;
            if !(w == 0 && wlen == 0 || shared) {
                return Err(format!("string at {off} with a foreign wchar_t cache"));
            }
        }
        Ok(layout::str_size(ascii, kind, length as usize))
    }

    /// Length of a tuple or bytes object (internal or external) at `addr`.
    fn length_of(&self, addr: u64) -> Result<i64, String> {
        match addr.checked_sub(self.actual) {
            Some(off) if off < self.objects.len() as u64 => Ok(self.word(off + layout::OB_SIZE as u64)? as i64),
            _ => match self.external(addr) {
                Some(ExtClass::Value(Kind::Tuple | Kind::Bytes | Kind::Str, n)) => Ok(n),
                _ => Err("length of a non-sequence".into()),
            },
        }
    }
}

fn size_of(ob_size: i64, f: impl Fn(usize) -> usize) -> Result<usize, String> {
    if !(0..1 << 32).contains(&ob_size) {
        return Err(format!("implausible object size {ob_size}"));
    }
    Ok(f(ob_size as usize))
}

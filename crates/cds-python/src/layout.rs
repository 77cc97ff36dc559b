//! Layout facts of the interpreter this extension is built for, generated at build time by
//! `csrc/layout_probe.c` from the interpreter's own headers (see `build.rs`). Together with the
//! probe, this is the one place that knows how CPython versions differ.

#[allow(dead_code)]
mod generated {
    use super::BytecodeScan;
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}

/// What a scan of (never run) bytecode needs to know of the interpreter's opcodes: see
/// `BYTECODE_SCAN` (3.11 only) and `copier::consumed_consts`.
pub struct BytecodeScan {
    pub load_const: u8,
    pub kw_names: u8,
    pub extended_arg: u8,
    /// Opcodes that use up the constant loaded just before them.
    pub consumers: &'static [u8],
    /// Inline cache entries (code units) after each opcode.
    pub caches: [u8; 256],
}
pub use generated::*;

/// Whether the code-object field `name` (of `CODE_OBJECTS`) holds a str: the file name, the
/// name and the qualified name. The others hold the code object's structure (constants, names,
/// locals, tables).
pub fn code_field_is_str(name: &str) -> bool {
    matches!(name, "co_filename" | "co_name" | "co_qualname")
}

/// Whether the code-object field `name` (of `CODE_OBJECTS`) holds a bytes table that the
/// interpreter only reads in place (line numbers, exception handlers, kinds of locals), never
/// taking a reference to it in the course of running code: such a table is cold (see
/// `docs/format.md`, the cold region).
pub fn code_field_is_cold(name: &str) -> bool {
    matches!(name, "co_linetable" | "co_exceptiontable" | "co_localspluskinds")
}

/// Value of a bit-field of `PyASCIIObject.state` selected by `mask`.
pub fn state_field(state: u32, mask: u32) -> u32 {
    (state & mask) >> mask.trailing_zeros()
}

/// Digit count of an `int` from its size word (the word at `LONG_SIZE_WORD`): CPython < 3.12
/// keeps the count, with the sign, in `ob_size`; 3.12+ keeps it in `lv_tag` above the sign and
/// flag bits. `None` for a word no interpreter would write (3.12+: sign bits 3, or a flag bit).
pub fn long_digits(size_word: u64) -> Option<u64> {
    if LONG_TAGGED {
        let low = size_word & ((1 << LONG_NON_SIZE_BITS) - 1);
        let digits = size_word >> LONG_NON_SIZE_BITS;
        let sign = low & LONG_SIGN_MASK as u64;
        // Sign 1 is zero (no digits); 0 positive and 2 negative need digits; no other flags.
        let ok = low == sign && (sign == 1) == (digits == 0) && sign != 3;
        ok.then_some(digits)
    } else {
        Some((size_word as i64).unsigned_abs())
    }
}

/// Bytes an `int` object with `digits` digits occupies (zero still has one digit allocated).
pub fn long_size(digits: u64) -> usize {
    LONG_DIGITS + (digits.max(1) as usize) * LONG_DIGIT_SIZE
}

/// Whether every bit of `mask` is set in `v` (true for an empty mask: a bit-field this
/// version does not have).
pub fn has_bits(v: u32, mask: u32) -> bool {
    v & mask == mask
}

/// An object slot that names an interned string holds this word instead of a pointer: bit 63
/// and bit 0 set, the string's number in the archive's interned-strings table in between. No
/// pointer (8-byte aligned, below 2^47) and no field the validator checks (sizes, lengths,
/// reference counts, string states, GC links) can have that value, so a slot cannot be both an
/// interned-string reference and a checked field of an overlapping object. The loader replaces
/// it with the interpreter's interned string of that text.
pub fn intern_ref(number: u32) -> u64 {
    1 << 63 | (number as u64) << 1 | 1
}

/// The number an interned-string reference names, or `None` when `word` is not one.
pub fn intern_ref_number(word: u64) -> Option<u32> {
    let number = ((word >> 1) & u32::MAX as u64) as u32;
    (word == intern_ref(number)).then_some(number)
}

/// How the archive stores an interned string's text (opaque bytes to the format crate): its
/// code units in native order, then one byte, the kind (bytes per code unit), so that the units
/// start on the table's alignment.
pub fn encode_interned(kind: usize, units: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(units.len() + 1);
    v.extend_from_slice(units);
    v.push(kind as u8);
    v
}

/// The kind and code units of an interned string stored by [`encode_interned`], or `None` when
/// the bytes are not such an encoding.
pub fn decode_interned(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&kind, units) = bytes.split_last()?;
    let kind = kind as usize;
    (matches!(kind, 1 | 2 | 4) && units.len() % kind == 0).then_some((kind, units))
}

/// Offset of a compact `str`'s characters from the object's start.
pub fn str_data_offset(ascii: bool) -> usize {
    if ascii {
        STR_ASCII_SIZE
    } else {
        STR_COMPACT_SIZE
    }
}

/// Bytes a compact `str` object occupies (an ASCII string has kind 1).
pub fn str_size(ascii: bool, kind: usize, length: usize) -> usize {
    str_data_offset(ascii) + (length + 1) * kind
}

/// SHA-256 of every layout fact (the generated constants above), part of the archive
/// fingerprint: an archive is only ever opened by an extension built against identical struct
/// layouts. Computed at build time.
pub const LAYOUT_DIGEST: [u8; 32] = include!(concat!(env!("OUT_DIR"), "/layout_digest.rs"));

//! Layout facts of the interpreter this extension is built for, generated at build time by
//! `csrc/layout_probe.c` from the interpreter's own headers (see `build.rs`). Together with the
//! probe, this is the one place that knows how CPython versions differ.

#[allow(dead_code)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}
pub use generated::*;

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

/// Whether an intern fix-up may intern the archived string itself. Before 3.12 it may: the
/// interned dict then holds it, and its biased reference count keeps it alive through
/// finalization. On 3.12+ interning rewrites the string's header, and 3.14's finalization makes
/// interned immortal strings mortal and releases them, so the fix-up interns a heap copy instead
/// (as unmarshalling does) and archived strings never enter the interned dict.
pub const INTERN_IN_PLACE: bool = !IMMORTAL_OBJECTS;

/// Offset of a compact `str`'s characters from the object's start.
pub fn str_data_offset(ascii: bool) -> usize {
    if ascii { STR_ASCII_SIZE } else { STR_COMPACT_SIZE }
}

/// Bytes a compact `str` object occupies (an ASCII string has kind 1).
pub fn str_size(ascii: bool, kind: usize, length: usize) -> usize {
    str_data_offset(ascii) + (length + 1) * kind
}

/// SHA-256 of every layout fact (the generated constants above), part of the archive
/// fingerprint: an archive is only ever opened by an extension built against identical struct
/// layouts. Computed at build time.
pub const LAYOUT_DIGEST: [u8; 32] = include!(concat!(env!("OUT_DIR"), "/layout_digest.rs"));

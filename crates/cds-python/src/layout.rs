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

/// Bytes an `int` object occupies, from its signed size field (CPython < 3.12 keeps the digit
/// count, with the sign, in `ob_size`; zero still has one digit allocated).
pub fn long_size(ob_size: isize) -> usize {
    LONG_DIGITS + ob_size.unsigned_abs().max(1) * LONG_DIGIT_SIZE
}

/// Bytes a compact `str` object occupies.
pub fn str_size(ascii: bool, kind: usize, length: usize) -> usize {
    if ascii {
        STR_ASCII_SIZE + length + 1
    } else {
        STR_COMPACT_SIZE + (length + 1) * kind
    }
}

/// A digest of every layout fact, part of the archive fingerprint: an archive is only ever
/// opened by an extension built against identical struct layouts.
pub fn digest_input() -> String {
    include_str!(concat!(env!("OUT_DIR"), "/layout.rs")).to_owned()
}

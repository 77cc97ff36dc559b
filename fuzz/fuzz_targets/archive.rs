//! Feeds arbitrary bytes to everything a reader does with an archive: header and section checks,
//! index lookups, entry decoding, metadata, checksums, fix-up lists and relocation. None of it may
//! panic, read out of bounds or loop forever, whatever the bytes.
//!
//! Each input is tried twice: as is, and with its file size, header checksum and index-entry
//! checksums rewritten to match its bytes. Without the second pass nearly every mutation of a
//! header or index field would stop at a checksum, and the checks behind them would only be
//! reached by the fuzzer solving a CRC-32 first. (A crafted file can carry valid checksums, so
//! everything behind them must hold against any bytes too.)
#![no_main]

use cds_archive::fuzzing::{exercise, fix_checksums};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let mut fixed = data.to_vec();
    if fix_checksums(&mut fixed) && fixed != data {
        exercise(&fixed);
    }
});

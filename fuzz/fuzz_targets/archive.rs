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

use cds_archive::{relocate, Archive, ExternalMap, ENTRY_SIZE, EXTERNAL_SIZE, HEADER_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let mut fixed = data.to_vec();
    if fix_checksums(&mut fixed) && fixed != data {
        exercise(&fixed);
    }
});

fn exercise(data: &[u8]) {
    let Ok(archive) = Archive::parse(data, data.len() as u64) else {
        return;
    };
    let _ = archive.producer();
    let _ = archive.externals();
    let dumped = archive.external_addrs();
    let actual: Vec<u64> = (0..dumped.len() as u64).map(|i| 0x7f00_0000_0000 + i * 64).collect();
    let externals = ExternalMap::new(&dumped, &actual);
    let _ = externals.moves_anything();
    for name in ["json", "a", "", "zz", "\u{10ffff}"] {
        let _ = archive.lookup(name);
    }
    let _ = archive.entries();
    let count = archive.module_count().min(256);
    for i in 0..count {
        let Ok(entry) = archive.entry(i) else { continue };
        let _ = archive.lookup(entry.name);
        let _ = entry.meta();
        let _ = entry.reloc_count();
        let _ = entry.pointer_slots().count();
        let _ = entry.fixup_count();
        for f in entry.fixups() {
            let _ = f;
        }
        let start = entry.objects_file_off as usize;
        let Some(objects) = data.get(start..start + entry.objects_len as usize) else {
            continue;
        };
        let _ = entry.verify(objects);
        // As the loader computes it (crates/cds-python/src/loader.rs).
        let preferred = archive.header.preferred_base + entry.objects_file_off;
        let mut copy = objects.to_vec();
        let _ = relocate(&mut copy, &entry, preferred, preferred, &externals);
        // Mapped elsewhere: a page-aligned address in the usual range of mmap.
        let moved = 0x7f12_3456_0000 + entry.objects_file_off;
        let mut copy = objects.to_vec();
        let _ = relocate(&mut copy, &entry, preferred, moved, &externals);
    }
}

// Header and index-entry fields the checksums need (docs/format.md).
const H_FILE_SIZE: usize = 56;
const H_INDEX_OFF: usize = 64;
const H_MODULE_COUNT: usize = 72;
const H_EXTERNALS_COUNT: usize = 76;
const H_EXTERNALS_OFF: usize = 80;
const H_BLOB_OFF: usize = 88;
const H_PRODUCER_LEN: usize = 120;
const H_CRC: usize = 124;
const E_NAME_OFF: usize = 0;
const E_NAME_LEN: usize = 4;
const E_ENTRY_CRC: usize = 60;

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b[at..at + 8].try_into().unwrap())).ok()
}

/// `b[off..off + len]`, or `None` when it is not inside `b`.
fn range(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// Rewrites the file size, every index entry's checksum (for the first 256 entries) and the
/// header checksum to match the bytes. False when the input is too short to have a header.
fn fix_checksums(b: &mut [u8]) -> bool {
    if b.len() < HEADER_SIZE {
        return false;
    }
    let len = b.len() as u64;
    b[H_FILE_SIZE..H_FILE_SIZE + 8].copy_from_slice(&len.to_le_bytes());
    let blob_off = u64_at(b, H_BLOB_OFF);
    if let (Some(index_off), Some(blob_off)) = (u64_at(b, H_INDEX_OFF), blob_off) {
        for i in 0..u32_at(b, H_MODULE_COUNT).min(256) {
            let Some(at) = index_off.checked_add(i * ENTRY_SIZE) else { break };
            let Some(e) = range(b, at, ENTRY_SIZE) else { break };
            let name_off = blob_off.checked_add(u32_at(e, E_NAME_OFF));
            let Some(name) = name_off.and_then(|off| range(b, off, u32_at(e, E_NAME_LEN))) else {
                continue;
            };
            let mut c = crc32fast::Hasher::new();
            c.update(&e[..E_ENTRY_CRC]);
            c.update(name);
            let crc = c.finalize();
            b[at + E_ENTRY_CRC..at + E_ENTRY_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let externals_len = u32_at(b, H_EXTERNALS_COUNT) * EXTERNAL_SIZE;
    let externals = u64_at(b, H_EXTERNALS_OFF).and_then(|off| range(b, off, externals_len));
    let producer = blob_off.and_then(|off| range(b, off, u32_at(b, H_PRODUCER_LEN)));
    if let (Some(externals), Some(producer)) = (externals, producer) {
        let mut c = crc32fast::Hasher::new();
        c.update(&b[..H_CRC]);
        c.update(externals);
        c.update(producer);
        let crc = c.finalize();
        b[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
    true
}

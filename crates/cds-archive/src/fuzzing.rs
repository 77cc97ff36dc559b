//! What the `archive` fuzz target (fuzz/fuzz_targets/archive.rs) does with one input, shared
//! with the regression tests that replay its findings on the stable toolchain
//! (tests/fuzz_regressions.rs), so that both always exercise the same reader paths.

use crate::layout::*;
use crate::parts::Parts;
use crate::reader::Archive;
use crate::reloc::{relocate, ExternalMap};

/// Everything a reader does with an archive: header and section checks, index lookups, entry
/// decoding, metadata, checksums, fix-up lists and relocation (at the preferred address and
/// elsewhere). It must return, never panic, for any bytes; errors are fine.
pub fn exercise(data: &[u8]) {
    let Ok(archive) = Archive::parse(data, data.len() as u64) else {
        return;
    };
    let _ = archive.producer();
    let _ = archive.externals();
    let dumped = archive.external_addrs();
    let actual: Vec<u64> = (0..dumped.len() as u64).map(|i| 0x7f00_0000_0000 + i * 64).collect();
    let externals = ExternalMap::new(&dumped, &actual);
    let _ = externals.moves_anything();
    for name in ["json", "a", "b.sub", "", "zz", "\u{10ffff}"] {
        let _ = archive.lookup(name);
    }
    let _ = archive.entries();
    for n in 0..archive.header.intern_count.min(256) {
        let _ = archive.interned(n);
    }
    let _ = archive.interned(u32::MAX);
    for key in [&b""[..], b"\0", b"pattern", b"\xff\xff\xff\xff"] {
        let _ = archive.keyed(key);
    }
    for i in 0..archive.module_count().min(256) {
        let Ok(entry) = archive.entry(i) else { continue };
        let _ = archive.lookup(entry.name);
        let _ = entry.meta();
        let _ = entry.reloc_count();
        let _ = entry.pointer_slots().count();
        let _ = entry.fixup_count();
        for f in entry.fixups() {
            let _ = f;
        }
        let Some([first, cold, run_once]) = entry.parts_in(data) else {
            continue;
        };
        // As the loader does (crates/cds-python/src/loader.rs): each part at its address, the
        // archive at its preferred address and elsewhere; must not overflow for any archive
        // `parse` accepts.
        let base = archive.header.preferred_base;
        for actual in [base, 0x7f12_3456_0000] {
            let (mut a, mut c, mut b) = (first.to_vec(), cold.to_vec(), run_once.to_vec());
            let (fa, ca, ra) =
                (actual + entry.objects_file_off, actual + entry.cold_file_off, actual + entry.run_once_file_off);
            let mut parts = Parts::new((&mut a[..], fa), (&mut c[..], ca), (&mut b[..], ra));
            let _ = entry.verify(&parts.view());
            let _ = relocate(&mut parts, &entry, base, actual, &externals);
            let _ = (parts.offset_of(fa), parts.offset_of(ca), parts.offset_of(ra), parts.word(entry.root));
        }
    }
}

/// Rewrites the file size, every index entry's checksum (for the first 256 entries) and the
/// header checksum to match the bytes, so that a mutated field is what the checks behind the
/// checksums see. False when the input is too short to have a header.
pub fn fix_checksums(b: &mut [u8]) -> bool {
    if b.len() < HEADER_SIZE {
        return false;
    }
    let len = b.len() as u64;
    b[H_FILE_SIZE..H_FILE_SIZE + 8].copy_from_slice(&len.to_le_bytes());
    let blob_off = usize::try_from(rd_u64(b, H_BLOB_OFF)).ok();
    if let (Ok(index_off), Some(blob_off)) = (usize::try_from(rd_u64(b, H_INDEX_OFF)), blob_off) {
        for i in 0..(rd_u32(b, H_MODULE_COUNT) as usize).min(256) {
            let Some(at) = index_off.checked_add(i * ENTRY_SIZE) else { break };
            let Some(e) = range(b, at, ENTRY_SIZE) else { break };
            let name_off = blob_off.checked_add(rd_u32(e, E_NAME_OFF) as usize);
            let Some(name) = name_off.and_then(|off| range(b, off, rd_u32(e, E_NAME_LEN) as usize)) else {
                continue;
            };
            let crc = entry_crc(e, name);
            b[at + E_ENTRY_CRC..at + E_ENTRY_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let externals_len = rd_u32(b, H_EXTERNALS_COUNT) as usize * EXTERNAL_SIZE;
    let externals_off = usize::try_from(rd_u64(b, H_EXTERNALS_OFF)).ok();
    let externals = externals_off.and_then(|off| range(b, off, externals_len));
    let producer = blob_off.and_then(|off| range(b, off, rd_u32(b, H_PRODUCER_LEN) as usize));
    if let (Some(externals), Some(producer)) = (externals, producer) {
        let crc = header_crc(&b[..HEADER_SIZE], externals, producer);
        b[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
    true
}

/// `b[off..off + len]`, or `None` when it is not inside `b`.
fn range(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

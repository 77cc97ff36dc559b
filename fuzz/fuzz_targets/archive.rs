//! Feeds arbitrary bytes to everything a reader does with an archive: header and section checks,
//! index lookups, entry decoding, metadata, checksums, fix-up lists and relocation. None of it may
//! panic, read out of bounds or loop forever, whatever the bytes.
#![no_main]

use cds_archive::{relocate, Archive, ExternalMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = Archive::parse(data, data.len() as u64) else {
        return;
    };
    let _ = archive.producer();
    let dumped = archive.external_addrs();
    let actual: Vec<u64> = (0..dumped.len() as u64).map(|i| 0x7f00_0000_0000 + i * 64).collect();
    let externals = ExternalMap::new(&dumped, &actual);
    for name in ["json", "a", "", "zz", "\u{10ffff}"] {
        let _ = archive.lookup(name);
    }
    let _ = archive.entries();
    let count = archive.module_count().min(256);
    for i in 0..count {
        let Ok(entry) = archive.entry(i) else { continue };
        let _ = archive.lookup(entry.name);
        let _ = entry.meta();
        for f in entry.fixups() {
            let _ = f;
        }
        let start = entry.objects_file_off as usize;
        let Some(objects) = data.get(start..start + entry.objects_len as usize) else {
            continue;
        };
        let _ = entry.verify(objects);
        let mut copy = objects.to_vec();
        let preferred = archive.header.preferred_base + entry.objects_file_off;
        let _ = relocate(&mut copy, &entry, preferred, preferred, &externals);
        let mut copy = objects.to_vec();
        let _ = relocate(&mut copy, &entry, preferred, preferred ^ 0x1000_0000, &externals);
    }
});

//! Archive crate tests: write, read back, relocate, and reject every kind of damage.

use cds_archive::*;

fn meta(origin: &str) -> ModuleMeta {
    ModuleMeta {
        origin: origin.into(),
        is_package: false,
        source_mtime_ns: 123,
        source_size: 456,
        source_digest: [1; 32],
        search: vec![SearchEntry { path: "/lib".into(), state: PathState::Dir { mtime_ns: 7 } }],
    }
}

/// A module of three 16-byte "objects": object 0 points at object 1 (internal) and at external
/// 0; object 1 points at object 2; object 2 holds a fix-up slot.
fn module(name: &str, b: &mut ArchiveBuilder) -> ModuleInput {
    let ext = b.external(External { kind: 1, arg: -3 }, 0xdead_beef);
    let mut objects = vec![0u8; 48];
    objects[0..8].copy_from_slice(&16u64.to_ne_bytes());
    objects[8..16].copy_from_slice(&0xdead_beefu64.to_ne_bytes());
    objects[16..24].copy_from_slice(&32u64.to_ne_bytes());
    objects[40..48].copy_from_slice(name.len().to_ne_bytes().as_slice());
    ModuleInput {
        name: name.into(),
        meta: meta(&format!("/lib/{name}.py")),
        objects,
        root: 0,
        cold: 48,
        run_once: 48,
        relocs: vec![
            Reloc { slot: 0, target: RelocTarget::Internal },
            Reloc { slot: 8, target: RelocTarget::External(ext) },
            Reloc { slot: 16, target: RelocTarget::Internal },
        ],
        fixups: vec![Fixup { slot: 32, kind: FixupKind::FrozenSet }, Fixup { slot: 40, kind: FixupKind::FrozenDict }],
    }
}

/// Makes the module's objects from `at` on its run-once objects, with no cold objects.
fn run_once_from(m: &mut ModuleInput, at: u64) {
    (m.cold, m.run_once) = (at, at);
}

/// An archive of `module`s named `names`, each with its objects from `run_once` on run-once,
/// their run-once parts pooled.
fn pooled(names: &[&str], run_once: u64) -> Vec<u8> {
    let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
    for name in names {
        let mut m = module(name, &mut b);
        run_once_from(&mut m, run_once);
        b.add_module(m).unwrap();
    }
    b.pool_run_once(true);
    b.build().unwrap().0
}

/// A module's three parts, copied out of the archive's bytes (to verify or relocate them).
fn parts_of(bytes: &[u8], e: &Entry) -> [Vec<u8>; 3] {
    e.parts_in(bytes).unwrap().map(<[u8]>::to_vec)
}

/// The module's parts as `Parts`, each at its address for an archive mapped at `base`.
fn parts_at<'p>(parts: &'p mut [Vec<u8>; 3], e: &Entry, base: u64) -> Parts<&'p mut [u8]> {
    let [a, b, c] = parts;
    Parts::new(
        (&mut a[..], base + e.objects_file_off),
        (&mut b[..], base + e.cold_file_off),
        (&mut c[..], base + e.run_once_file_off),
    )
}

/// `Entry::verify` on a module's bytes as the archive holds them.
fn verify_in(bytes: &[u8], e: &Entry) -> Result<(), FormatError> {
    let mut parts = parts_of(bytes, e);
    e.verify(&parts_at(&mut parts, e, 0).view())
}

const BASE: u64 = 0x2000_0000_0000;

fn sample() -> Vec<u8> {
    let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
    for name in ["zeta", "alpha", "mid.sub", "mid"] {
        // Two modules share the first letter: one interned-strings entry for both.
        b.intern_number(&name.as_bytes()[..1]).unwrap();
        let m = module(name, &mut b);
        b.add_module(m).unwrap();
    }
    for (k, v) in KEYED {
        b.add_keyed(k.to_vec(), v.to_vec()).unwrap();
    }
    b.build().unwrap().0
}

/// The sample's keyed records (added out of key order; one key is a prefix of another).
const KEYED: [(&[u8], &[u8]); 3] = [(b"pattern-b", b"value two"), (b"pattern", b"v1"), (b"", b"")];

#[test]
fn round_trip_and_lookup() {
    let bytes = sample();
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(a.module_count(), 4);
    assert_eq!(a.header.fingerprint, [7; 32]);
    assert_eq!(a.producer(), "test producer");
    assert_eq!(a.externals(), vec![External { kind: 1, arg: -3 }]);
    let names: Vec<_> = a.entries().unwrap().iter().map(|e| e.name.to_owned()).collect();
    assert_eq!(names, ["alpha", "mid", "mid.sub", "zeta"]);
    for n in ["alpha", "mid", "mid.sub", "zeta"] {
        let e = a.lookup(n).unwrap().unwrap();
        assert_eq!(e.name, n);
        assert_eq!(e.meta().unwrap(), meta(&format!("/lib/{n}.py")));
        verify_in(&bytes, &e).unwrap();
    }
    for n in ["", "a", "mid.", "zz", "alpha\0"] {
        assert!(a.lookup(n).unwrap().is_none(), "{n:?} found");
    }
    // One entry per distinct key, numbered in order of first use, stored as given.
    assert_eq!(a.header.intern_count, 3);
    let strings: Vec<&[u8]> = (0..3).map(|n| a.interned(n).unwrap()).collect();
    assert_eq!(strings, [b"z", b"a", b"m"]);
    assert_eq!(a.interned(3).unwrap_err(), FormatError::BadString { number: 3 });
}

#[test]
fn what_a_loader_reads_once_lies_behind_the_names_in_dump_order() {
    let bytes = sample();
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    let h = &a.header;
    // Modules' metadata, bitmaps and fix-ups in the order they were added, after every name.
    let order = a.read_once_order();
    let names: Vec<&str> = order.iter().map(|&(_, i)| a.entry(i).unwrap().name).collect();
    assert_eq!(names, ["zeta", "alpha", "mid.sub", "mid"]);
    let name_ends = (0..4).map(|i| {
        let e = a.entry(i).unwrap();
        let at = e.name.as_ptr() as usize - bytes.as_ptr() as usize;
        (at + e.name.len()) as u64
    });
    let first = order[0].0;
    assert!(name_ends.max().unwrap() <= first && first < h.blob_off + h.blob_len);
    for (&(off, i), next) in order.iter().zip(order.iter().skip(1).map(|o| o.0).chain([h.blob_off + h.blob_len])) {
        assert_eq!(a.entry(i).unwrap().read_once_off, off);
        assert!(off < next);
    }
    // The strings below n: their records, and their bytes up to where string n's begin.
    let (start, end) = (h.strings_off, h.strings_off + h.strings_len);
    let records_end = start + 3 * 16;
    assert_eq!(a.strings_used_below(0), [(start, start), (records_end, records_end)]);
    let mut last = records_end;
    for n in 1..3u32 {
        let [records, texts] = a.strings_used_below(n);
        assert_eq!(records, (start, start + 16 * n as u64));
        let nth = a.interned(n).unwrap().as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(texts, (records_end, nth as u64));
        assert!(texts.1 > last);
        last = texts.1;
    }
    for n in [3, 4, u32::MAX] {
        assert_eq!(a.strings_used_below(n), [(start, records_end), (records_end, end)]);
    }
    // A record that lies stays inside the section.
    let mut b = bytes.clone();
    b[start as usize + 16..start as usize + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    let a = Archive::parse(&b, b.len() as u64).unwrap();
    assert_eq!(a.strings_used_below(1)[1], (records_end, end));
}

#[test]
fn run_once_parts_are_pooled_in_a_region_of_their_own_when_asked() {
    let layout = [("a", 16u64, 48usize), ("b", 32, 32 + 5000), ("c", 16, 16 + 9000), ("d", 48, 48), ("e", 0, 64)];
    for pooled in [false, true] {
        let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
        for (name, run_once, len) in layout {
            let mut m = module(name, &mut b);
            m.objects.resize(len, 0);
            run_once_from(&mut m, run_once);
            if run_once == 0 {
                m.relocs.clear();
                m.fixups.clear();
            }
            b.add_module(m).unwrap();
        }
        b.pool_run_once(pooled);
        let bytes = b.build().unwrap().0;
        let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
        let h = &a.header;
        assert_eq!(h.run_once_len > 0, pooled);
        assert_eq!((h.run_once_off % PAGE_SIZE, h.run_once_len % PAGE_SIZE), (0, 0));
        let region = (h.objects_off + h.run_once_off, h.objects_off + h.run_once_off + h.run_once_len);
        let mut run_once_parts = Vec::new();
        for (name, run_once, len) in layout {
            let e = a.lookup(name).unwrap().unwrap();
            assert_eq!((e.run_once, e.objects_len), (run_once, len as u64), "{name}");
            verify_in(&bytes, &e).unwrap();
            let [first, _, ro] = e.part_ranges();
            assert!(
                !pooled || first.1 <= region.0 || first.0 == first.1,
                "{name}: objects before the run-once ones inside the region"
            );
            if ro.0 < ro.1 {
                assert_eq!(e.pooled(), pooled, "{name}");
                if pooled {
                    assert!(region.0 <= ro.0 && ro.1 <= region.1, "{name}");
                    let pages = ((ro.0 - region.0) / PAGE_SIZE, (ro.1 - region.0).div_ceil(PAGE_SIZE));
                    assert_eq!(e.run_once_pages, Some(pages), "{name}");
                    run_once_parts.push(ro);
                } else {
                    assert_eq!(ro.0, first.1, "{name}: the run-once part follows the rest");
                }
            } else {
                assert!(!e.pooled(), "{name}");
            }
        }
        // Pooled back to back, in list order, from the region's first page; each entry counts
        // the parts on the pages where its own begins and ends.
        if pooled {
            assert_eq!(run_once_parts[0].0, region.0);
            for w in run_once_parts.windows(2) {
                assert_eq!(w[1].0, w[0].1.next_multiple_of(OBJECT_ALIGN));
            }
            let on_page =
                |page: u64| run_once_parts.iter().filter(|p| p.0 < page + PAGE_SIZE && page < p.1).count() as u32;
            for (name, _, _) in layout {
                let e = a.lookup(name).unwrap().unwrap();
                let [_, _, (start, end)] = e.part_ranges();
                if start < end {
                    let (first, last) = (start / PAGE_SIZE * PAGE_SIZE, (end - 1) / PAGE_SIZE * PAGE_SIZE);
                    assert_eq!((e.first_page_parts, e.last_page_parts), (on_page(first), on_page(last)), "{name}");
                }
            }
        }
    }
    // A run-once offset past the module, or misaligned, is refused when added.
    let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
    for bad in [49, 8] {
        let mut m = module("x", &mut b);
        run_once_from(&mut m, bad);
        assert_eq!(b.add_module(m).unwrap_err(), FormatError::OutOfBounds("run-once objects"));
    }
}

#[test]
fn keyed_records_round_trip_and_miss_cleanly() {
    let bytes = sample();
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(a.header.keyed_count, 3);
    for (k, v) in KEYED {
        assert_eq!(a.keyed(k).unwrap(), Some(v));
    }
    for k in [&b"patter"[..], b"pattern-c", b"\xff", b"pattern-b\0"] {
        assert_eq!(a.keyed(k).unwrap(), None);
    }
    // The first value added under a key is kept.
    let mut b = ArchiveBuilder::new([7; 32], "p", BASE);
    b.add_keyed(b"k".to_vec(), b"first".to_vec()).unwrap();
    b.add_keyed(b"k".to_vec(), b"second".to_vec()).unwrap();
    assert_eq!(b.keyed_count(), 1);
    let bytes = b.build().unwrap().0;
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(a.keyed(b"k").unwrap(), Some(&b"first"[..]));
}

#[test]
fn damaged_keyed_records_never_yield_a_wrong_value() {
    let good = sample();
    let a = Archive::parse(&good, good.len() as u64).unwrap();
    let (off, len) = (a.header.keyed_off as usize, a.header.keyed_len as usize);
    for at in off..off + len {
        for bit in 0..8 {
            let mut b = good.clone();
            b[at] ^= 1 << bit;
            let a = Archive::parse(&b, b.len() as u64).unwrap();
            for (k, v) in KEYED {
                // A damaged record is an error or a miss, never another value.
                if let Ok(Some(got)) = a.keyed(k) {
                    assert_eq!(got, v, "byte {at} bit {bit}");
                }
            }
        }
    }
    // A table larger than its section is refused at open.
    let mut bytes = good.clone();
    bytes[148..152].copy_from_slice(&1000u32.to_le_bytes());
    assert!(fuzzing::fix_checksums(&mut bytes));
    assert_eq!(
        Archive::parse(&bytes, bytes.len() as u64).unwrap_err(),
        FormatError::OutOfBounds("keyed records table size")
    );
}

#[test]
fn damaged_interned_strings_are_refused() {
    let good = sample();
    let a = Archive::parse(&good, good.len() as u64).unwrap();
    let (off, len) = (a.header.strings_off as usize, a.header.strings_len as usize);
    // Every byte of the strings section flipped: the string it belongs to (or whose record it
    // is) is refused, every other one still reads; nothing else of the archive is affected.
    for at in off..off + len {
        let mut b = good.clone();
        b[at] ^= 0x41;
        let a = Archive::parse(&b, b.len() as u64).unwrap();
        let ok = (0..3).filter(|&n| a.interned(n).is_ok()).count();
        assert!(ok >= 2, "byte {at}: {ok} strings still read");
        let padding = (0..3).all(|n| a.interned(n).is_ok());
        if padding {
            // Alignment padding between strings: no string covers it.
            assert!(at >= off + 48, "record byte {at} flipped without effect");
        }
    }
    // A table larger than its section is refused at open.
    let mut bytes = good.clone();
    bytes[124..128].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(fuzzing::fix_checksums(&mut bytes));
    assert_eq!(
        Archive::parse(&bytes, bytes.len() as u64).unwrap_err(),
        FormatError::OutOfBounds("interned strings table size")
    );
}

#[test]
fn relocation_at_preferred_base_writes_only_externals_that_differ() {
    let bytes = sample();
    let (meta_part, _) =
        bytes.split_at(Archive::parse(&bytes, bytes.len() as u64).unwrap().header.objects_off as usize);
    let a = Archive::parse(meta_part, bytes.len() as u64).unwrap();
    let e = a.lookup("mid").unwrap().unwrap();
    let module_addr = BASE + e.objects_file_off;
    let mut parts = parts_of(&bytes, &e);
    assert!(parts[1].is_empty() && parts[2].is_empty(), "the sample's modules have no cold or run-once objects");
    let relocate_at = |parts: &mut [Vec<u8>; 3], actual: u64, map: &ExternalMap| {
        relocate(&mut parts_at(parts, &e, actual), &e, BASE, actual, map)
    };
    // Same external address as the dumper had: nothing is written.
    let same = ExternalMap::new(&a.external_addrs(), &[0xdead_beef]);
    let st = relocate_at(&mut parts, BASE, &same).unwrap();
    assert_eq!(st, RelocStats { relocs: 3, written: 0 });
    // Another external address: only that slot changes.
    let other = ExternalMap::new(&a.external_addrs(), &[0x1234]);
    let st = relocate_at(&mut parts, BASE, &other).unwrap();
    assert_eq!(st.written, 1);
    assert_eq!(u64::from_ne_bytes(parts[0][8..16].try_into().unwrap()), 0x1234);
    // Mapped elsewhere: internal pointers move by the difference (the external slot, already
    // holding this process's address, is no longer a dumped address: relocate from a clean copy).
    let mut parts = parts_of(&bytes, &e);
    let st = relocate_at(&mut parts, BASE + 0x10_0000, &other).unwrap();
    let moved = module_addr + 0x10_0000;
    assert_eq!(st.written, 3);
    assert_eq!(u64::from_ne_bytes(parts[0][0..8].try_into().unwrap()), moved + 16);
    assert_eq!(u64::from_ne_bytes(parts[0][16..24].try_into().unwrap()), moved + 32);
}

#[test]
fn relocation_moves_pointers_into_a_pooled_run_once_part_with_it() {
    // Objects 1 and 2 are run-once; object 0 (kept) points at object 1: refused by a loader's
    // validation, but relocation moves both kinds of pointer the same way.
    let bytes = pooled(&["m"], 16);
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    let e = a.lookup("m").unwrap().unwrap();
    assert!(e.pooled());
    let mut copied = parts_of(&bytes, &e);
    let ro_addr = BASE + e.run_once_file_off;
    // As laid out: object 0's pointer and object 1's (the run-once part's first word) lead
    // into the run-once part.
    assert_eq!(u64::from_ne_bytes(copied[0][0..8].try_into().unwrap()), ro_addr);
    assert_eq!(u64::from_ne_bytes(copied[2][0..8].try_into().unwrap()), ro_addr + 16);
    let map = ExternalMap::new(&a.external_addrs(), &[0xdead_beef]);
    let actual = BASE + 0x40_0000;
    let mut parts = parts_at(&mut copied, &e, actual);
    let st = relocate(&mut parts, &e, BASE, actual, &map).unwrap();
    assert_eq!(st.written, 2);
    assert_eq!(parts.word(0), Some(actual + e.run_once_file_off));
    assert_eq!(parts.offset_of(parts.word(16).unwrap()), Some(32));
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = sample();
    for n in 0..bytes.len() {
        assert!(Archive::parse(&bytes[..n], n as u64).is_err(), "truncated to {n} accepted");
    }
}

#[test]
fn foreign_version_and_magic_are_named() {
    let mut bytes = sample();
    bytes[8] = 99;
    assert!(matches!(Archive::parse(&bytes, bytes.len() as u64), Err(FormatError::Version { found: 99, .. })));
    bytes[0] = b'X';
    assert_eq!(Archive::parse(&bytes, bytes.len() as u64).unwrap_err(), FormatError::BadMagic);
}

/// Flip every bit of the header and index, and sample bits of the rest: the damage is either
/// caught by a check or lands in bytes that no check covers by design (padding).
#[test]
fn bit_flips_are_caught() {
    let clean = sample();
    let hdr = Archive::parse(&clean, clean.len() as u64).unwrap().header;
    let mut caught = 0;
    for byte in 0..clean.len() {
        let sampled = byte < hdr.blob_off as usize + hdr.blob_len as usize || byte % 7 == 0;
        if !sampled {
            continue;
        }
        for bit in 0..8 {
            let mut b = clean.clone();
            b[byte] ^= 1 << bit;
            if damaged(&b) {
                caught += 1;
            } else {
                // Undetected damage must be in padding: between the blob and the objects
                // section or between/after modules,
                let in_blob_pad = byte >= (hdr.blob_off + hdr.blob_len) as usize && byte < hdr.objects_off as usize;
                let in_obj_pad = byte >= hdr.objects_off as usize && !inside_module(&clean, byte);
                assert!(in_blob_pad || in_obj_pad, "flip of byte {byte} bit {bit} undetected");
            }
        }
    }
    assert!(caught > 1000);
}

fn inside_module(bytes: &[u8], byte: usize) -> bool {
    let a = Archive::parse(bytes, bytes.len() as u64).unwrap();
    a.entries()
        .unwrap()
        .iter()
        .any(|e| e.part_ranges().iter().any(|&(start, end)| (start..end).contains(&(byte as u64))))
}

fn damaged(b: &[u8]) -> bool {
    let a = match Archive::parse(b, b.len() as u64) {
        Ok(a) => a,
        Err(_) => return true,
    };
    let entries = match a.entries() {
        Ok(e) => e,
        Err(_) => return true,
    };
    if a.externals() != vec![External { kind: 1, arg: -3 }] {
        return true;
    }
    if KEYED.iter().any(|&(k, v)| a.keyed(k) != Ok(Some(v))) {
        return true;
    }
    for e in entries {
        let mut copied = parts_of(b, &e);
        let base = a.header.preferred_base;
        let map = ExternalMap::new(&a.external_addrs(), &[1]);
        let mut parts = parts_at(&mut copied, &e, base);
        if e.verify(&parts.view()).is_err()
            || e.fixups().any(|f| f.is_err())
            || e.meta().is_err()
            || relocate(&mut parts, &e, base, base, &map).is_err()
        {
            return true;
        }
    }
    false
}

#[test]
fn bad_relocations_are_refused_before_writing() {
    let mut b = ArchiveBuilder::new([0; 32], "p", BASE);
    let mut m = module("m", &mut b);
    m.relocs.push(Reloc { slot: 44, target: RelocTarget::Internal });
    assert!(b.add_module(m).is_err(), "misaligned slot accepted");
    let mut m = module("m", &mut b);
    m.objects[16..24].copy_from_slice(&4096u64.to_ne_bytes());
    assert!(b.add_module(m).is_err(), "target outside module accepted");
    let mut m = module("m", &mut b);
    m.relocs.push(Reloc { slot: 24, target: RelocTarget::External(9) });
    assert!(b.add_module(m).is_err(), "unknown external accepted");
    let mut m = module("m", &mut b);
    m.relocs.push(Reloc { slot: 24, target: RelocTarget::External(0) });
    assert!(b.add_module(m).is_err(), "external slot without the external's address accepted");
}

#[test]
fn atomic_write_replaces_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.img");
    std::fs::write(&path, b"old").unwrap();
    let mut b = ArchiveBuilder::new([1; 32], "p", BASE);
    let m = module("m", &mut b);
    b.add_module(m).unwrap();
    let st = b.write_to(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, st.file_size);
    Archive::parse(&bytes, bytes.len() as u64).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file left behind");
}

#[test]
fn largest_module_is_the_largest_objects_length_and_never_past_the_section() {
    let mut b = ArchiveBuilder::new([3; 32], "p", BASE);
    for (name, extra) in [("small", 0usize), ("big", 4096 + 32), ("medium", 512)] {
        let mut m = module(name, &mut b);
        m.objects.resize(m.objects.len() + extra, 0);
        let end = m.objects.len() as u64;
        run_once_from(&mut m, end);
        b.add_module(m).unwrap();
    }
    let bytes = b.build().unwrap().0;
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    let lens: Vec<u64> = (0..3).map(|i| a.entry(i).unwrap().objects_len).collect();
    assert_eq!(a.largest_module(), *lens.iter().max().unwrap());
    assert_eq!(a.largest_module(), 48 + 4096 + 32);
    // An index entry that claims more than the whole objects section is capped at the section.
    let big = (0..3).find(|&i| a.entry(i).unwrap().name == "big").unwrap();
    let at = a.header.index_off as usize + big as usize * ENTRY_SIZE + 40; // objects_len (docs/format.md)
    let mut damaged = bytes.clone();
    damaged[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let d = Archive::parse(&damaged, damaged.len() as u64).unwrap();
    assert!(d.entry(big).is_err());
    assert_eq!(d.largest_module(), d.header.objects_len);
}

#[test]
fn entries_and_regions_that_break_the_two_part_rules_are_refused() {
    // Field offsets from docs/format.md: the header's run-once region, an entry's parts.
    const H_REGION_OFF: usize = 168;
    const H_REGION_LEN: usize = 176;
    const E_OBJECTS_OFF: usize = 32;
    const E_RUN_ONCE_PART_OFF: usize = 72;
    let clean = pooled(&["a", "b"], 16);
    let a = Archive::parse(&clean, clean.len() as u64).unwrap();
    let h = a.header.clone();
    let entry_at = |i: u32| h.index_off as usize + i as usize * ENTRY_SIZE;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let put = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let e0 = entry_at(0);
    let (first0, ro0) = (u64_at(&clean, e0 + E_OBJECTS_OFF), u64_at(&clean, e0 + E_RUN_ONCE_PART_OFF));
    let ro1 = u64_at(&clean, entry_at(1) + E_RUN_ONCE_PART_OFF);
    let cases: Vec<(&str, usize, u64, FormatError)> = vec![
        (
            "run-once part over the first part",
            e0 + E_RUN_ONCE_PART_OFF,
            first0,
            FormatError::OutOfBounds("module objects"),
        ),
        ("first part inside the region", e0 + E_OBJECTS_OFF, ro0, FormatError::OutOfBounds("module objects")),
        (
            "run-once part across the region's start",
            e0 + E_RUN_ONCE_PART_OFF,
            h.run_once_off - 16,
            FormatError::OutOfBounds("run-once objects"),
        ),
        (
            "run-once part past the section",
            e0 + E_RUN_ONCE_PART_OFF,
            h.objects_len - 16,
            FormatError::OutOfBounds("module objects"),
        ),
        ("misaligned run-once part", e0 + E_RUN_ONCE_PART_OFF, ro0 + 8, FormatError::OutOfBounds("module objects")),
    ];
    for (label, at, value, want) in cases {
        let mut b = clean.clone();
        put(&mut b, at, value);
        assert!(fuzzing::fix_checksums(&mut b), "{label}");
        let a = Archive::parse(&b, b.len() as u64).unwrap();
        assert_eq!(a.entry(0).unwrap_err(), want, "{label}");
    }
    // Two modules claiming the same run-once part is allowed by the index (each part's bytes
    // are checked against its own checksum when it is loaded); the loader counts both.
    let mut b = clean.clone();
    put(&mut b, e0 + E_RUN_ONCE_PART_OFF, ro1);
    assert!(fuzzing::fix_checksums(&mut b));
    assert!(Archive::parse(&b, b.len() as u64).unwrap().entry(0).unwrap().pooled());
    // A region that is not whole pages, or runs past the objects section.
    for (at, value) in [(H_REGION_OFF, h.run_once_off + 16), (H_REGION_LEN, h.run_once_len + 4096), (H_REGION_LEN, 100)]
    {
        let mut b = clean.clone();
        put(&mut b, at, value);
        assert!(fuzzing::fix_checksums(&mut b));
        assert_eq!(Archive::parse(&b, b.len() as u64).unwrap_err(), FormatError::OutOfBounds("run-once region"));
    }
}

#[test]
fn cold_parts_are_pooled_in_the_cold_region_and_relocated_with_the_module() {
    // Object 0 points at object 1 (cold) and external 0; object 1 is cold and points at
    // object 2 (run-once): relocation moves pointers into every part alike.
    let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
    for name in ["a", "b", "c"] {
        let mut m = module(name, &mut b);
        (m.cold, m.run_once) = if name == "b" { (48, 48) } else { (16, 32) };
        b.add_module(m).unwrap();
    }
    b.pool_run_once(true);
    let bytes = b.build().unwrap().0;
    let a = Archive::parse(&bytes, bytes.len() as u64).unwrap();
    let h = a.header.clone();
    assert!(h.cold_len > 0 && h.cold_off.is_multiple_of(PAGE_SIZE) && h.cold_len.is_multiple_of(PAGE_SIZE));
    let (cold_region, ro_region) = (h.cold_region(), h.run_once_region());
    assert!(cold_region.1 <= ro_region.0, "the cold region comes before the run-once region");
    let in_file = |(s, e): (u64, u64)| (h.objects_off + s, h.objects_off + e);
    let (cold_region, ro_region) = (in_file(cold_region), in_file(ro_region));
    let mut colds = Vec::new();
    for name in ["a", "b", "c"] {
        let e = a.lookup(name).unwrap().unwrap();
        verify_in(&bytes, &e).unwrap();
        let [first, cold, ro] = e.part_ranges();
        assert!(first.1 <= cold_region.0, "{name}: first part before the regions");
        if name == "b" {
            assert_eq!((e.cold, cold.0 == cold.1), (48, true));
            continue;
        }
        assert_eq!((e.cold, e.run_once, cold.1 - cold.0), (16, 32, 16));
        assert!(cold_region.0 <= cold.0 && cold.1 <= cold_region.1, "{name}: cold part in the cold region");
        assert!(ro_region.0 <= ro.0 && ro.1 <= ro_region.1, "{name}: run-once part in the run-once region");
        colds.push(cold);
        // Laid out for the preferred base: object 0 points into the cold part.
        let copied = parts_of(&bytes, &e);
        assert_eq!(u64::from_ne_bytes(copied[0][0..8].try_into().unwrap()), BASE + e.cold_file_off);
        let mut copied = copied;
        let map = ExternalMap::new(&a.external_addrs(), &[0xdead_beef]);
        let actual = BASE + 0x40_0000;
        let mut parts = parts_at(&mut copied, &e, actual);
        assert_eq!(relocate(&mut parts, &e, BASE, actual, &map).unwrap().written, 2);
        assert_eq!(parts.word(0), Some(actual + e.cold_file_off));
        assert_eq!(parts.offset_of(parts.word(16).unwrap()), Some(32), "cold object points into the run-once part");
    }
    // Back to back, in list order, from the region's first byte.
    assert_eq!(colds[0].0, cold_region.0);
    assert_eq!(colds[1].0, colds[0].1.next_multiple_of(OBJECT_ALIGN));

    // Damaged layouts are refused (field offsets from docs/format.md).
    const H_COLD_OFF: usize = 184;
    const E_COLD_OFF: usize = 88;
    const E_COLD_PART_OFF: usize = 96;
    const E_OBJECTS_OFF: usize = 32;
    let idx = |name: &str| (0..3).find(|&i| a.entry(i).unwrap().name == name).unwrap();
    let entry_at = |name: &str| h.index_off as usize + idx(name) as usize * ENTRY_SIZE;
    let put = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let ea = entry_at("a");
    let first_a = a.lookup("a").unwrap().unwrap().objects_file_off - h.objects_off;
    let cases: Vec<(&str, usize, u64, FormatError)> = vec![
        (
            "cold part outside the cold region",
            ea + E_COLD_PART_OFF,
            first_a + 16,
            FormatError::OutOfBounds("cold objects"),
        ),
        ("cold part over the first part", ea + E_COLD_PART_OFF, first_a, FormatError::OutOfBounds("module objects")),
        (
            "cold part in the run-once region",
            ea + E_COLD_PART_OFF,
            h.run_once_off,
            FormatError::OutOfBounds("cold objects"),
        ),
        ("cold objects after the run-once ones", ea + E_COLD_OFF, 48, FormatError::OutOfBounds("cold objects")),
        ("misaligned cold objects", ea + E_COLD_OFF, 8, FormatError::OutOfBounds("cold objects")),
        ("first part in the cold region", ea + E_OBJECTS_OFF, h.cold_off, FormatError::OutOfBounds("module objects")),
    ];
    for (what, at, v, want) in cases {
        let mut d = bytes.clone();
        put(&mut d, at, v);
        assert!(fuzzing::fix_checksums(&mut d), "{what}");
        let da = Archive::parse(&d, d.len() as u64).unwrap();
        assert_eq!(da.entry(idx("a")).unwrap_err(), want, "{what}");
    }
    // A cold region over the run-once region is refused with the header.
    let mut d = bytes.clone();
    put(&mut d, H_COLD_OFF, h.run_once_off);
    assert!(fuzzing::fix_checksums(&mut d));
    assert_eq!(Archive::parse(&d, d.len() as u64).unwrap_err(), FormatError::OutOfBounds("cold region"));
    // The builder refuses cold objects after the run-once ones.
    let mut b = ArchiveBuilder::new([7; 32], "test producer", BASE);
    let mut m = module("x", &mut b);
    (m.cold, m.run_once) = (32, 16);
    assert_eq!(b.add_module(m).unwrap_err(), FormatError::OutOfBounds("cold objects"));
}

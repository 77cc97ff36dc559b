//! Inputs that matter to the `archive` fuzz target (fuzz/fuzz_targets/archive.rs), replayed by
//! `cargo test` on the stable toolchain. `fuzzing::exercise` is what the fuzz target does with one
//! input: everything a reader does with an archive. It must return (errors are fine) for any bytes.
//!
//! Add a crashing input the fuzzer finds here, as bytes or as a patch of `sample()`, next to the
//! fix (fuzz/README.md).

use cds_archive::fuzzing::exercise;
use cds_archive::*;

const BASE: u64 = 0x2000_0000_0000;

/// Two modules with internal and external pointers, a fix-up, an interned string and metadata.
fn sample() -> Vec<u8> {
    let mut b = ArchiveBuilder::new([3; 32], "fuzz producer", BASE);
    for name in ["b.sub", "a"] {
        let ext = b.external(External { kind: 1, arg: 0 }, 0x5555_0000_1000);
        let mut objects = vec![0u8; 64];
        objects[0..8].copy_from_slice(&16u64.to_ne_bytes());
        objects[8..16].copy_from_slice(&0x5555_0000_1000u64.to_ne_bytes());
        b.intern_number(b"shared").unwrap();
        let m = ModuleInput {
            name: name.into(),
            meta: ModuleMeta {
                origin: format!("/lib/{name}.py"),
                is_package: false,
                source_mtime_ns: 1,
                source_size: 2,
                source_digest: [1; 32],
                search: vec![SearchEntry { path: "/lib".into(), state: PathState::Dir { mtime_ns: 3 } }],
            },
            objects,
            root: 0,
            cold: 0,
            run_once: 0,
            relocs: vec![
                Reloc { slot: 0, target: RelocTarget::Internal },
                Reloc { slot: 8, target: RelocTarget::External(ext) },
            ],
            fixups: vec![Fixup { slot: 16, kind: FixupKind::FrozenSet }],
        };
        b.add_module(m).unwrap();
    }
    b.build().unwrap().0
}

/// What the fuzz target does with one input.
fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Rewrites the header checksum of an archive whose section fields are intact (offsets from
/// docs/format.md), so that a patched field is what the reader rejects.
fn fix_header_crc(b: &mut [u8]) {
    let externals = u64_at(b, 80)..u64_at(b, 80) + u32_at(b, 76) * EXTERNAL_SIZE;
    let producer = u64_at(b, 88)..u64_at(b, 88) + u32_at(b, 120);
    let mut c = crc32fast::Hasher::new();
    c.update(&b[..144]);
    c.update(&b[externals]);
    c.update(&b[producer]);
    let crc = c.finalize();
    b[144..148].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn sample_passes_every_check() {
    let b = sample();
    let a = Archive::parse(&b, b.len() as u64).unwrap();
    for e in a.entries().unwrap() {
        let [first, cold, ro] = e.parts_in(&b).unwrap();
        e.verify(&Parts::new((first, 0), (cold, 0), (ro, 0))).unwrap();
        assert!(e.fixups().all(|f| f.is_ok()));
    }
    assert_eq!(a.interned(0).unwrap(), b"shared");
    exercise(&b);
}

/// Builds an input from its length and its non-zero runs (offset, hex bytes).
fn sparse(len: usize, runs: &[(usize, &str)]) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for &(at, hex) in runs {
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            b[at + i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
    }
    b
}

/// Found by the fuzz target (with fuzz/archive.dict) against the crate before fbc3fd3, minimized,
/// then given the file size and checksums the target's second pass computes: two modules, a
/// preferred base of 0xffff_ffff_ffff_f000. The target panicked computing the module's address
/// (`preferred_base + objects_file_off`: "attempt to add with overflow"). It is a version-1
/// archive, which version 2 refuses first; `preferred_base_that_would_overflow_is_refused`
/// keeps the overflow itself covered.
#[test]
fn found_preferred_base_overflow() {
    let b = sparse(
        5376,
        &[
            (0, "505943445341520a010000008000000052078fa30ab3ce01e61fc8e250aa47f2ee9a414a4971951631476bffc15c747c00f0ffffffffffff0015"),
            (64, "80"),
            (72, "020000000a"),
            (81, "01"),
            (88, "f001"),
            (96, "7201"),
            (105, "10"),
            (113, "05"),
            (120, "5400000092caa0325400000003000000570000006f000000c60000000b000000d100000002"),
            (168, "9e02"),
            (184, "2b74ee068ed5bdd3e100000007000000e80000006e000000560100000c0000006201000002000000a002"),
            (232, "cf02"),
            (252, "755a8e17"),
            (1402, "505943445341520a010000008000000052078fa30ab3ce01e61fc8e250aa47f2ee"),
            (2699, "03"),
        ],
    );
    assert_eq!(
        Archive::parse(&b, b.len() as u64).unwrap_err(),
        FormatError::Version { found: 1, expected: FORMAT_VERSION }
    );
    exercise(&b);
}

/// A preferred base near the top of the address space, with valid checksums, made
/// `preferred_base + objects_file_off` (the fuzz target's and the loader's module address)
/// overflow. `Header::parse` must refuse any base whose file would not fit in user space.
#[test]
fn preferred_base_that_would_overflow_is_refused() {
    for base in [0xffff_ffff_ffff_f000u64, 0xffff_ffff_ffff_e000, 1 << 47, 0] {
        let mut b = sample();
        b[48..56].copy_from_slice(&base.to_le_bytes());
        fix_header_crc(&mut b);
        assert_eq!(
            Archive::parse(&b, b.len() as u64).unwrap_err(),
            FormatError::OutOfBounds("preferred base address"),
            "base {base:#x}"
        );
        exercise(&b);
    }
}

/// Every header byte flipped, with the header checksum made to match: each is either accepted or
/// refused with an error, and nothing behind the header check panics.
#[test]
fn every_header_byte_flipped_with_valid_checksum() {
    let good = sample();
    for at in 0..144 {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[at] ^= mask;
            // Only when the fields the checksum covers still point inside the file.
            let fits = |off: usize, len: usize| off.checked_add(len).is_some_and(|end| end <= b.len());
            if fits(u64_at(&b, 80), u32_at(&b, 76).saturating_mul(EXTERNAL_SIZE))
                && fits(u64_at(&b, 88), u32_at(&b, 120))
            {
                fix_header_crc(&mut b);
            }
            exercise(&b);
        }
    }
}

/// Every prefix of the file is refused (its size no longer matches the header).
#[test]
fn every_truncation_is_refused() {
    let b = sample();
    for n in 0..b.len() {
        assert!(Archive::parse(&b[..n], n as u64).is_err(), "prefix {n} accepted");
        exercise(&b[..n]);
    }
}

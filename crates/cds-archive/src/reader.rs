//! Reads an archive from bytes. Opening checks only the fixed-size header (O(1) in the archive's
//! size); an index entry is checked when it is looked at, a module's data when it is loaded.

use crate::error::FormatError;
use crate::layout::*;
use crate::meta::ModuleMeta;
use crate::parts::Parts;

/// The decoded fixed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub fingerprint: [u8; 32],
    pub preferred_base: u64,
    pub file_size: u64,
    pub index_off: u64,
    pub module_count: u32,
    pub externals_count: u32,
    pub externals_off: u64,
    pub blob_off: u64,
    pub blob_len: u64,
    pub objects_off: u64,
    pub objects_len: u64,
    pub producer_len: u32,
    /// Entries of the interned-strings table: object slots name a string by a number below
    /// this.
    pub intern_count: u32,
    pub strings_off: u64,
    pub strings_len: u64,
    /// Records of the keyed-records section (opaque keys and values, sorted by key).
    pub keyed_count: u32,
    pub keyed_off: u64,
    pub keyed_len: u64,
    /// The run-once region, as offsets into the objects section (page-aligned; empty when the
    /// archive pools no run-once objects): it holds only modules' run-once parts, so that a
    /// loader may give back a page of it once every module with objects on it has run.
    pub run_once_off: u64,
    pub run_once_len: u64,
    /// The cold region, as offsets into the objects section (page-aligned, apart from the
    /// run-once region; empty when no module has cold objects): it holds only modules' cold parts
    /// (leaf objects that nothing writes once they are in place), so that their pages stay
    /// shared between processes.
    pub cold_off: u64,
    pub cold_len: u64,
}

impl Header {
    /// Decodes and checks the header alone. `file_len` is the length of the whole file.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Header, FormatError> {
        if bytes.len() < HEADER_SIZE {
            return Err(FormatError::Truncated { needed: HEADER_SIZE as u64, have: bytes.len() as u64 });
        }
        let h = &bytes[..HEADER_SIZE];
        if h[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = rd_u32(h, H_VERSION);
        if version != FORMAT_VERSION {
            return Err(FormatError::Version { found: version, expected: FORMAT_VERSION });
        }
        if rd_u32(h, H_HEADER_SIZE) as usize != HEADER_SIZE {
            return Err(FormatError::OutOfBounds("header size"));
        }
        let hd = Header {
            format_version: version,
            fingerprint: h[H_FINGERPRINT..H_FINGERPRINT + 32].try_into().expect("32"),
            preferred_base: rd_u64(h, H_PREFERRED_BASE),
            file_size: rd_u64(h, H_FILE_SIZE),
            index_off: rd_u64(h, H_INDEX_OFF),
            module_count: rd_u32(h, H_MODULE_COUNT),
            externals_count: rd_u32(h, H_EXTERNALS_COUNT),
            externals_off: rd_u64(h, H_EXTERNALS_OFF),
            blob_off: rd_u64(h, H_BLOB_OFF),
            blob_len: rd_u64(h, H_BLOB_LEN),
            objects_off: rd_u64(h, H_OBJECTS_OFF),
            objects_len: rd_u64(h, H_OBJECTS_LEN),
            producer_len: rd_u32(h, H_PRODUCER_LEN),
            intern_count: rd_u32(h, H_INTERN_COUNT),
            strings_off: rd_u64(h, H_STRINGS_OFF),
            strings_len: rd_u64(h, H_STRINGS_LEN),
            keyed_count: rd_u32(h, H_KEYED_COUNT),
            keyed_off: rd_u64(h, H_KEYED_OFF),
            keyed_len: rd_u64(h, H_KEYED_LEN),
            run_once_off: rd_u64(h, H_RUN_ONCE_OFF),
            run_once_len: rd_u64(h, H_RUN_ONCE_LEN),
            cold_off: rd_u64(h, H_COLD_OFF),
            cold_len: rd_u64(h, H_COLD_LEN),
        };
        if hd.file_size != file_len {
            return Err(FormatError::Truncated { needed: hd.file_size, have: file_len });
        }
        // Sections in order, none overlapping, all inside the file: header, index, externals,
        // blob, keyed records, interned strings, objects (page-aligned).
        let index_end = section_end(hd.index_off, hd.module_count as u64, ENTRY_SIZE as u64, "index")?;
        let ext_end = section_end(hd.externals_off, hd.externals_count as u64, EXTERNAL_SIZE as u64, "externals")?;
        let blob_end = section_end(hd.blob_off, hd.blob_len, 1, "blob")?;
        let keyed_end = section_end(hd.keyed_off, hd.keyed_len, 1, "keyed records")?;
        let strings_end = section_end(hd.strings_off, hd.strings_len, 1, "interned strings")?;
        let obj_end = section_end(hd.objects_off, hd.objects_len, 1, "objects")?;
        let ordered = hd.index_off >= HEADER_SIZE as u64
            && hd.externals_off >= index_end
            && hd.blob_off >= ext_end
            && hd.keyed_off >= blob_end
            && hd.strings_off >= keyed_end
            && hd.objects_off >= strings_end
            && obj_end <= hd.file_size;
        if !ordered {
            return Err(FormatError::OutOfBounds("section layout"));
        }
        if !hd.objects_off.is_multiple_of(PAGE_SIZE) || !hd.preferred_base.is_multiple_of(PAGE_SIZE) {
            return Err(FormatError::OutOfBounds("section alignment"));
        }
        let region_fits = |off: u64, len: u64| {
            off.checked_add(len).is_some_and(|end| end <= hd.objects_len)
                && off.is_multiple_of(PAGE_SIZE)
                && len.is_multiple_of(PAGE_SIZE)
        };
        if !region_fits(hd.run_once_off, hd.run_once_len) {
            return Err(FormatError::OutOfBounds("run-once region"));
        }
        if !region_fits(hd.cold_off, hd.cold_len) || overlap(hd.run_once_region(), hd.cold_region()) {
            return Err(FormatError::OutOfBounds("cold region"));
        }
        // The preferred base must be an ordinary user-space address: never the null page (a
        // mapping there would make null pointers valid), never beyond 47-bit user space.
        let plausible = hd.preferred_base >= MIN_BASE
            && hd.preferred_base.checked_add(hd.file_size).is_some_and(|end| end <= MAX_BASE_END);
        if !plausible {
            return Err(FormatError::OutOfBounds("preferred base address"));
        }
        if hd.producer_len as u64 > hd.blob_len {
            return Err(FormatError::OutOfBounds("producer string"));
        }
        // Every interned string has a record in the strings section, so a reader may size its
        // own table by this count without trusting it further.
        if hd.intern_count >= MAX_INTERN_COUNT || hd.intern_count as u64 * STRING_RECORD_SIZE as u64 > hd.strings_len {
            return Err(FormatError::OutOfBounds("interned strings table size"));
        }
        if !hd.keyed_off.is_multiple_of(KEYED_ALIGN) || hd.keyed_count as u64 * KEYED_RECORD_SIZE as u64 > hd.keyed_len
        {
            return Err(FormatError::OutOfBounds("keyed records table size"));
        }
        Ok(hd)
    }

    /// The run-once region, `[start, end)` in objects-section offsets.
    pub fn run_once_region(&self) -> (u64, u64) {
        (self.run_once_off, self.run_once_off + self.run_once_len)
    }

    /// The cold region, `[start, end)` in objects-section offsets.
    pub fn cold_region(&self) -> (u64, u64) {
        (self.cold_off, self.cold_off + self.cold_len)
    }
}

/// Whether two ranges `[start, end)`, both non-empty, share a byte.
fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < a.1 && b.0 < b.1 && a.0 < b.1 && b.0 < a.1
}

fn section_end(off: u64, count: u64, size: u64, what: &'static str) -> Result<u64, FormatError> {
    count.checked_mul(size).and_then(|n| off.checked_add(n)).ok_or(FormatError::OutOfBounds(what))
}

/// A checked view of an archive's metadata: `meta` holds at least the bytes before the objects
/// section (header, index, externals, blob). The objects section itself is never read through
/// this view, so that a caller can hand the module bytes out mutably without aliasing.
#[derive(Debug, Clone)]
pub struct Archive<'a> {
    pub header: Header,
    meta: &'a [u8],
}

/// One checked index entry.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub index: u32,
    pub name: &'a str,
    /// File offset of the module's metadata, which its pointer bitmap and fix-ups follow: what
    /// a loader reads once, at the module's first import (see [`Archive::strings_used_below`]).
    pub read_once_off: u64,
    meta: &'a [u8],
    bitmap: &'a [u8],
    fixups: &'a [u8],
    /// Offset from the start of the file of the module's first object byte: of the part of its
    /// objects before the cold ones (`cold` bytes).
    pub objects_file_off: u64,
    /// The length of the module's objects, all three parts. Offsets into a module's objects
    /// (pointer bitmap, fix-ups, root, part boundaries) count the first part's bytes, then the
    /// cold part's, then the run-once part's (see [`crate::Parts`]).
    pub objects_len: u64,
    /// Offset of the root object.
    pub root: u64,
    /// Offset where its run-once objects begin (`objects_len` when it has none): nothing before
    /// it points at or past it.
    pub run_once: u64,
    /// Offset where its cold objects begin (`run_once` when it has none): leaves that nothing
    /// writes once they are in place, kept in the archive's cold region.
    pub cold: u64,
    /// Offset from the start of the file of the cold part (`run_once - cold` bytes).
    pub cold_file_off: u64,
    /// Offset from the start of the file of the run-once part (`objects_len - run_once` bytes).
    pub run_once_file_off: u64,
    /// When the run-once part lies in the archive's run-once region (see
    /// [`Header::run_once_off`]): the region's pages it touches, `[first, end)`, numbered from
    /// the region's first page.
    pub run_once_pages: Option<(u64, u64)>,
    /// How many modules' run-once parts lie on the region page where this module's begins, and
    /// on the one where it ends (this one included), as the dumper laid them out: unchecked,
    /// for deciding when a page may go back, never for reading.
    pub first_page_parts: u32,
    pub last_page_parts: u32,
    data_crc: u32,
}

impl<'a> Archive<'a> {
    pub fn parse(meta: &'a [u8], file_len: u64) -> Result<Self, FormatError> {
        let header = Header::parse(meta, file_len)?;
        if (meta.len() as u64) < header.objects_off {
            return Err(FormatError::Truncated { needed: header.objects_off, have: meta.len() as u64 });
        }
        let a = Archive { header, meta };
        // The header checksum also covers the externals table and the producer string: both are
        // read whole at open, and both are small (bounded by the kinds of externals).
        if rd_u32(meta, H_CRC) != header_crc(&meta[..HEADER_SIZE], a.externals_bytes(), a.producer_bytes()) {
            return Err(FormatError::HeaderChecksum);
        }
        Ok(a)
    }

    pub fn module_count(&self) -> u32 {
        self.header.module_count
    }

    fn blob(&self) -> &'a [u8] {
        let s = self.header.blob_off as usize;
        &self.meta[s..s + self.header.blob_len as usize]
    }

    fn producer_bytes(&self) -> &'a [u8] {
        &self.blob()[..self.header.producer_len as usize]
    }

    fn externals_bytes(&self) -> &'a [u8] {
        let s = self.header.externals_off as usize;
        &self.meta[s..s + self.header.externals_count as usize * EXTERNAL_SIZE]
    }

    /// The description of the interpreter that made the archive (for messages).
    pub fn producer(&self) -> String {
        String::from_utf8_lossy(self.producer_bytes()).into_owned()
    }

    /// The externals table, in index order.
    pub fn externals(&self) -> Vec<External> {
        self.externals_bytes()
            .chunks_exact(EXTERNAL_SIZE)
            .map(|c| External { kind: rd_u32(c, 0), arg: rd_u64(c, 8) as i64 })
            .collect()
    }

    /// The address each external had in the dumping process (what archive slots hold).
    pub fn external_addrs(&self) -> Vec<u64> {
        self.externals_bytes().chunks_exact(EXTERNAL_SIZE).map(|c| rd_u64(c, 16)).collect()
    }

    /// The bytes of index entry `i` (below `module_count`; `parse` checked that the index lies
    /// in the metadata), unchecked.
    fn raw_entry(&self, i: u32) -> &'a [u8] {
        let at = self.header.index_off as usize + i as usize * ENTRY_SIZE;
        &self.meta[at..at + ENTRY_SIZE]
    }

    /// Reads and checks index entry `i` (bounds of every range it names, and its checksum).
    pub fn entry(&self, i: u32) -> Result<Entry<'a>, FormatError> {
        if i >= self.header.module_count {
            return Err(FormatError::OutOfBounds("entry index"));
        }
        let e = self.raw_entry(i);
        let blob = self.blob();
        let slice = |off: u32, len: u64, what: &'static str| -> Result<&'a [u8], FormatError> {
            let end = (off as u64).checked_add(len).filter(|&end| end <= blob.len() as u64);
            let end = end.ok_or(FormatError::OutOfBounds(what))?;
            Ok(&blob[off as usize..end as usize])
        };
        let name = slice(rd_u32(e, E_NAME_OFF), rd_u32(e, E_NAME_LEN) as u64, "module name")?;
        if rd_u32(e, E_ENTRY_CRC) != entry_crc(e, name) {
            return Err(FormatError::EntryChecksum { index: i });
        }
        let name = std::str::from_utf8(name).map_err(|_| FormatError::BadName)?;
        let meta = slice(rd_u32(e, E_META_OFF), rd_u32(e, E_META_LEN) as u64, "module metadata")?;
        let rec = RECORD_SIZE as u64;
        let fixups = slice(rd_u32(e, E_FIXUPS_OFF), rd_u32(e, E_FIXUPS_COUNT) as u64 * rec, "fix-up list")?;
        let obj_off = rd_u64(e, E_OBJECTS_OFF);
        let obj_len = rd_u64(e, E_OBJECTS_LEN);
        if rd_u32(e, E_BITMAP_LEN) as u64 != bitmap_len(obj_len) {
            return Err(FormatError::OutOfBounds("pointer bitmap"));
        }
        let bitmap = slice(rd_u32(e, E_BITMAP_OFF), bitmap_len(obj_len), "pointer bitmap")?;
        let root = rd_u64(e, E_ROOT_OFF);
        let run_once = rd_u64(e, E_RUN_ONCE_OFF);
        let ro_off = rd_u64(e, E_RUN_ONCE_PART_OFF);
        let cold = rd_u64(e, E_COLD_OFF);
        let cold_off = rd_u64(e, E_COLD_PART_OFF);
        if obj_len < 8 || root >= obj_len || !root.is_multiple_of(8) {
            return Err(FormatError::OutOfBounds("module objects"));
        }
        if run_once > obj_len || !run_once.is_multiple_of(OBJECT_ALIGN) {
            return Err(FormatError::OutOfBounds("run-once objects"));
        }
        if cold > run_once || !cold.is_multiple_of(OBJECT_ALIGN) {
            return Err(FormatError::OutOfBounds("cold objects"));
        }
        // Each part inside the objects section, aligned, the three apart; the first part in
        // neither region, the cold part in the cold region, and the run-once region holding
        // run-once parts only.
        let section = self.header.objects_len;
        let end_of = |off: u64, len: u64| off.checked_add(len).filter(|&end| end <= section);
        let ends = (end_of(obj_off, cold), end_of(cold_off, run_once - cold), end_of(ro_off, obj_len - run_once));
        let (Some(first_end), Some(cold_end), Some(ro_end)) = ends else {
            return Err(FormatError::OutOfBounds("module objects"));
        };
        let (region, cold_region) = (self.header.run_once_region(), self.header.cold_region());
        let (first, cp, ro) = ((obj_off, first_end), (cold_off, cold_end), (ro_off, ro_end));
        let pooled = ro.0 < ro.1 && region.0 <= ro.0 && ro.1 <= region.1;
        let aligned = [obj_off, cold_off, ro_off].iter().all(|o| o % OBJECT_ALIGN == 0);
        if !aligned || overlap(first, ro) || overlap(first, cp) || overlap(first, region) || overlap(first, cold_region)
        {
            return Err(FormatError::OutOfBounds("module objects"));
        }
        if cp.0 < cp.1 && !(cold_region.0 <= cp.0 && cp.1 <= cold_region.1) || overlap(cp, ro) {
            return Err(FormatError::OutOfBounds("cold objects"));
        }
        if overlap(ro, region) && !pooled || overlap(ro, cold_region) {
            return Err(FormatError::OutOfBounds("run-once objects"));
        }
        Ok(Entry {
            index: i,
            name,
            read_once_off: self.header.blob_off + rd_u32(e, E_META_OFF) as u64,
            meta,
            bitmap,
            fixups,
            objects_file_off: self.header.objects_off + obj_off,
            objects_len: obj_len,
            root,
            run_once,
            cold,
            cold_file_off: self.header.objects_off + cold_off,
            run_once_file_off: self.header.objects_off + ro_off,
            run_once_pages: pooled.then(|| region_pages(ro.0 - region.0, ro.1 - region.0)),
            first_page_parts: rd_u32(e, E_FIRST_PAGE_PARTS),
            last_page_parts: rd_u32(e, E_LAST_PAGE_PARTS),
            data_crc: rd_u32(e, E_DATA_CRC),
        })
    }

    /// The bytes of interned string `n` (opaque here: the dumper's encoding of the text), checked
    /// against the table's bounds and the string's own checksum. Reads one record and the
    /// string: O(1), so a process pays only for the strings it uses.
    pub fn interned(&self, n: u32) -> Result<&'a [u8], FormatError> {
        let bad = || FormatError::BadString { number: n };
        if n >= self.header.intern_count {
            return Err(bad());
        }
        let section = &self.meta[self.header.strings_off as usize..][..self.header.strings_len as usize];
        let r = &section[n as usize * STRING_RECORD_SIZE..][..STRING_RECORD_SIZE];
        let (off, len) = (rd_u32(r, S_DATA_OFF) as u64, rd_u32(r, S_LEN) as u64);
        let table_end = self.header.intern_count as u64 * STRING_RECORD_SIZE as u64;
        if off < table_end || off % STRING_ALIGN != 0 || off + len > section.len() as u64 || rd_u32(r, S_RESERVED) != 0
        {
            return Err(bad());
        }
        let bytes = &section[off as usize..(off + len) as usize];
        if crc32fast::hash(bytes) != rd_u32(r, S_CRC) {
            return Err(bad());
        }
        Ok(bytes)
    }

    /// The value stored under `key` in the keyed-records section (opaque bytes here: the
    /// extension crate defines what keys and values encode), or `None`. A binary search over
    /// the records, sorted by key bytes: each record it reads is bounds-checked, and the one it
    /// finds has its checksum verified. O(log n) records, whatever the section's size.
    pub fn keyed(&self, key: &[u8]) -> Result<Option<&'a [u8]>, FormatError> {
        let h = &self.header;
        let section = &self.meta[h.keyed_off as usize..][..h.keyed_len as usize];
        let table_end = h.keyed_count as u64 * KEYED_RECORD_SIZE as u64;
        let field = |r: &[u8], off: usize, len: usize, i: u32| -> Result<&'a [u8], FormatError> {
            let (off, len) = (rd_u32(r, off) as u64, rd_u32(r, len) as u64);
            if off < table_end || off + len > section.len() as u64 {
                return Err(FormatError::BadRecord { index: i });
            }
            Ok(&section[off as usize..(off + len) as usize])
        };
        let (mut lo, mut hi) = (0u32, h.keyed_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = &section[mid as usize * KEYED_RECORD_SIZE..][..KEYED_RECORD_SIZE];
            let k = field(r, K_KEY_OFF, K_KEY_LEN, mid)?;
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let v = field(r, K_VALUE_OFF, K_VALUE_LEN, mid)?;
                    if rd_u32(r, K_RESERVED) != 0 || rd_u32(r, K_CRC) != keyed_crc(k, v) {
                        return Err(FormatError::BadRecord { index: mid });
                    }
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    /// The file ranges of the interned-strings section that only the strings numbered below `n`
    /// use: their records, and their bytes (laid out in number order). A loader that has made
    /// every string below `n` never reads them again and may give their pages back. Reads at
    /// most record `n`; a damaged record gives an empty second range. Never a byte outside the
    /// section.
    pub fn strings_used_below(&self, n: u32) -> [(u64, u64); 2] {
        let h = &self.header;
        let (start, end) = (h.strings_off, h.strings_off + h.strings_len);
        let n = n.min(h.intern_count);
        let records_end = start + h.intern_count as u64 * STRING_RECORD_SIZE as u64;
        let bytes_end = if n == h.intern_count {
            end
        } else {
            let r = &self.meta[(start + n as u64 * STRING_RECORD_SIZE as u64) as usize..][..STRING_RECORD_SIZE];
            (start + rd_u32(r, S_DATA_OFF) as u64).clamp(records_end, end)
        };
        [(start, start + n as u64 * STRING_RECORD_SIZE as u64), (records_end, bytes_end)]
    }

    /// Each module's `read_once_off` and index, in file order (the dump order), from the raw
    /// index: unchecked, and clamped into the blob, for deciding which pages a loader is done
    /// with, never for reading. O(modules).
    pub fn read_once_order(&self) -> Vec<(u64, u32)> {
        let h = &self.header;
        let mut order: Vec<(u64, u32)> = (0..h.module_count)
            .map(|i| {
                let off = h.blob_off + rd_u32(self.raw_entry(i), E_META_OFF) as u64;
                (off.min(h.blob_off + h.blob_len), i)
            })
            .collect();
        order.sort_unstable();
        order
    }

    /// The size of the largest module's objects, as the index says (unchecked, but never more
    /// than the objects section): what working memory sized for any module must hold.
    pub fn largest_module(&self) -> u64 {
        let h = &self.header;
        (0..h.module_count).map(|i| rd_u64(self.raw_entry(i), E_OBJECTS_LEN)).max().unwrap_or(0).min(h.objects_len)
    }

    /// Binary search of the index. `Ok(None)` when the name is not archived; `Err` when an entry
    /// on the search path is corrupt.
    pub fn lookup(&self, name: &str) -> Result<Option<Entry<'a>>, FormatError> {
        let (mut lo, mut hi) = (0u32, self.header.module_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid)?;
            match e.name.as_bytes().cmp(name.as_bytes()) {
                std::cmp::Ordering::Equal => return Ok(Some(e)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// Checks every entry and that the index is sorted; O(modules). Used by `inspect` and tests,
    /// never on the import path.
    pub fn entries(&self) -> Result<Vec<Entry<'a>>, FormatError> {
        let mut out: Vec<Entry<'a>> = Vec::with_capacity(self.header.module_count as usize);
        for i in 0..self.header.module_count {
            let e = self.entry(i)?;
            if let Some(prev) = out.last() {
                if prev.name.as_bytes() >= e.name.as_bytes() {
                    return Err(FormatError::Unsorted);
                }
            }
            out.push(e);
        }
        Ok(out)
    }
}

impl<'a> Entry<'a> {
    pub fn meta(&self) -> Result<ModuleMeta, FormatError> {
        ModuleMeta::decode(self.meta)
    }

    /// The file ranges `[start, end)` of the module's three parts: its first objects, its cold
    /// ones and its run-once ones (each empty when there are none).
    pub fn part_ranges(&self) -> [(u64, u64); 3] {
        [
            (self.objects_file_off, self.objects_file_off + self.cold),
            (self.cold_file_off, self.cold_file_off + (self.run_once - self.cold)),
            (self.run_once_file_off, self.run_once_file_off + (self.objects_len - self.run_once)),
        ]
    }

    /// The module's three parts in `file`, the whole archive's bytes (for readers that hold
    /// the file in memory rather than mapped), or `None` if `file` is shorter than they need.
    pub fn parts_in<'b>(&self, file: &'b [u8]) -> Option<[&'b [u8]; 3]> {
        let [a, b, c] = self.part_ranges().map(|(start, end)| file.get(start as usize..end as usize));
        Some([a?, b?, c?])
    }

    /// Whether the run-once part lies in the archive's run-once region.
    pub fn pooled(&self) -> bool {
        self.run_once_pages.is_some()
    }

    pub(crate) fn bitmap(&self) -> &'a [u8] {
        self.bitmap
    }

    /// Number of pointer slots in the module.
    pub fn reloc_count(&self) -> usize {
        self.bitmap.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Offsets (from the module's first byte) of its pointer slots, in increasing order. Bits
    /// past the end of the objects are ignored here and rejected by [`crate::relocate`].
    pub fn pointer_slots(&self) -> impl Iterator<Item = u64> + 'a {
        self.bitmap
            .iter()
            .enumerate()
            .flat_map(|(i, &byte)| (0..8u64).filter(move |b| byte & (1 << b) != 0).map(move |b| (i as u64 * 8 + b) * 8))
    }

    pub fn fixup_count(&self) -> usize {
        self.fixups.len() / RECORD_SIZE
    }

    /// The fix-ups in order, each checked to name an aligned slot inside the module.
    pub fn fixups(&self) -> impl Iterator<Item = Result<Fixup, FormatError>> + 'a {
        let (len, name) = (self.objects_len, self.name);
        self.fixups.chunks_exact(RECORD_SIZE).map(move |c| {
            let slot = rd_u32(c, 0);
            let kind = FixupKind::decode(rd_u32(c, 4))
                .ok_or_else(|| FormatError::BadRelocation(format!("malformed fix-up record in {name}")))?;
            if !slot.is_multiple_of(8) || slot as u64 + 8 > len {
                return Err(FormatError::BadRelocation(format!("fix-up slot {slot} outside {name}")));
            }
            Ok(Fixup { slot, kind })
        })
    }

    /// Checks the module's metadata, pointer bitmap, fix-up list and object bytes against the
    /// checksum the dumper recorded. `objects` must be the module's bytes as found in the file,
    /// before any relocation.
    pub fn verify(&self, objects: &Parts<&[u8]>) -> Result<(), FormatError> {
        if objects.len() != self.objects_len || objects.split() != self.run_once || objects.cold_start() != self.cold {
            return Err(FormatError::OutOfBounds("module objects"));
        }
        let parts = [objects.first(), objects.cold(), objects.run_once()];
        if data_crc(self.meta, self.bitmap, self.fixups, parts) != self.data_crc {
            return Err(FormatError::DataChecksum { name: self.name.to_owned() });
        }
        Ok(())
    }
}

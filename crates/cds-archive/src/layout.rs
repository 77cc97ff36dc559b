//! Byte layout of the container: sizes, offsets and the small fixed-size records.
//! `docs/format.md` is the prose version of this file; keep them in step.

/// First eight bytes of every archive.
pub const MAGIC: [u8; 8] = *b"PYCDSAR\n";
/// Bumped whenever any byte of the layout below (or the meaning of a field) changes.
pub const FORMAT_VERSION: u32 = 10;
/// Size of the fixed header at offset 0.
pub const HEADER_SIZE: usize = 200;
/// Size of one module index entry.
pub const ENTRY_SIZE: usize = 104;
/// Size of one externals-table record.
pub const EXTERNAL_SIZE: usize = 24;
/// Size of one fix-up record.
pub const RECORD_SIZE: usize = 8;
/// Size of one record of the interned-strings table.
pub const STRING_RECORD_SIZE: usize = 16;
/// Size of one record of the keyed-records table.
pub const KEYED_RECORD_SIZE: usize = 24;
/// The keyed-records section starts on this alignment.
pub const KEYED_ALIGN: u64 = 8;
/// Each interned string's bytes start on this alignment (so that 2- and 4-byte code units can
/// be read in place).
pub const STRING_ALIGN: u64 = 8;
/// The interned-strings table holds fewer entries than this (numbers fit 28 bits).
pub const MAX_INTERN_COUNT: u32 = 1 << 28;
/// The objects section starts on a page boundary so that it can be mapped and shared page by page.
pub const PAGE_SIZE: u64 = 4096;
/// Lowest preferred base a reader accepts (4 GiB: far above the null page and low mappings).
pub const MIN_BASE: u64 = 1 << 32;
/// End of the address range a preferred base may use (47-bit user space).
pub const MAX_BASE_END: u64 = 1 << 47;
/// Every module's object bytes start on this alignment (the interpreter's allocator alignment).
pub const OBJECT_ALIGN: u64 = 16;

// Header field offsets.
pub(crate) const H_VERSION: usize = 8;
pub(crate) const H_HEADER_SIZE: usize = 12;
pub(crate) const H_FINGERPRINT: usize = 16;
pub(crate) const H_PREFERRED_BASE: usize = 48;
pub(crate) const H_FILE_SIZE: usize = 56;
pub(crate) const H_INDEX_OFF: usize = 64;
pub(crate) const H_MODULE_COUNT: usize = 72;
pub(crate) const H_EXTERNALS_COUNT: usize = 76;
pub(crate) const H_EXTERNALS_OFF: usize = 80;
pub(crate) const H_BLOB_OFF: usize = 88;
pub(crate) const H_BLOB_LEN: usize = 96;
pub(crate) const H_OBJECTS_OFF: usize = 104;
pub(crate) const H_OBJECTS_LEN: usize = 112;
pub(crate) const H_PRODUCER_LEN: usize = 120;
pub(crate) const H_INTERN_COUNT: usize = 124;
pub(crate) const H_STRINGS_OFF: usize = 128;
pub(crate) const H_STRINGS_LEN: usize = 136;
pub(crate) const H_CRC: usize = 144;
pub(crate) const H_KEYED_COUNT: usize = 148;
pub(crate) const H_KEYED_OFF: usize = 152;
pub(crate) const H_KEYED_LEN: usize = 160;
pub(crate) const H_RUN_ONCE_OFF: usize = 168;
pub(crate) const H_RUN_ONCE_LEN: usize = 176;
pub(crate) const H_COLD_OFF: usize = 184;
pub(crate) const H_COLD_LEN: usize = 192;

// Keyed-record field offsets.
pub(crate) const K_KEY_OFF: usize = 0;
pub(crate) const K_KEY_LEN: usize = 4;
pub(crate) const K_VALUE_OFF: usize = 8;
pub(crate) const K_VALUE_LEN: usize = 12;
pub(crate) const K_CRC: usize = 16;
pub(crate) const K_RESERVED: usize = 20;

// Interned-strings record field offsets.
pub(crate) const S_DATA_OFF: usize = 0;
pub(crate) const S_LEN: usize = 4;
pub(crate) const S_CRC: usize = 8;
pub(crate) const S_RESERVED: usize = 12;

// Index entry field offsets.
pub(crate) const E_NAME_OFF: usize = 0;
pub(crate) const E_NAME_LEN: usize = 4;
pub(crate) const E_META_OFF: usize = 8;
pub(crate) const E_META_LEN: usize = 12;
pub(crate) const E_BITMAP_OFF: usize = 16;
pub(crate) const E_BITMAP_LEN: usize = 20;
pub(crate) const E_FIXUPS_OFF: usize = 24;
pub(crate) const E_FIXUPS_COUNT: usize = 28;
pub(crate) const E_OBJECTS_OFF: usize = 32;
pub(crate) const E_OBJECTS_LEN: usize = 40;
pub(crate) const E_ROOT_OFF: usize = 48;
pub(crate) const E_RUN_ONCE_OFF: usize = 56;
pub(crate) const E_DATA_CRC: usize = 64;
pub(crate) const E_ENTRY_CRC: usize = 68;
pub(crate) const E_RUN_ONCE_PART_OFF: usize = 72;
pub(crate) const E_FIRST_PAGE_PARTS: usize = 80;
pub(crate) const E_LAST_PAGE_PARTS: usize = 84;
pub(crate) const E_COLD_OFF: usize = 88;
pub(crate) const E_COLD_PART_OFF: usize = 96;

/// An interpreter object that the archive points at but does not contain (a type object,
/// `None`, a small-int singleton, ...). The kinds are defined by the extension crate and listed in
/// `docs/format.md`; this crate treats them as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct External {
    pub kind: u32,
    pub arg: i64,
}

/// What a pointer-sized slot in a module's objects points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocTarget {
    /// Another object of the same module. The slot holds its address for the preferred base.
    Internal,
    /// An entry of the externals table. The slot holds the address the dumping process had for
    /// it, which the externals table records, so a reader can tell which external it is.
    External(u32),
}

/// Bytes of a module's pointer bitmap: one bit per 8-byte word of its objects.
pub fn bitmap_len(objects_len: u64) -> u64 {
    objects_len.div_ceil(64)
}

/// One pointer-sized slot to fix at load: `slot` is its offset from the module's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    pub slot: u32,
    pub target: RelocTarget,
}

/// Work beyond pointer arithmetic that a slot needs once its module's pointers are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixupKind {
    /// The slot points at a tuple that must be replaced by a frozenset of its items
    /// (a frozenset's layout depends on per-process hash seeds, so it cannot be stored).
    FrozenSet,
    /// The slot points at a tuple of `(key, value)` tuples that must be replaced by a
    /// frozendict of those items, in that order (a frozendict, like a frozenset, is a hash table).
    FrozenDict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixup {
    pub slot: u32,
    pub kind: FixupKind,
}

impl FixupKind {
    pub(crate) fn encode(self) -> u32 {
        match self {
            FixupKind::FrozenSet => 2,
            FixupKind::FrozenDict => 3,
        }
    }
    /// Decodes a record's second word; `None` for an unknown kind.
    pub(crate) fn decode(word: u32) -> Option<Self> {
        match word {
            2 => Some(FixupKind::FrozenSet),
            3 => Some(FixupKind::FrozenDict),
            _ => None,
        }
    }
}

pub(crate) fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
pub(crate) fn wr_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn wr_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The pages `[first, end)` of the run-once region, numbered from its first page, that the
/// non-empty range `[start, end)` of region offsets touches.
pub(crate) fn region_pages(start: u64, end: u64) -> (u64, u64) {
    (start / PAGE_SIZE, end.div_ceil(PAGE_SIZE))
}

/// The native-endian word at byte `slot` of a module's objects.
pub fn read_slot(objects: &[u8], slot: u64) -> u64 {
    let s = slot as usize;
    u64::from_ne_bytes(objects[s..s + 8].try_into().expect("8 bytes"))
}

/// Stores `v` as the native-endian word at byte `slot` of a module's objects.
pub fn write_slot(objects: &mut [u8], slot: u64, v: u64) {
    let s = slot as usize;
    objects[s..s + 8].copy_from_slice(&v.to_ne_bytes());
}

/// The header's checksum: every header byte but the CRC field's own, the externals table and the
/// producer.
pub(crate) fn header_crc(h: &[u8], externals: &[u8], producer: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[..H_CRC]);
    c.update(&h[H_CRC + 4..HEADER_SIZE]);
    c.update(externals);
    c.update(producer);
    c.finalize()
}

/// A keyed record's checksum: its key and its value.
pub(crate) fn keyed_crc(key: &[u8], value: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(key);
    c.update(value);
    c.finalize()
}

/// An index entry's checksum: the entry but its CRC field, and the module's name.
pub(crate) fn entry_crc(e: &[u8], name: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&e[..E_ENTRY_CRC]);
    c.update(&e[E_ENTRY_CRC + 4..ENTRY_SIZE]);
    c.update(name);
    c.finalize()
}

/// A module's checksum: its metadata, pointer bitmap, fix-ups and object bytes (its first part,
/// then its cold part, then its run-once part).
pub(crate) fn data_crc(meta: &[u8], bitmap: &[u8], fixups: &[u8], parts: [&[u8]; 3]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(meta);
    c.update(bitmap);
    c.update(fixups);
    for part in parts {
        c.update(part);
    }
    c.finalize()
}

//! The pycds archive format.
//!
//! This crate knows the *container*: a header, a sorted module index, a blob of names, metadata and
//! relocation lists, a table of externals and a page-aligned section of object bytes. It knows
//! nothing of Python: object bytes are opaque, externals are opaque `(kind, arg)` pairs that the
//! extension crate resolves to addresses, and module metadata is a handful of paths and file stats.
//!
//! Everything a reader takes from a file is bounds-checked and checksummed before use, so that
//! any byte string (a truncated, corrupt or foreign file) yields an error, never a panic or an
//! out-of-bounds access. See `docs/format.md` for the byte-level specification.

#![forbid(unsafe_code)]

mod addrmap;
mod error;
pub mod fuzzing;
mod layout;
mod meta;
mod parts;
mod reader;
mod reloc;
mod writer;

pub use addrmap::AddrMap;
pub use error::FormatError;
pub use layout::{
    bitmap_len, External, Fixup, FixupKind, Reloc, RelocTarget, ENTRY_SIZE, EXTERNAL_SIZE, FORMAT_VERSION, HEADER_SIZE,
    MAGIC, OBJECT_ALIGN, PAGE_SIZE,
};
pub use layout::{read_slot, write_slot};
pub use meta::{ModuleMeta, PathState, SearchEntry};
pub use parts::Parts;
pub use reader::{Archive, Entry, Header};
pub use reloc::{relocate, ExternalMap, RelocStats};
pub use writer::{ArchiveBuilder, ModuleInput, WriteStats};

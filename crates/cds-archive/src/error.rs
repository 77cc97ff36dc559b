use std::fmt;

/// Why an archive, or one module of it, cannot be used. Every variant reads as a complete
/// sentence fragment after "archive rejected: " or "module rejected: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than a header, or than the header says the file has.
    Truncated { needed: u64, have: u64 },
    /// The first bytes are not the pycds magic.
    BadMagic,
    /// Made by another version of the format.
    Version { found: u32, expected: u32 },
    /// The header checksum does not match.
    HeaderChecksum,
    /// A section, entry, name or list lies outside the file or overlaps another.
    OutOfBounds(&'static str),
    /// An index entry's own checksum does not match.
    EntryChecksum { index: u32 },
    /// A module's data (objects, relocations, fix-ups, metadata) does not match its checksum.
    DataChecksum { name: String },
    /// A relocation or fix-up is malformed (misaligned, out of range, unknown external).
    BadRelocation(String),
    /// An interned string's record lies outside its section, or its bytes fail their checksum.
    BadString { number: u32 },
    /// A keyed record lies outside its section, or fails its checksum.
    BadRecord { index: u32 },
    /// Module metadata does not decode.
    BadMeta(&'static str),
    /// The index is not sorted by name (binary search would be wrong).
    Unsorted,
    /// A name is not valid UTF-8.
    BadName,
    /// An I/O error while writing.
    Io(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, have } => {
                write!(f, "truncated: needs {needed} bytes, file has {have}")
            }
            FormatError::BadMagic => write!(f, "not a pycds archive (bad magic)"),
            FormatError::Version { found, expected } => {
                write!(f, "archive format version {found}, this pycds reads version {expected}")
            }
            FormatError::HeaderChecksum => write!(f, "header checksum mismatch (corrupt)"),
            FormatError::OutOfBounds(what) => write!(f, "corrupt: {what} out of bounds"),
            FormatError::EntryChecksum { index } => {
                write!(f, "corrupt: index entry {index} checksum mismatch")
            }
            FormatError::DataChecksum { name } => {
                write!(f, "corrupt: checksum mismatch in the data of module {name}")
            }
            FormatError::BadRelocation(msg) => write!(f, "corrupt relocation: {msg}"),
            FormatError::BadString { number } => {
                write!(f, "corrupt: interned string {number} out of bounds or checksum mismatch")
            }
            FormatError::BadRecord { index } => {
                write!(f, "corrupt: keyed record {index} out of bounds or checksum mismatch")
            }
            FormatError::BadMeta(what) => write!(f, "corrupt module metadata: {what}"),
            FormatError::Unsorted => write!(f, "corrupt: module index is not sorted"),
            FormatError::BadName => write!(f, "corrupt: module name is not UTF-8"),
            FormatError::Io(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for FormatError {}

//! The state of a path on disk (kind, modification time, size), the one definition used both when
//! dumping and when checking an archived module is still what the file system holds.

use std::os::unix::fs::MetadataExt;

use cds_archive::PathState;

/// `stat(2)` of `path`, following symlinks, as the import system sees it. Relative paths
/// (including `''`, the current directory) have no stable state and report `Absent`.
pub fn path_state(path: &str) -> PathState {
    if !path.starts_with('/') {
        return PathState::Absent;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => PathState::Dir { mtime_ns: mtime_ns(&m) },
        Ok(m) if m.is_file() => PathState::File { mtime_ns: mtime_ns(&m), size: m.size() },
        _ => PathState::Absent,
    }
}

pub fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec())
}

/// Modification time and size of a source file, or `None` when it cannot be read.
pub fn source_stat(path: &str) -> Option<(i64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| (mtime_ns(&m), m.size()))
}

/// SHA-256 of a source file's bytes, or `None` when it cannot be read.
pub fn source_digest(path: &str) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path).ok().map(|bytes| sha2::Sha256::digest(&bytes).into())
}

pub fn encode(s: PathState) -> (u8, i64, u64) {
    match s {
        PathState::Absent => (0, 0, 0),
        PathState::Dir { mtime_ns } => (1, mtime_ns, 0),
        PathState::File { mtime_ns, size } => (2, mtime_ns, size),
    }
}

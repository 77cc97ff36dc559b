//! Per-module metadata: where the module's source is, what it looked like when dumped, and which
//! search locations were consulted to find it (so that a reader can tell, cheaply, whether the
//! same name would still resolve to the same file).

use crate::error::FormatError;

/// The state of a file-system path, compared between dump time and load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing there (or not accessible).
    Absent,
    /// A directory with this modification time (nanoseconds).
    Dir { mtime_ns: i64 },
    /// A regular file (for example a zip archive on the path) with this time and size.
    File { mtime_ns: i64, size: u64 },
}

/// One search location that was consulted, in order, up to and including the one that held
/// the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEntry {
    pub path: String,
    pub state: PathState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMeta {
    /// The source file the code was compiled from.
    pub origin: String,
    pub is_package: bool,
    /// The source file's modification time and size when it was compiled.
    pub source_mtime_ns: i64,
    pub source_size: u64,
    /// SHA-256 of the source file's bytes when it was compiled: a source whose modification
    /// time changed but whose size and bytes did not (a fresh checkout, a copy into an image)
    /// still matches.
    pub source_digest: [u8; 32],
    /// The search locations before and including the one that holds `origin`.
    pub search: Vec<SearchEntry>,
}

const FLAG_PACKAGE: u32 = 1;

impl ModuleMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.origin.len());
        out.extend_from_slice(&(if self.is_package { FLAG_PACKAGE } else { 0 }).to_le_bytes());
        out.extend_from_slice(&self.source_mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.source_size.to_le_bytes());
        out.extend_from_slice(&self.source_digest);
        put_str(&mut out, &self.origin);
        out.extend_from_slice(&(self.search.len() as u32).to_le_bytes());
        for e in &self.search {
            put_str(&mut out, &e.path);
            let (kind, mtime, size) = match e.state {
                PathState::Absent => (0u8, 0i64, 0u64),
                PathState::Dir { mtime_ns } => (1, mtime_ns, 0),
                PathState::File { mtime_ns, size } => (2, mtime_ns, size),
            };
            out.push(kind);
            out.extend_from_slice(&mtime.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Cursor { b: bytes, at: 0 };
        let flags = r.u32()?;
        let source_mtime_ns = r.u64()? as i64;
        let source_size = r.u64()?;
        let source_digest = r.take(32)?.try_into().expect("32");
        let origin = r.str()?;
        let n = r.u32()? as usize;
        // Each search entry takes at least 21 bytes: refuse counts the bytes cannot hold before
        // allocating for them.
        if n > bytes.len() / 21 {
            return Err(FormatError::BadMeta("search list longer than its bytes"));
        }
        let mut search = Vec::with_capacity(n);
        for _ in 0..n {
            let path = r.str()?;
            let kind = r.u8()?;
            let mtime_ns = r.u64()? as i64;
            let size = r.u64()?;
            let state = match kind {
                0 => PathState::Absent,
                1 => PathState::Dir { mtime_ns },
                2 => PathState::File { mtime_ns, size },
                _ => return Err(FormatError::BadMeta("unknown path state")),
            };
            search.push(SearchEntry { path, state });
        }
        if r.at != bytes.len() {
            return Err(FormatError::BadMeta("trailing bytes"));
        }
        Ok(ModuleMeta {
            origin,
            is_package: flags & FLAG_PACKAGE != 0,
            source_mtime_ns,
            source_size,
            source_digest,
            search,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(FormatError::BadMeta("field runs past the end"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str(&mut self) -> Result<String, FormatError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| FormatError::BadMeta("path is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = ModuleMeta {
            origin: "/a/b/c.py".into(),
            is_package: true,
            source_mtime_ns: -5,
            source_size: 77,
            source_digest: [7; 32],
            search: vec![
                SearchEntry { path: "/x".into(), state: PathState::Absent },
                SearchEntry { path: "/a/b".into(), state: PathState::Dir { mtime_ns: 9 } },
                SearchEntry { path: "/z.zip".into(), state: PathState::File { mtime_ns: 1, size: 2 } },
            ],
        };
        assert_eq!(ModuleMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let m = ModuleMeta {
            origin: "/a.py".into(),
            is_package: false,
            source_mtime_ns: 1,
            source_size: 2,
            source_digest: [0; 32],
            search: vec![SearchEntry { path: "/".into(), state: PathState::Dir { mtime_ns: 3 } }],
        };
        let b = m.encode();
        for n in 0..b.len() {
            assert!(ModuleMeta::decode(&b[..n]).is_err(), "prefix {n} decoded");
        }
    }
}

//! Applying a module's pointer bitmap to its bytes.

use crate::addrmap::AddrMap;
use crate::error::FormatError;
use crate::parts::Parts;
use crate::reader::Entry;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelocStats {
    pub relocs: usize,
    /// Slots whose value actually changed. Unchanged slots are not written, so that pages with
    /// nothing to patch stay clean (and shared between processes).
    pub written: usize,
}

/// Where each external is: the address the dumping process had (what slots hold) and this
/// process's address for it.
#[derive(Debug, Clone)]
pub struct ExternalMap {
    map: AddrMap<u64>,
}

impl ExternalMap {
    /// `dumped[i]` and `actual[i]` are external `i`'s address in the dumper and here.
    pub fn new(dumped: &[u64], actual: &[u64]) -> Self {
        let mut map = AddrMap::with_capacity(dumped.len());
        for (&d, &a) in dumped.iter().zip(actual) {
            map.insert(d, a);
        }
        ExternalMap { map }
    }

    /// True when some external has another address here than in the dumping process (as with
    /// a position-independent libpython), so relocation will write.
    pub fn moves_anything(&self) -> bool {
        self.map.iter().any(|(d, a)| d != a)
    }

    fn get(&self, dumped: u64) -> Option<u64> {
        self.map.get(dumped)
    }
}

/// Fixes every pointer slot of one module in place, in one pass.
///
/// `objects` is the module's bytes (as [`Entry::verify`] checked them, each part at its address
/// in this process); `preferred` is the address the archive's first byte was laid out for and
/// `actual` the address it is mapped at. A slot whose value lies in the file range of any part
/// of the module, taken at `preferred`, points into the module and moves with the archive; any
/// other value must be an external's dumped address, and becomes this process's address for it.
/// On error the module's bytes are left partly relocated: the caller must never use them (the
/// loader marks the module failed and imports it normally).
pub fn relocate(
    objects: &mut Parts<&mut [u8]>,
    entry: &Entry<'_>,
    preferred: u64,
    actual: u64,
    externals: &ExternalMap,
) -> Result<RelocStats, FormatError> {
    // File ranges of the three parts.
    let [first, cold, ro] = entry.part_ranges();
    let mut stats = RelocStats::default();
    for (word_index, chunk) in entry.bitmap().chunks(8).enumerate() {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        let mut bits = u64::from_le_bytes(buf);
        while bits != 0 {
            let slot = (word_index as u64 * 64 + bits.trailing_zeros() as u64) * 8;
            bits &= bits - 1;
            // Slots are 8-byte aligned and the parts 16-byte aligned: a slot inside the module
            // lies inside one part.
            let Some(old) = objects.word(slot) else {
                return Err(FormatError::BadRelocation(format!("pointer slot past the end of {}", entry.name)));
            };
            let file_off = old.wrapping_sub(preferred);
            let inside = |(start, end): (u64, u64)| (start..end).contains(&file_off);
            let new = if file_off % 8 == 0 && (inside(first) || inside(cold) || inside(ro)) {
                actual + file_off
            } else if let Some(addr) = externals.get(old) {
                addr
            } else {
                return Err(FormatError::BadRelocation(format!(
                    "pointer {old:#x} of {} is neither inside it nor an external",
                    entry.name
                )));
            };
            stats.relocs += 1;
            if new != old {
                objects.set_word(slot, new);
                stats.written += 1;
            }
        }
    }
    Ok(stats)
}

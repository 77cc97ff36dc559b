//! Applying a module's relocation list to its bytes.

use crate::error::FormatError;
use crate::layout::RelocTarget;
use crate::reader::Entry;
use crate::writer::{read_slot, write_slot};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelocStats {
    pub relocs: usize,
    /// Slots whose value actually changed. Unchanged slots are not written, so that pages with
    /// nothing to patch stay clean (and shared between processes).
    pub written: usize,
}

/// Fixes every pointer slot of one module in place.
///
/// `objects` is the module's bytes (as [`Entry::verify`] checked them); `preferred` is the address
/// the module was laid out for and `actual` the address it is mapped at; `externals[i]` is this
/// process's address for external `i`. Every relocation is checked before anything is written, so
/// an error leaves the bytes untouched.
pub fn relocate(
    objects: &mut [u8],
    entry: &Entry<'_>,
    preferred: u64,
    actual: u64,
    externals: &[u64],
) -> Result<RelocStats, FormatError> {
    let len = objects.len() as u64;
    for r in entry.relocs() {
        if r.slot % 8 != 0 || r.slot as u64 + 8 > len {
            return Err(FormatError::BadRelocation(format!(
                "slot {} outside module {} of {len} bytes",
                r.slot, entry.name
            )));
        }
        match r.target {
            RelocTarget::Internal => {
                let v = read_slot(objects, r.slot);
                let inside = v.checked_sub(preferred).is_some_and(|o| o < len && o % 8 == 0);
                if !inside {
                    return Err(FormatError::BadRelocation(format!(
                        "pointer {v:#x} outside module {}",
                        entry.name
                    )));
                }
            }
            RelocTarget::External(i) => {
                if i as usize >= externals.len() {
                    return Err(FormatError::BadRelocation(format!(
                        "unknown external {i} in module {}",
                        entry.name
                    )));
                }
            }
        }
    }
    let mut stats = RelocStats::default();
    for r in entry.relocs() {
        let old = read_slot(objects, r.slot);
        let new = match r.target {
            RelocTarget::Internal => old - preferred + actual,
            RelocTarget::External(i) => externals[i as usize],
        };
        stats.relocs += 1;
        if new != old {
            write_slot(objects, r.slot, new);
            stats.written += 1;
        }
    }
    Ok(stats)
}

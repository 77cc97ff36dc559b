//! A module's object bytes where they lie: three parts that the file may keep apart.
//!
//! A module's objects are one sequence of bytes, `[0, len)`, in which every offset the format
//! records is taken (pointer bitmap, fix-ups, root, validation): its long-lived objects,
//! `[0, cold)`, then its cold objects, `[cold, split)`, then its run-once objects,
//! `[split, len)`. The file keeps the first part with the other modules' long-lived objects, the
//! cold part in the archive's cold region (pooled with other modules' cold parts: leaves that
//! nothing writes, so that their pages stay shared between processes) and the run-once part
//! either after the first or in the archive's run-once region (pooled with other modules'
//! run-once parts, so that their pages can be given back once all of them have run). Each part
//! has its own address. An object never straddles two parts: each boundary is where an object
//! starts.

/// The three parts of one module's objects, each with the address it is mapped (or laid out)
/// at. `B` is `&[u8]` to read them, `&mut [u8]` to also write them.
#[derive(Debug)]
pub struct Parts<B> {
    /// The first, cold and run-once parts, in offset order.
    parts: [B; 3],
    addrs: [u64; 3],
}

impl<B: AsRef<[u8]>> Parts<B> {
    pub fn new(first: (B, u64), cold: (B, u64), run_once: (B, u64)) -> Self {
        Parts { parts: [first.0, cold.0, run_once.0], addrs: [first.1, cold.1, run_once.1] }
    }

    /// The length of the module's objects, all parts.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.as_ref().len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the cold objects begin.
    pub fn cold_start(&self) -> u64 {
        self.parts[0].as_ref().len() as u64
    }

    /// Where the run-once objects begin.
    pub fn split(&self) -> u64 {
        self.cold_start() + self.parts[1].as_ref().len() as u64
    }

    pub fn first(&self) -> &[u8] {
        self.parts[0].as_ref()
    }

    pub fn cold(&self) -> &[u8] {
        self.parts[1].as_ref()
    }

    pub fn run_once(&self) -> &[u8] {
        self.parts[2].as_ref()
    }

    /// A read-only view of the same bytes.
    pub fn view(&self) -> Parts<&[u8]> {
        let [a, b, c] = &self.parts;
        Parts { parts: [a.as_ref(), b.as_ref(), c.as_ref()], addrs: self.addrs }
    }

    /// The offset of each part's first byte.
    fn starts(&self) -> [u64; 3] {
        [0, self.cold_start(), self.split()]
    }

    /// The part holding offset `off` (past the end: the last part) and the offset within it.
    #[inline]
    fn locate(&self, off: u64) -> (usize, u64) {
        let starts = self.starts();
        let i = if off < starts[1] {
            0
        } else if off < starts[2] {
            1
        } else {
            2
        };
        (i, off - starts[i])
    }

    /// The `n` bytes at offset `off`, if they lie inside one part.
    #[inline]
    pub fn get(&self, off: u64, n: u64) -> Option<&[u8]> {
        let (i, at) = self.locate(off);
        let end = at.checked_add(n)?;
        self.parts[i].as_ref().get(usize::try_from(at).ok()?..usize::try_from(end).ok()?)
    }

    /// The bytes from offset `off` to the end of its part.
    pub fn rest(&self, off: u64) -> Option<&[u8]> {
        let (i, at) = self.locate(off);
        self.parts[i].as_ref().get(usize::try_from(at).ok()?..)
    }

    /// The native-endian word at offset `off`, if it lies inside one part.
    #[inline]
    pub fn word(&self, off: u64) -> Option<u64> {
        self.get(off, 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }

    /// The offset of the byte at address `addr`, if it is one of the module's.
    #[inline]
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let starts = self.starts();
        (0..3).find_map(|i| {
            let len = self.parts[i].as_ref().len() as u64;
            addr.checked_sub(self.addrs[i]).filter(|&o| o < len).map(|o| starts[i] + o)
        })
    }

    /// The address of the byte at offset `off` (which must lie inside the module).
    #[inline]
    pub fn addr_of(&self, off: u64) -> u64 {
        let (i, at) = self.locate(off);
        self.addrs[i] + at
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Parts<B> {
    /// Stores `v` as the native-endian word at offset `off`; false if it does not lie inside
    /// one part.
    #[inline]
    pub fn set_word(&mut self, off: u64, v: u64) -> bool {
        let (i, at) = self.locate(off);
        let Some(end) = at.checked_add(8) else {
            return false;
        };
        match self.parts[i].as_mut().get_mut(at as usize..end as usize) {
            Some(b) => {
                b.copy_from_slice(&v.to_ne_bytes());
                true
            }
            None => false,
        }
    }

    /// A raw pointer to the byte at offset `off` (inside the module), for writing a slot in
    /// place.
    pub fn ptr_mut(&mut self, off: u64) -> Option<*mut u8> {
        let (i, at) = self.locate(off);
        self.parts[i].as_mut().get_mut(at as usize..).map(|b| b.as_mut_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_addresses_follow_the_parts() {
        let mut a = [0u8; 32];
        let mut c = [0u8; 16];
        let mut b = [0u8; 16];
        let mut p = Parts::new((&mut a[..], 0x1000), (&mut c[..], 0x5000), (&mut b[..], 0x9000));
        assert_eq!((p.len(), p.cold_start(), p.split()), (64, 32, 48));
        assert!(p.set_word(8, 7) && p.set_word(32, 5) && p.set_word(48, 9) && p.set_word(56, 11));
        assert!(!p.set_word(60, 1), "a word past the end of the run-once part");
        assert!(!p.set_word(28, 1), "a word straddling the first and cold parts");
        assert!(!p.set_word(44, 1), "a word straddling the cold and run-once parts");
        assert_eq!(
            (p.word(8), p.word(32), p.word(48), p.word(56), p.word(57)),
            (Some(7), Some(5), Some(9), Some(11), None)
        );
        assert_eq!(p.get(28, 8), None);
        assert_eq!(p.offset_of(0x1008), Some(8));
        assert_eq!(p.offset_of(0x1020), None, "just past the first part");
        assert_eq!(p.offset_of(0x5004), Some(36));
        assert_eq!(p.offset_of(0x5010), None, "just past the cold part");
        assert_eq!(p.offset_of(0x9004), Some(52));
        assert_eq!(p.offset_of(0x9010), None);
        assert_eq!(
            (p.addr_of(31), p.addr_of(32), p.addr_of(47), p.addr_of(48), p.addr_of(63)),
            (0x101f, 0x5000, 0x500f, 0x9000, 0x900f)
        );
        assert_eq!(p.rest(36).map(<[u8]>::len), Some(12));
        assert_eq!(p.rest(52).map(<[u8]>::len), Some(12));
    }

    #[test]
    fn empty_parts_are_skipped() {
        let (a, none, b) = (vec![1u8; 16], Vec::<u8>::new(), vec![2u8; 16]);
        let p = Parts::new((&a[..], 0x1000), (&none[..], 0x5000), (&b[..], 0x9000));
        assert_eq!((p.cold_start(), p.split()), (16, 16));
        assert_eq!(p.get(16, 1), Some(&[2u8][..]));
        assert_eq!(p.offset_of(0x5000), None);
        assert_eq!(p.addr_of(16), 0x9000);
    }
}

//! A module's object bytes where they lie: two parts that the file may keep apart.
//!
//! A module's objects are one sequence of bytes, `[0, len)`, in which every offset the format
//! records is taken (pointer bitmap, fix-ups, root, validation): the objects before its run-once
//! objects, `[0, split)`, then the run-once objects, `[split, len)`. The file keeps the first
//! part with the other modules' long-lived objects and may keep the run-once part elsewhere (in
//! the archive's run-once region, pooled with other modules' run-once parts so that their pages
//! can be given back once all of them have run). Each part has its own address. An object never
//! straddles the two parts: `split` is where an object starts.

/// The two parts of one module's objects, each with the address it is mapped (or laid out) at.
/// `B` is `&[u8]` to read them, `&mut [u8]` to also write them.
#[derive(Debug)]
pub struct Parts<B> {
    first: B,
    run_once: B,
    first_addr: u64,
    run_once_addr: u64,
}

impl<B: AsRef<[u8]>> Parts<B> {
    pub fn new(first: B, first_addr: u64, run_once: B, run_once_addr: u64) -> Self {
        Parts { first, run_once, first_addr, run_once_addr }
    }

    /// The length of the module's objects, both parts.
    pub fn len(&self) -> u64 {
        (self.first.as_ref().len() + self.run_once.as_ref().len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the run-once objects begin.
    pub fn split(&self) -> u64 {
        self.first.as_ref().len() as u64
    }

    pub fn first(&self) -> &[u8] {
        self.first.as_ref()
    }

    pub fn run_once(&self) -> &[u8] {
        self.run_once.as_ref()
    }

    /// A read-only view of the same bytes.
    pub fn view(&self) -> Parts<&[u8]> {
        Parts::new(self.first.as_ref(), self.first_addr, self.run_once.as_ref(), self.run_once_addr)
    }

    /// The part holding offset `off` and the offset within it.
    fn locate(&self, off: u64) -> (&[u8], u64) {
        let split = self.split();
        if off < split {
            (self.first.as_ref(), off)
        } else {
            (self.run_once.as_ref(), off - split)
        }
    }

    /// The `n` bytes at offset `off`, if they lie inside one part.
    #[inline]
    pub fn get(&self, off: u64, n: u64) -> Option<&[u8]> {
        let (part, at) = self.locate(off);
        let end = at.checked_add(n)?;
        part.get(usize::try_from(at).ok()?..usize::try_from(end).ok()?)
    }

    /// The bytes from offset `off` to the end of its part.
    pub fn rest(&self, off: u64) -> Option<&[u8]> {
        let (part, at) = self.locate(off);
        part.get(usize::try_from(at).ok()?..)
    }

    /// The native-endian word at offset `off`, if it lies inside one part.
    #[inline]
    pub fn word(&self, off: u64) -> Option<u64> {
        self.get(off, 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }

    /// The offset of the byte at address `addr`, if it is one of the module's.
    #[inline]
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let (split, len) = (self.split(), self.len());
        if let Some(o) = addr.checked_sub(self.first_addr).filter(|&o| o < split) {
            return Some(o);
        }
        addr.checked_sub(self.run_once_addr).filter(|&o| o < len - split).map(|o| split + o)
    }

    /// The address of the byte at offset `off` (which must lie inside the module).
    #[inline]
    pub fn addr_of(&self, off: u64) -> u64 {
        let split = self.split();
        if off < split {
            self.first_addr + off
        } else {
            self.run_once_addr + (off - split)
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Parts<B> {
    /// Stores `v` as the native-endian word at offset `off`; false if it does not lie inside
    /// one part.
    #[inline]
    pub fn set_word(&mut self, off: u64, v: u64) -> bool {
        let split = self.split();
        let (part, at) = if off < split { (self.first.as_mut(), off) } else { (self.run_once.as_mut(), off - split) };
        let Some(end) = at.checked_add(8) else { return false };
        match part.get_mut(at as usize..end as usize) {
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
        let split = self.split();
        let (part, at) = if off < split { (self.first.as_mut(), off) } else { (self.run_once.as_mut(), off - split) };
        part.get_mut(at as usize..).map(|b| b.as_mut_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_addresses_follow_the_parts() {
        let mut a = vec![0u8; 32];
        let mut b = vec![0u8; 16];
        let mut p = Parts::new(&mut a[..], 0x1000, &mut b[..], 0x9000);
        assert_eq!((p.len(), p.split()), (48, 32));
        assert!(p.set_word(8, 7) && p.set_word(32, 9) && p.set_word(40, 11));
        assert!(!p.set_word(44, 1), "a word past the end of the run-once part");
        assert!(!p.set_word(28, 1), "a word straddling the two parts");
        assert_eq!((p.word(8), p.word(32), p.word(40), p.word(41)), (Some(7), Some(9), Some(11), None));
        assert_eq!(p.get(28, 8), None);
        assert_eq!(p.offset_of(0x1008), Some(8));
        assert_eq!(p.offset_of(0x1020), None, "just past the first part");
        assert_eq!(p.offset_of(0x9004), Some(36));
        assert_eq!(p.offset_of(0x9010), None);
        assert_eq!((p.addr_of(31), p.addr_of(32), p.addr_of(47)), (0x101f, 0x9000, 0x900f));
        assert_eq!(p.rest(36).map(<[u8]>::len), Some(12));
    }
}

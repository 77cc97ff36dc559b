//! A private, copy-on-write memory mapping of an archive file, placed at the archive's preferred
//! address when that address is free.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The page size the archive format lays sections out for.
const PAGE: usize = cds_archive::PAGE_SIZE as usize;

pub struct Mapping {
    ptr: *mut u8,
    len: usize,
    /// Set once any object in the mapping may be referenced by the interpreter; from then on the
    /// mapping is never unmapped (archived objects live as long as the process).
    pinned: std::sync::atomic::AtomicBool,
}

// SAFETY: the mapping is plain memory owned by this value. Access to a module's object bytes is
// serialized by the loader: one thread claims the module under its state lock before touching
// them (the run-ahead thread, or a thread holding the GIL), and once the module is handed to
// the interpreter only threads holding the GIL touch them (see loader.rs).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` privately (reads see the file, writes stay in this process),
    /// at `preferred` if that range is free, elsewhere otherwise.
    pub fn map(file: &File, len: usize, preferred: u64) -> std::io::Result<Mapping> {
        if len == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "empty file"));
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let fd = file.as_raw_fd();
        // SAFETY: a fresh mapping of an open file descriptor; MAP_FIXED_NOREPLACE never replaces
        // an existing mapping (it fails with EEXIST instead), so no memory of the process is
        // disturbed. The result is checked before use.
        let mut ptr = unsafe {
            libc::mmap(preferred as *mut libc::c_void, len, prot, libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            // SAFETY: as above, with the kernel choosing the address.
            ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE, fd, 0) };
        }
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if ptr.is_null() {
            // SAFETY: our own fresh mapping; nothing refers to it yet.
            unsafe { libc::munmap(ptr, len) };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "mapped at address 0"));
        }
        Ok(Mapping { ptr: ptr as *mut u8, len, pinned: false.into() })
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes `[0, end)`, which must never be written while the returned slice lives.
    /// Callers use it for the archive's metadata sections, which nothing writes.
    pub fn prefix(&self, end: usize) -> &[u8] {
        assert!(end <= self.len);
        // SAFETY: inside the mapping, which lives as long as `self`; metadata pages are never
        // written by pycds or the interpreter (objects live only past `objects_off`).
        unsafe { std::slice::from_raw_parts(self.ptr, end) }
    }

    /// Mutable access to `[start, start + len)`.
    ///
    /// SAFETY (caller): the range lies in the objects section, and no other slice or Python
    /// object reference into that range is in use for the slice's lifetime: either the caller
    /// claimed the module under the loader's lock before any of its objects reached the
    /// interpreter, or it holds the GIL and only reads.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, start: usize, len: usize) -> &mut [u8] {
        assert!(start.checked_add(len).is_some_and(|e| e <= self.len));
        self.pinned.store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: bounds asserted above; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// `MADV_POPULATE_WRITE` (Linux 5.14): fault a range in, writable, in one call.
const MADV_POPULATE_WRITE: libc::c_int = 23;

impl Mapping {
    /// Faults `[start, start + len)` in as private writable pages in one system call instead of
    /// two page faults per page (read, then copy-on-write). Used only for ranges that are about
    /// to be written anyway. Failure (an older kernel) is harmless: the pages fault in lazily.
    pub fn populate_for_write(&self, start: usize, len: usize) {
        let page = PAGE;
        let first = start / page * page;
        let end = (start + len).min(self.len);
        if end <= first {
            return;
        }
        // SAFETY: the range lies inside our own mapping; MADV_POPULATE_WRITE only pre-faults
        // pages (copy-on-write for this private mapping) and changes no contents.
        unsafe {
            libc::madvise(self.ptr.add(first) as *mut libc::c_void, end - first, MADV_POPULATE_WRITE);
        }
    }
}

impl Mapping {
    /// Gives back the pages `[start, start + len)` (page-aligned): this process's copies are
    /// dropped, and the range reads as the file again if it is ever touched.
    ///
    /// SAFETY (caller): the range lies in the objects section, and no object on those pages is
    /// referenced (by the interpreter or by any other archived object) or will be (the caller
    /// proved that with the GIL held; the pages may be given back later, by another thread).
    pub unsafe fn release(&self, start: usize, len: usize) {
        self.drop_pages(start, len);
    }

    /// Unmaps this process's view of the pages `[start, start + len)` (page-aligned), which it
    /// has only read: touched again, they read as the file again. Only the process's memory use
    /// changes (the page cache keeps them for other processes).
    ///
    /// SAFETY (caller): the range lies before the objects section (no page this process wrote).
    pub unsafe fn forget_read(&self, start: usize, len: usize) {
        self.drop_pages(start, len);
    }

    /// `MADV_DONTNEED` on `[start, start + len)`: the one way both of the above drop pages.
    /// Private: what makes it safe is each caller's contract.
    fn drop_pages(&self, start: usize, len: usize) {
        assert!(
            start.is_multiple_of(PAGE)
                && len.is_multiple_of(PAGE)
                && start.checked_add(len).is_some_and(|e| e <= self.len)
        );
        // SAFETY: inside our own private mapping (asserted above). MADV_DONTNEED on a private
        // file mapping discards only this process's copies and page-table entries: the range
        // then reads as the file again. That nothing still needs what those copies held is the
        // contract of `release` and `forget_read`, the only callers. Failure leaves the pages
        // as they were, which is harmless.
        unsafe {
            libc::madvise(self.ptr.add(start) as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.pinned.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: unmapping our own mapping, which no object can reference (never pinned).
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}

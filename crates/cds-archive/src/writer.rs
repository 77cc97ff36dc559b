//! Builds an archive in memory and writes it atomically (temporary file, then rename).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::FormatError;
use crate::layout::*;
use crate::meta::ModuleMeta;

/// One module as the dumper produced it. In `objects`, every slot named by an internal
/// relocation holds the *module-relative* offset of its target (native byte order); the builder
/// turns it into an address for the archive's preferred base. Slots named by external
/// relocations hold the address the dumping process had for that external (the address given
/// to [`ArchiveBuilder::external`]).
///
/// `cold` is the offset where the module's cold objects begin (leaves that nothing writes once
/// they are in place, which the archive keeps in its cold region: see `docs/format.md`), and
/// `run_once` where its run-once objects begin (those that only the module's own execution uses,
/// which a loader may release after it); each is where the next part begins when there are none.
/// Nothing before `run_once` may point at or past it.
#[derive(Debug, Clone)]
pub struct ModuleInput {
    pub name: String,
    pub meta: ModuleMeta,
    pub objects: Vec<u8>,
    pub root: u64,
    pub cold: u64,
    pub run_once: u64,
    pub relocs: Vec<Reloc>,
    pub fixups: Vec<Fixup>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub modules: usize,
    pub file_size: u64,
    pub objects_bytes: u64,
    pub metadata_bytes: u64,
    /// Records of the keyed-records section.
    pub keyed: usize,
}

pub struct ArchiveBuilder {
    fingerprint: [u8; 32],
    producer: String,
    preferred_base: u64,
    externals: Vec<External>,
    external_addrs: Vec<u64>,
    external_index: HashMap<External, u32>,
    modules: Vec<ModuleInput>,
    names: HashMap<String, usize>,
    /// Encoding of each distinct interned string -> its number in the interned-strings table.
    interns: HashMap<Vec<u8>, u32>,
    /// Keep the modules' run-once parts in a region of their own (see [`Self::pool_run_once`]).
    pool_run_once: bool,
    /// The keyed records, by key (opaque bytes; see [`Self::add_keyed`]).
    keyed: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The largest key or value a keyed record may have (the section's offsets are 32-bit).
const MAX_KEYED_BYTES: usize = 1 << 24;

impl ArchiveBuilder {
    /// `preferred_base` must be page-aligned; it is the address the archive's first byte is laid
    /// out for.
    pub fn new(fingerprint: [u8; 32], producer: &str, preferred_base: u64) -> Self {
        assert_eq!(preferred_base % PAGE_SIZE, 0, "preferred base must be page-aligned");
        assert!((MIN_BASE..MAX_BASE_END).contains(&preferred_base), "implausible preferred base");
        ArchiveBuilder {
            fingerprint,
            producer: producer.to_owned(),
            preferred_base,
            externals: Vec::new(),
            external_addrs: Vec::new(),
            external_index: HashMap::new(),
            modules: Vec::new(),
            names: HashMap::new(),
            interns: HashMap::new(),
            pool_run_once: false,
            keyed: std::collections::BTreeMap::new(),
        }
    }

    /// When on, every module's run-once part goes into the archive's run-once region, after all
    /// the modules' other objects, in list order and back to back, so that a loader that can tell
    /// when those objects are dead can give back each page of the region once every module with
    /// objects on it has run. Worth it only for interpreters where the loader can tell (reference
    /// counts that move: CPython 3.11); otherwise each module's run-once part follows its other
    /// objects.
    pub fn pool_run_once(&mut self, on: bool) {
        self.pool_run_once = on;
    }

    /// The index of `ext` in the externals table, adding it on first use. `addr` is its
    /// address in the dumping process: slots pointing at it hold that value.
    pub fn external(&mut self, ext: External, addr: u64) -> u32 {
        if let Some(&i) = self.external_index.get(&ext) {
            return i;
        }
        let i = self.externals.len() as u32;
        self.externals.push(ext);
        self.external_addrs.push(addr);
        self.external_index.insert(ext, i);
        i
    }

    /// The number in the interned-strings table of the string whose encoding is `key` (opaque
    /// bytes, equal exactly when the strings are; the table stores them as given), numbering a
    /// new one on first use. Every number given out is written, including those of a module
    /// that is then not added (a few unused strings, never a dangling number). Errors when the
    /// table is full.
    pub fn intern_number(&mut self, key: &[u8]) -> Result<u32, FormatError> {
        if let Some(&n) = self.interns.get(key) {
            return Ok(n);
        }
        let n = self.interns.len() as u32;
        if n + 1 >= MAX_INTERN_COUNT {
            return Err(FormatError::Io("too many distinct interned strings for one archive".into()));
        }
        self.interns.insert(key.to_vec(), n);
        Ok(n)
    }

    /// Stores `value` under `key` in the keyed-records section (both opaque here; the extension
    /// crate defines them). A key added twice keeps its first value. Errors when a key or value
    /// could not be addressed by the section's 32-bit offsets.
    pub fn add_keyed(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), FormatError> {
        if key.len() > MAX_KEYED_BYTES || value.len() > MAX_KEYED_BYTES {
            return Err(FormatError::Io("keyed record too large".into()));
        }
        self.keyed.entry(key).or_insert(value);
        Ok(())
    }

    /// Records in the keyed-records section so far.
    pub fn keyed_count(&self) -> usize {
        self.keyed.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    /// Adds a module. Checks that every relocation and fix-up names an aligned slot inside the
    /// module and every internal target lies inside it, so a bad dumper cannot write a bad file.
    pub fn add_module(&mut self, m: ModuleInput) -> Result<(), FormatError> {
        if self.names.contains_key(&m.name) {
            return Err(FormatError::BadRelocation(format!("module {} added twice", m.name)));
        }
        let len = m.objects.len() as u64;
        if len == 0 || m.root >= len {
            return Err(FormatError::OutOfBounds("root object"));
        }
        if m.run_once > len || !m.run_once.is_multiple_of(OBJECT_ALIGN) {
            return Err(FormatError::OutOfBounds("run-once objects"));
        }
        if m.cold > m.run_once || !m.cold.is_multiple_of(OBJECT_ALIGN) {
            return Err(FormatError::OutOfBounds("cold objects"));
        }
        for r in &m.relocs {
            check_slot(r.slot, len)?;
            match r.target {
                RelocTarget::Internal => {
                    let v = read_slot(&m.objects, r.slot as u64);
                    if v >= len {
                        return Err(FormatError::BadRelocation(format!(
                            "internal target {v} outside module of {len} bytes"
                        )));
                    }
                }
                RelocTarget::External(i) => {
                    let addr = self.external_addrs.get(i as usize);
                    if addr != Some(&read_slot(&m.objects, r.slot as u64)) {
                        return Err(FormatError::BadRelocation(format!(
                            "slot {} does not hold the address of external {i}",
                            r.slot
                        )));
                    }
                }
            }
        }
        for f in &m.fixups {
            check_slot(f.slot, len)?;
        }
        self.names.insert(m.name.clone(), self.modules.len());
        self.modules.push(m);
        Ok(())
    }

    /// Where each module's three parts go in the objects section (each 16-byte aligned), the
    /// section's length, the cold region and the run-once region (offset and length,
    /// page-aligned; the run-once region empty unless [`Self::pool_run_once`]). Modules are laid
    /// out in list order (the order the traced program imported them in), so that modules
    /// imported together share pages: their first parts (each followed by its run-once part when
    /// those are not pooled), then the cold region with every module's cold part, then the
    /// run-once region.
    fn place_objects(&self) -> Placement {
        let mut placed = Vec::with_capacity(self.modules.len());
        let mut cursor = 0u64;
        for m in &self.modules {
            let first = align_up(cursor, OBJECT_ALIGN);
            cursor = first + m.cold;
            let run_once = if self.pool_run_once { 0 } else { align_up(cursor, OBJECT_ALIGN) };
            if !self.pool_run_once {
                cursor = run_once + (m.objects.len() as u64 - m.run_once);
            }
            placed.push([first, 0, run_once]);
        }
        // Each pooled region starts on a page of its own and ends on a page boundary.
        let pool = |cursor: &mut u64, part: &dyn Fn(&ModuleInput) -> u64, i: usize, placed: &mut Vec<[u64; 3]>| {
            let region = align_up(*cursor, PAGE_SIZE);
            *cursor = region;
            for (m, p) in self.modules.iter().zip(placed.iter_mut()) {
                p[i] = align_up(*cursor, OBJECT_ALIGN);
                *cursor = p[i] + part(m);
            }
            let end = align_up(*cursor, PAGE_SIZE);
            *cursor = end;
            (region, end - region)
        };
        let has_cold = self.modules.iter().any(|m| m.run_once > m.cold);
        let cold =
            if has_cold { pool(&mut cursor, &|m: &ModuleInput| m.run_once - m.cold, 1, &mut placed) } else { (0, 0) };
        let run_once = if self.pool_run_once {
            pool(&mut cursor, &|m: &ModuleInput| m.objects.len() as u64 - m.run_once, 2, &mut placed)
        } else {
            (0, 0)
        };
        Placement { parts: placed, objects_len: cursor, cold, run_once }
    }

    /// Lays the archive out and returns its bytes.
    pub fn build(mut self) -> Result<(Vec<u8>, WriteStats), FormatError> {
        // Blob: producer string, every module's name, then per module (in dump order) its meta,
        // pointer bitmap and fix-ups. Lookups read names of any module; the rest is read once, at
        // the module's first import, so a loader can give those pages back behind it.
        let mut blob: Vec<u8> = Vec::new();
        blob.extend_from_slice(self.producer.as_bytes());
        let mut names = Vec::with_capacity(self.modules.len());
        for m in &self.modules {
            names.push(push(&mut blob, m.name.as_bytes())?);
        }
        struct Placed {
            name: (u32, u32),
            meta: (u32, u32),
            bitmap: (u32, u32),
            fixups: (u32, u32),
            /// Offsets in the objects section of the module's three parts.
            parts: [u64; 3],
        }
        let Placement { parts: offsets, objects_len, cold: cold_region, run_once: region } = self.place_objects();
        // Per region page, how many modules' run-once parts lie on it; each module records the
        // counts of the pages where its part begins and ends.
        let part_pages = |m: &ModuleInput, at: u64| {
            let len = m.objects.len() as u64 - m.run_once;
            region_pages(at - region.0, at + len - region.0)
        };
        let mut parts_on = vec![0u32; (region.1 / PAGE_SIZE) as usize];
        for (m, &[_, _, at]) in self.modules.iter().zip(&offsets) {
            if region.1 > 0 && m.objects.len() as u64 > m.run_once {
                let (first, end) = part_pages(m, at);
                for page in first..end {
                    parts_on[page as usize] += 1;
                }
            }
        }
        let page_parts: Vec<(u32, u32)> = self
            .modules
            .iter()
            .zip(&offsets)
            .map(|(m, &[_, _, at])| {
                if region.1 > 0 && m.objects.len() as u64 > m.run_once {
                    let (first, end) = part_pages(m, at);
                    (parts_on[first as usize], parts_on[end as usize - 1])
                } else {
                    (0, 0)
                }
            })
            .collect();
        let mut placed = Vec::with_capacity(self.modules.len());
        for ((m, &off), name) in self.modules.iter().zip(&offsets).zip(names) {
            let meta = push(&mut blob, &m.meta.encode())?;
            let mut bits = vec![0u8; bitmap_len(m.objects.len() as u64) as usize];
            for r in &m.relocs {
                let word = (r.slot / 8) as usize;
                bits[word / 8] |= 1 << (word % 8);
            }
            let bitmap = push(&mut blob, &bits)?;
            let mut fix = Vec::with_capacity(m.fixups.len() * RECORD_SIZE);
            for f in &m.fixups {
                fix.extend_from_slice(&f.slot.to_le_bytes());
                fix.extend_from_slice(&f.kind.encode().to_le_bytes());
            }
            let fixups = (push(&mut blob, &fix)?.0, m.fixups.len() as u32);
            placed.push(Placed { name, meta, bitmap, fixups, parts: off });
        }

        // Interned strings: a record per number, then each string's bytes (aligned).
        let mut keys: Vec<(&[u8], u32)> = self.interns.iter().map(|(k, &n)| (k.as_slice(), n)).collect();
        keys.sort_unstable_by_key(|&(_, n)| n);
        let intern_count = keys.len() as u32;
        let mut strings = vec![0u8; keys.len() * STRING_RECORD_SIZE];
        for (i, (key, _)) in keys.iter().enumerate() {
            let off = align_up(strings.len() as u64, STRING_ALIGN);
            let (off32, len32) = (u32::try_from(off), u32::try_from(key.len()));
            let (Ok(off32), Ok(len32)) = (off32, len32) else {
                return Err(FormatError::Io("interned strings exceed 4 GiB".into()));
            };
            strings.resize(off as usize, 0);
            strings.extend_from_slice(key);
            let r = &mut strings[i * STRING_RECORD_SIZE..(i + 1) * STRING_RECORD_SIZE];
            wr_u32(r, S_DATA_OFF, off32);
            wr_u32(r, S_LEN, len32);
            wr_u32(r, S_CRC, crc32fast::hash(key));
        }
        // Keyed records: a record per key, in key order (readers search them), then the keys and
        // values. BTreeMap iterates in key order.
        let keyed_count = self.keyed.len();
        let mut keyed = vec![0u8; keyed_count * KEYED_RECORD_SIZE];
        for (i, (k, v)) in self.keyed.iter().enumerate() {
            let (k_off, v_off) = (keyed.len(), keyed.len() + k.len());
            keyed.extend_from_slice(k);
            keyed.extend_from_slice(v);
            let (Ok(k_off), Ok(v_off)) = (u32::try_from(k_off), u32::try_from(v_off)) else {
                return Err(FormatError::Io("keyed records exceed 4 GiB".into()));
            };
            let r = &mut keyed[i * KEYED_RECORD_SIZE..(i + 1) * KEYED_RECORD_SIZE];
            wr_u32(r, K_KEY_OFF, k_off);
            wr_u32(r, K_KEY_LEN, k.len() as u32);
            wr_u32(r, K_VALUE_OFF, v_off);
            wr_u32(r, K_VALUE_LEN, v.len() as u32);
            wr_u32(r, K_CRC, keyed_crc(k, v));
        }
        let n = self.modules.len();
        let index_off = HEADER_SIZE as u64;
        let externals_off = index_off + (n * ENTRY_SIZE) as u64;
        let blob_off = externals_off + (self.externals.len() * EXTERNAL_SIZE) as u64;
        let keyed_off = align_up(blob_off + blob.len() as u64, KEYED_ALIGN);
        let strings_off = align_up(keyed_off + keyed.len() as u64, STRING_ALIGN);
        let objects_off = align_up(strings_off + strings.len() as u64, PAGE_SIZE);
        let file_size = align_up(objects_off + objects_len, PAGE_SIZE);
        // A reader tells internal pointers from external ones by their value: no external may
        // lie where the archive is laid out, and no two externals may share an address.
        let mut addrs = self.external_addrs.clone();
        addrs.sort_unstable();
        let inside = |a: u64| a >= self.preferred_base && a < self.preferred_base + file_size;
        if addrs.windows(2).any(|w| w[0] == w[1]) || addrs.iter().any(|&a| inside(a)) {
            return Err(FormatError::BadRelocation(
                "an external's address is ambiguous (inside the archive or shared)".into(),
            ));
        }
        let mut out = vec![0u8; file_size as usize];

        // Objects, with internal pointers rebased to the preferred address.
        for (m, p) in self.modules.iter_mut().zip(&placed) {
            // A target's address: in the part where it lies.
            let addr_of = |i: usize| self.preferred_base + objects_off + p.parts[i];
            let (cold, split) = (m.cold, m.run_once);
            for r in &m.relocs {
                if r.target == RelocTarget::Internal {
                    let v = read_slot(&m.objects, r.slot as u64);
                    let addr = if v < cold {
                        addr_of(0) + v
                    } else if v < split {
                        addr_of(1) + (v - cold)
                    } else {
                        addr_of(2) + (v - split)
                    };
                    write_slot(&mut m.objects, r.slot as u64, addr);
                }
            }
            for (i, part) in split_parts(m).into_iter().enumerate() {
                let at = (objects_off + p.parts[i]) as usize;
                out[at..at + part.len()].copy_from_slice(part);
            }
        }

        // Index, sorted by name bytes.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| self.modules[a].name.as_bytes().cmp(self.modules[b].name.as_bytes()));
        for (slot, &mi) in order.iter().enumerate() {
            let m = &self.modules[mi];
            let p = &placed[mi];
            let at = index_off as usize + slot * ENTRY_SIZE;
            let e = &mut out[at..at + ENTRY_SIZE];
            wr_u32(e, E_NAME_OFF, p.name.0);
            wr_u32(e, E_NAME_LEN, p.name.1);
            wr_u32(e, E_META_OFF, p.meta.0);
            wr_u32(e, E_META_LEN, p.meta.1);
            wr_u32(e, E_BITMAP_OFF, p.bitmap.0);
            wr_u32(e, E_BITMAP_LEN, p.bitmap.1);
            wr_u32(e, E_FIXUPS_OFF, p.fixups.0);
            wr_u32(e, E_FIXUPS_COUNT, p.fixups.1);
            wr_u64(e, E_OBJECTS_OFF, p.parts[0]);
            wr_u64(e, E_OBJECTS_LEN, m.objects.len() as u64);
            wr_u64(e, E_ROOT_OFF, m.root);
            wr_u64(e, E_RUN_ONCE_OFF, m.run_once);
            wr_u64(e, E_RUN_ONCE_PART_OFF, p.parts[2]);
            wr_u64(e, E_COLD_OFF, m.cold);
            wr_u64(e, E_COLD_PART_OFF, p.parts[1]);
            wr_u32(e, E_FIRST_PAGE_PARTS, page_parts[mi].0);
            wr_u32(e, E_LAST_PAGE_PARTS, page_parts[mi].1);
            let data_crc = data_crc(
                &blob[p.meta.0 as usize..(p.meta.0 + p.meta.1) as usize],
                &blob[p.bitmap.0 as usize..(p.bitmap.0 + p.bitmap.1) as usize],
                &blob[p.fixups.0 as usize..p.fixups.0 as usize + p.fixups.1 as usize * RECORD_SIZE],
                split_parts(m),
            );
            wr_u32(e, E_DATA_CRC, data_crc);
            let crc = entry_crc(e, m.name.as_bytes());
            wr_u32(e, E_ENTRY_CRC, crc);
        }

        for (i, x) in self.externals.iter().enumerate() {
            let at = externals_off as usize + i * EXTERNAL_SIZE;
            wr_u32(&mut out, at, x.kind);
            wr_u64(&mut out, at + 8, x.arg as u64);
            wr_u64(&mut out, at + 16, self.external_addrs[i]);
        }
        out[blob_off as usize..blob_off as usize + blob.len()].copy_from_slice(&blob);
        out[keyed_off as usize..keyed_off as usize + keyed.len()].copy_from_slice(&keyed);
        out[strings_off as usize..strings_off as usize + strings.len()].copy_from_slice(&strings);

        let ext_bytes = out[externals_off as usize..blob_off as usize].to_vec();
        let h = &mut out[..HEADER_SIZE];
        h[..8].copy_from_slice(&MAGIC);
        wr_u32(h, H_VERSION, FORMAT_VERSION);
        wr_u32(h, H_HEADER_SIZE, HEADER_SIZE as u32);
        h[H_FINGERPRINT..H_FINGERPRINT + 32].copy_from_slice(&self.fingerprint);
        wr_u64(h, H_PREFERRED_BASE, self.preferred_base);
        wr_u64(h, H_FILE_SIZE, file_size);
        wr_u64(h, H_INDEX_OFF, index_off);
        wr_u32(h, H_MODULE_COUNT, n as u32);
        wr_u32(h, H_EXTERNALS_COUNT, self.externals.len() as u32);
        wr_u64(h, H_EXTERNALS_OFF, externals_off);
        wr_u64(h, H_BLOB_OFF, blob_off);
        wr_u64(h, H_BLOB_LEN, blob.len() as u64);
        wr_u64(h, H_OBJECTS_OFF, objects_off);
        wr_u64(h, H_OBJECTS_LEN, objects_len);
        wr_u32(h, H_PRODUCER_LEN, self.producer.len() as u32);
        wr_u32(h, H_INTERN_COUNT, intern_count);
        wr_u64(h, H_STRINGS_OFF, strings_off);
        wr_u64(h, H_STRINGS_LEN, strings.len() as u64);
        wr_u32(h, H_KEYED_COUNT, keyed_count as u32);
        wr_u64(h, H_KEYED_OFF, keyed_off);
        wr_u64(h, H_KEYED_LEN, keyed.len() as u64);
        wr_u64(h, H_RUN_ONCE_OFF, region.0);
        wr_u64(h, H_RUN_ONCE_LEN, region.1);
        wr_u64(h, H_COLD_OFF, cold_region.0);
        wr_u64(h, H_COLD_LEN, cold_region.1);
        let crc = header_crc(h, &ext_bytes, self.producer.as_bytes());
        wr_u32(h, H_CRC, crc);

        let stats = WriteStats {
            modules: n,
            file_size,
            objects_bytes: objects_len,
            metadata_bytes: objects_off,
            keyed: keyed_count,
        };
        Ok((out, stats))
    }

    /// Builds the archive and puts it at `path` atomically: the bytes go to a temporary file in
    /// the same directory, which is synced and then renamed over `path`. A process that has the
    /// old archive mapped keeps its (unchanged) pages; a concurrent writer's rename wins whole.
    pub fn write_to(self, path: &Path) -> Result<WriteStats, FormatError> {
        let (bytes, stats) = self.build()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let base = path.file_name().ok_or_else(|| FormatError::Io(format!("{}: not a file path", path.display())))?;
        let nonce =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tmp = dir.join(format!(".{}.{}.{}.tmp", base.to_string_lossy(), std::process::id(), nonce));
        let io =
            |e: std::io::Error, what: &str, p: &Path| FormatError::Io(format!("cannot {what} {}: {e}", p.display()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)
                .map_err(|e| io(e, "create", &tmp))?;
            f.write_all(&bytes).map_err(|e| io(e, "write", &tmp))?;
            f.sync_all().map_err(|e| io(e, "sync", &tmp))?;
            drop(f);
            fs::rename(&tmp, path).map_err(|e| io(e, "rename into place", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|_| stats)
    }
}

/// A module's objects as its three parts: first, cold, run-once.
fn split_parts(m: &ModuleInput) -> [&[u8]; 3] {
    let (first, rest) = m.objects.split_at(m.cold as usize);
    let (cold, run_once) = rest.split_at((m.run_once - m.cold) as usize);
    [first, cold, run_once]
}

fn check_slot(slot: u32, len: u64) -> Result<(), FormatError> {
    if !slot.is_multiple_of(8) || slot as u64 + 8 > len {
        return Err(FormatError::BadRelocation(format!("slot {slot} misaligned or outside module of {len} bytes")));
    }
    Ok(())
}

fn push(blob: &mut Vec<u8>, bytes: &[u8]) -> Result<(u32, u32), FormatError> {
    let off = blob.len();
    if off + bytes.len() > u32::MAX as usize {
        return Err(FormatError::Io("archive metadata exceeds 4 GiB".into()));
    }
    blob.extend_from_slice(bytes);
    Ok((off as u32, bytes.len() as u32))
}

/// Where the objects section puts things (see `ArchiveBuilder::place_objects`): each module's
/// three parts, the section's length, and the cold and run-once regions (offset, length).
struct Placement {
    parts: Vec<[u64; 3]>,
    objects_len: u64,
    cold: (u64, u64),
    run_once: (u64, u64),
}

"""A test-side reader/patcher of the archive container (docs/format.md), written independently of
the Rust crate, so tests can damage archives *and* recompute their checksums: that is how a
structurally wrong but checksum-valid archive is made, to exercise the validation behind the
checksums."""

import struct
import zlib
from dataclasses import dataclass

HEADER = 200
KEYED_RECORD = 24
STRING_RECORD = 16
ENTRY = 104
EXTERNAL = 24

# Header fields: name -> (offset, struct format)
HEADER_FIELDS = {
    "magic": (0, "8s"),
    "format_version": (8, "<I"),
    "header_size": (12, "<I"),
    "fingerprint": (16, "32s"),
    "preferred_base": (48, "<Q"),
    "file_size": (56, "<Q"),
    "index_off": (64, "<Q"),
    "module_count": (72, "<I"),
    "externals_count": (76, "<I"),
    "externals_off": (80, "<Q"),
    "blob_off": (88, "<Q"),
    "blob_len": (96, "<Q"),
    "objects_off": (104, "<Q"),
    "objects_len": (112, "<Q"),
    "producer_len": (120, "<I"),
    "intern_count": (124, "<I"),
    "strings_off": (128, "<Q"),
    "strings_len": (136, "<Q"),
    "header_crc": (144, "<I"),
    "keyed_count": (148, "<I"),
    "keyed_off": (152, "<Q"),
    "keyed_len": (160, "<Q"),
    "run_once_region_off": (168, "<Q"),
    "run_once_region_len": (176, "<Q"),
    "cold_region_off": (184, "<Q"),
    "cold_region_len": (192, "<Q"),
}

ENTRY_FIELDS = {
    "name_off": (0, "<I"),
    "name_len": (4, "<I"),
    "meta_off": (8, "<I"),
    "meta_len": (12, "<I"),
    "bitmap_off": (16, "<I"),
    "bitmap_len": (20, "<I"),
    "fixups_off": (24, "<I"),
    "fixups_count": (28, "<I"),
    "objects_off": (32, "<Q"),
    "objects_len": (40, "<Q"),
    "root_off": (48, "<Q"),
    "run_once_off": (56, "<Q"),
    "data_crc": (64, "<I"),
    "entry_crc": (68, "<I"),
    "run_once_part_off": (72, "<Q"),
    "first_page_parts": (80, "<I"),
    "last_page_parts": (84, "<I"),
    "cold_off": (88, "<Q"),
    "cold_part_off": (96, "<Q"),
}


@dataclass
class Archive:
    b: bytearray

    def h(self, name):
        off, fmt = HEADER_FIELDS[name]
        return struct.unpack_from(fmt, self.b, off)[0]

    def set_h(self, name, value):
        off, fmt = HEADER_FIELDS[name]
        struct.pack_into(fmt, self.b, off, value)

    def entry_at(self, i):
        return self.h("index_off") + i * ENTRY

    def e(self, i, name):
        off, fmt = ENTRY_FIELDS[name]
        return struct.unpack_from(fmt, self.b, self.entry_at(i) + off)[0]

    def set_e(self, i, name, value):
        off, fmt = ENTRY_FIELDS[name]
        struct.pack_into(fmt, self.b, self.entry_at(i) + off, value)

    def blob(self, off, length):
        start = self.h("blob_off") + off
        return bytes(self.b[start:start + length])

    def name(self, i):
        return self.blob(self.e(i, "name_off"), self.e(i, "name_len")).decode()

    def externals(self):
        """The externals table: ``(kind, arg, dumped_addr)`` per entry."""
        off = self.h("externals_off")
        return [struct.unpack_from("<IxxxxqQ", self.b, off + k * EXTERNAL) for k in range(self.h("externals_count"))]

    def index_of(self, name):
        return next(i for i in range(self.h("module_count")) if self.name(i) == name)

    def objects_of_type(self, i, type_addr, refcnt):
        """File offsets of module ``i``'s objects whose header is ``(refcnt, type_addr)``: every
        archived object starts 16-byte aligned with the archived reference count and its type."""
        return [at for start, end in self.parts(i) for at in range(start, end - 15, 16)
                if struct.unpack_from("<qQ", self.b, at) == (refcnt, type_addr)]

    def parts(self, i):
        """File ranges ``[(start, end)] * 3`` of module ``i``'s three parts: its first objects,
        its cold ones (pooled in the cold region) and its run-once ones (which 3.11 archives pool
        in the run-once region)."""
        base = self.h("objects_off")
        first, cold, run_once = (base + self.e(i, f) for f in ("objects_off", "cold_part_off", "run_once_part_off"))
        c, split, length = self.e(i, "cold_off"), self.e(i, "run_once_off"), self.e(i, "objects_len")
        return [(first, first + c), (cold, cold + split - c), (run_once, run_once + length - split)]

    def file_off(self, i, off):
        """File offset of byte ``off`` of module ``i``'s objects (module offsets run through the
        first part, then the cold part, then the run-once part)."""
        for start, end in self.parts(i):
            if off < end - start:
                return start + off
            off -= end - start
        raise AssertionError((i, off))

    def module_off(self, i, at):
        """The module offset of file offset ``at`` (inside module ``i``)."""
        before = 0
        for start, end in self.parts(i):
            if start <= at < end:
                return before + at - start
            before += end - start
        raise AssertionError((i, at))

    def in_run_once(self, i, at):
        """Whether file offset ``at`` lies in module ``i``'s run-once part."""
        start, end = self.parts(i)[2]
        return start <= at < end

    def middle(self, i):
        """A file offset in the middle of module ``i``'s larger part."""
        start, end = max(self.parts(i), key=lambda r: r[1] - r[0])
        return (start + end) // 2

    def fix_header_crc(self):
        ext = self.h("externals_off")
        crc = zlib.crc32(bytes(self.b[:144]))
        crc = zlib.crc32(bytes(self.b[148:HEADER]), crc)
        crc = zlib.crc32(bytes(self.b[ext:ext + EXTERNAL * self.h("externals_count")]), crc)
        crc = zlib.crc32(self.blob(0, self.h("producer_len")), crc)
        self.set_h("header_crc", crc)

    def keyed_record(self, i):
        """File offset of keyed record ``i`` and its ``(key_off, key_len, value_off, value_len)``
        (offsets from the section's start)."""
        at = self.h("keyed_off") + i * KEYED_RECORD
        return at, struct.unpack_from("<IIII", self.b, at)

    def fix_keyed_crc(self, i):
        at, (k_off, k_len, v_off, v_len) = self.keyed_record(i)
        base = self.h("keyed_off")
        crc = zlib.crc32(bytes(self.b[base + k_off:base + k_off + k_len]))
        crc = zlib.crc32(bytes(self.b[base + v_off:base + v_off + v_len]), crc)
        struct.pack_into("<I", self.b, at + 16, crc)

    def fix_entry_crc(self, i):
        at = self.entry_at(i)
        crc = zlib.crc32(bytes(self.b[at:at + 68]))
        crc = zlib.crc32(bytes(self.b[at + 72:at + ENTRY]), crc)
        crc = zlib.crc32(self.blob(self.e(i, "name_off"), self.e(i, "name_len")), crc)
        self.set_e(i, "entry_crc", crc)

    def fix_data_crc(self, i):
        crc = zlib.crc32(self.blob(self.e(i, "meta_off"), self.e(i, "meta_len")))
        crc = zlib.crc32(self.blob(self.e(i, "bitmap_off"), self.e(i, "bitmap_len")), crc)
        crc = zlib.crc32(self.blob(self.e(i, "fixups_off"), 8 * self.e(i, "fixups_count")), crc)
        for start, end in self.parts(i):
            crc = zlib.crc32(bytes(self.b[start:end]), crc)
        self.set_e(i, "data_crc", crc)
        self.fix_entry_crc(i)

    def string_record(self, n):
        """File offset of interned string ``n``'s record and its ``(data_off, len, crc)``."""
        at = self.h("strings_off") + n * STRING_RECORD
        return at, struct.unpack_from("<III", self.b, at)

    def interned(self, n):
        """Interned string ``n`` as stored: code units, then the kind byte."""
        _, (off, length, _) = self.string_record(n)
        start = self.h("strings_off") + off
        return bytes(self.b[start:start + length])

    def intern_refs(self, i):
        """``(file offset, number)`` of the words of module ``i`` that name an interned string
        (bit 63 and bit 0 set, the number in between: docs/format.md)."""
        out = []
        for at in (at for start, end in self.parts(i) for at in range(start, end - 7, 8)):
            (w,) = struct.unpack_from("<Q", self.b, at)
            n = (w >> 1) & 0xFFFFFFFF
            if w == (1 << 63) | (n << 1) | 1 and n < self.h("intern_count"):
                out.append((at, n))
        return out

    def pointer_slots(self, i):
        """Offsets (from the module's start) of the words its bitmap marks as pointers."""
        bits = self.blob(self.e(i, "bitmap_off"), self.e(i, "bitmap_len"))
        return [(byte * 8 + bit) * 8 for byte, v in enumerate(bits) for bit in range(8) if v >> bit & 1]

    def bitmap_byte_at(self, i, slot):
        """File offset of the bitmap byte covering module slot ``slot``, and the bit."""
        word = slot // 8
        return self.h("blob_off") + self.e(i, "bitmap_off") + word // 8, word % 8

    def section_boundaries(self):
        return sorted({
            HEADER, self.h("index_off"), self.h("externals_off"), self.h("blob_off"),
            self.h("blob_off") + self.h("blob_len"), self.h("strings_off"),
            self.h("strings_off") + self.h("strings_len"), self.h("objects_off"),
            self.h("objects_off") + self.h("objects_len"), len(self.b),
            *(start for i in range(self.h("module_count")) for start, _ in self.parts(i)),
        })

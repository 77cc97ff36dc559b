"""Many damaged archives fed to a real interpreter. Every run must print what a plain run prints
and exit 0: no crash, no hang, no wrong code. Damage of three kinds:

- accidental (bit flips anywhere, truncation at every section boundary): caught by sizes and
  checksums;
- every header field changed, with and without a recomputed header checksum;
- structural lies with *recomputed* checksums (entries out of bounds or overlapping another
  module, bitmaps marking non-pointers, pointers out of the module, fix-ups at the wrong
  objects): caught by the bounds and relocation checks behind the checksums;
- object fields no interpreter would write, with recomputed checksums (reference count, string
  state, int size word, code version, tuple hash cache, per interpreter version): caught by the
  structural validation, which names the reason.

``PYCDS_STRESS=N`` multiplies the number of random cases (default 1)."""

import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from archive_tools import ENTRY_FIELDS, HEADER_FIELDS, Archive
from pycds_testing import PYTHON, layout_facts

APP = {
    "main.py": "import json, alpha, pkg.beta\nprint(json.dumps([alpha.A, pkg.beta.f(2), alpha.S, alpha.g(2)]))\n",
    "alpha.py": "A = ('alpha', 1180591620717411303424, -0.0)\nS = sorted({'x', 'y'})\n"
                "NOTE = 'a sentence: the compiler does not intern it'\n"
                "def g(x):\n    return [i * x for i in range(3) if i in {0, 2}]\n",
    "pkg/__init__.py": "",
    "pkg/beta.py": "def f(x):\n    return {'k': x, 'name': __name__}\n",
}
EXPECTED = '[["alpha", 1180591620717411303424, -0.0], {"k": 2, "name": "pkg.beta"}, ["x", "y"], [0, 4]]\n'
SCALE = int(os.environ.get("PYCDS_STRESS", "1"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    for path, text in APP.items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}
    subprocess.run([PYTHON, "main.py"], cwd=root, check=True, capture_output=True,
                   env=dict(env, PYCDSMODE="TRACE", PYCDSLIST=str(root / "mod.lst")))
    subprocess.run([PYTHON, "-m", "cds.dump", "mod.lst", "clean.img"], cwd=root, check=True,
                   capture_output=True, env=env)
    return root, (root / "clean.img").read_bytes(), env


def run_all(root, env, cases):
    """Write each damaged archive and run the app on it; returns the failures."""
    failures = []
    tried = 0
    for label, data in cases:
        img = root / "case.img"
        img.write_bytes(bytes(data))
        img.chmod(0o644)
        try:
            p = subprocess.run([PYTHON, "main.py"], cwd=root, capture_output=True, text=True, timeout=60,
                               env=dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=str(img)))
        except subprocess.TimeoutExpired:
            failures.append((label, "hang"))
            continue
        tried += 1
        if p.returncode != 0 or p.stdout != EXPECTED:
            failures.append((label, p.returncode, p.stdout[-200:], p.stderr[-500:]))
    print(f"{tried} damaged archives run, {len(failures)} failures")
    return failures


def test_clean_archive_serves(clean):
    root, data, env = clean
    assert run_all(root, env, [("clean", data)]) == []
    # The oracle of every case below: this archive, undamaged, serves the app's modules.
    (root / "case.img").write_bytes(data)
    p = subprocess.run([PYTHON, "main.py"], cwd=root, capture_output=True, text=True, timeout=60,
                       env=dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=str(root / "case.img"), PYCDSVERBOSE="2"))
    assert p.stdout == EXPECTED
    for name in ("alpha", "pkg", "pkg.beta", "json"):
        assert f"pycds: served {name} from the archive" in p.stderr, p.stderr
    assert "0 imported normally" in p.stderr


def test_random_bit_flips(clean):
    root, data, env = clean
    rng = random.Random(1234)
    cases = []
    for n in range(60 * SCALE):
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            at = rng.randrange(len(b))
            b[at] ^= 1 << rng.randrange(8)
        cases.append((f"flip#{n}", b))
    assert run_all(root, env, cases) == []


def test_truncation_at_every_section_boundary(clean):
    root, data, env = clean
    a = Archive(bytearray(data))
    cuts = set()
    for boundary in a.section_boundaries():
        cuts.update({boundary - 1, boundary, boundary + 1})
    cases = [(f"cut@{c}", data[:c]) for c in sorted(cuts) if 0 <= c < len(data)]
    assert len(cases) > 15
    assert run_all(root, env, cases) == []


def test_every_header_field_changed(clean):
    root, data, env = clean
    cases = []
    for name, (off, fmt) in HEADER_FIELDS.items():
        size = struct.calcsize(fmt)
        for value in (b"\x00" * size, b"\xff" * size, bytes(x ^ 0x10 for x in data[off:off + size])):
            for recompute in (False, True):
                a = Archive(bytearray(data))
                a.b[off:off + size] = value
                if recompute and name != "header_crc":
                    try:
                        a.fix_header_crc()
                    except Exception:
                        pass  # fields that make the sections unreadable stay as they are
                cases.append((f"header {name}={value[:4].hex()} crc={'fixed' if recompute else 'stale'}", a.b))
    assert run_all(root, env, cases) == []


def _entries(a):
    return range(a.h("module_count"))


def test_structural_lies_with_valid_checksums(clean):
    root, data, env = clean
    base = Archive(bytearray(data))
    cases = []

    def case(label, mutate, *fix):
        a = Archive(bytearray(data))
        mutate(a)
        for i in fix:
            a.fix_data_crc(i)
        cases.append((label, a.b))

    n = base.h("module_count")
    objects_len = base.h("objects_len")
    for i in _entries(base):
        # Entry ranges out of bounds, empty, misaligned, overlapping the next module.
        for field, value in (("objects_off", objects_len), ("objects_off", 2**63), ("objects_len", objects_len + 4096),
                             ("objects_len", 0), ("objects_off", base.e(i, "objects_off") + 8),
                             ("root_off", base.e(i, "objects_len")), ("root_off", 8), ("root_off", 2**64 - 8),
                             ("name_off", 2**32 - 1), ("meta_len", 2**32 - 1), ("bitmap_len", 0),
                             ("fixups_count", 2**31), ("fixups_off", base.h("blob_len")),
                             # Run-once parts past the end, misaligned, inside an object, or
                             # claiming objects that are not run-once (the whole module).
                             ("run_once_off", base.e(i, "objects_len") + 16), ("run_once_off", 8),
                             ("run_once_off", base.e(i, "run_once_off") + 16), ("run_once_off", 0),
                             # The run-once part past the section, misaligned, over the module's
                             # other objects, or (3.11) out of the run-once region.
                             ("run_once_part_off", objects_len), ("run_once_part_off", base.e(i, "run_once_part_off") + 8),
                             ("run_once_part_off", base.e(i, "objects_off")), ("run_once_part_off", 0),
                             # Cold objects after the run-once ones, misaligned, starting inside an
                             # object, or claiming the module's first objects; the cold part past
                             # the section, misaligned, over the module's first part, or out of the
                             # cold region.
                             ("cold_off", base.e(i, "run_once_off") + 16), ("cold_off", 8),
                             ("cold_off", base.e(i, "cold_off") + 16), ("cold_off", 0),
                             ("cold_part_off", objects_len), ("cold_part_off", base.e(i, "cold_part_off") + 8),
                             ("cold_part_off", base.e(i, "objects_off")), ("cold_part_off", 0)):
            def m(a, i=i, field=field, value=value):
                a.set_e(i, field, value)
                a.fix_entry_crc(i)
            case(f"entry {i} {field}={value} (entry crc fixed)", m)
        # The entry claims the next module's objects (data checksum recomputed too).
        j = (i + 1) % n

        def steal(a, i=i, j=j):
            for field in ("objects_off", "objects_len", "root_off", "cold_off", "cold_part_off", "run_once_off",
                          "run_once_part_off"):
                a.set_e(i, field, a.e(j, field))
        case(f"entry {i} points at module {j}'s objects", steal, i)

        slots = base.pointer_slots(i)
        rng = random.Random(i)
        for k in range(6 * SCALE):
            slot = rng.choice(slots)

            def bad_pointer(a, slot=slot, i=i, k=k):
                at = a.file_off(i, slot)
                value = (0, 1, 2**64 - 8, a.h("preferred_base") - 8, a.h("preferred_base") + a.h("file_size"),
                         struct.unpack_from("<Q", a.b, at)[0] + 3)[k % 6]
                struct.pack_into("<Q", a.b, at, value)
            case(f"module {i} pointer slot {slot} rewritten #{k}", bad_pointer, i)

            word = rng.randrange(base.e(i, "objects_len") // 8)

            def mark_non_pointer(a, word=word, i=i):
                at, bit = a.bitmap_byte_at(i, word * 8)
                a.b[at] |= 1 << bit
            case(f"module {i} bitmap marks word {word}", mark_non_pointer, i)

            def unmark(a, slot=slot, i=i):
                at, bit = a.bitmap_byte_at(i, slot)
                a.b[at] &= ~(1 << bit) & 0xFF
            case(f"module {i} bitmap unmarks slot {slot}", unmark, i)

        for k in range(min(base.e(i, "fixups_count"), 6 * SCALE)):
            def fixup(a, k=k, i=i):
                at = a.h("blob_off") + a.e(i, "fixups_off") + 8 * k
                slot, word = struct.unpack_from("<II", a.b, at)
                # Point the fix-up at another word, or give it an unknown kind.
                if k % 2 == 0:
                    slot += 8
                else:
                    word ^= 3
                struct.pack_into("<II", a.b, at, slot, word)
            case(f"module {i} fix-up {k} retargeted", fixup, i)
        for at, number in base.intern_refs(i)[:4 * SCALE]:
            def beyond(a, at=at):
                n = a.h("intern_count") + 5
                struct.pack_into("<Q", a.b, at, 1 << 63 | n << 1 | 1)
            case(f"module {i} interned-string reference at {at} beyond the table", beyond, i)
    assert len(cases) > 100
    assert run_all(root, env, cases) == []


def test_object_lies_with_valid_checksums(clean):
    """Objects whose fields no interpreter would write, behind recomputed checksums: each is
    refused by the structural validation, only its module falls back, and it says why."""
    root, data, env = clean
    facts = layout_facts(env)
    base = Archive(bytearray(data))
    alpha = base.index_of("alpha")
    type_addr = {}
    for kind, arg, addr in base.externals():
        if kind == 1:  # a type object, by its position in the archived kinds
            type_addr[arg] = addr
    args = dict(facts["type_args"])

    def objects(kind):
        found = base.objects_of_type(alpha, type_addr[args[kind]], facts["archived_refcnt"])
        assert found, f"no archived {kind} in alpha"
        return found

    def u32(a, at, f):
        struct.pack_into("<I", a.b, at, f(struct.unpack_from("<I", a.b, at)[0]))

    lies = [
        ("str without the archived refcount", objects("str")[0],
         lambda a, at: struct.pack_into("<q", a.b, at, 1), "archived reference count"),
        ("str marked interned", objects("str")[0],
         lambda a, at: u32(a, at + facts["str_state"], lambda s: s | facts["str_state_interned"]), "malformed string"),
    ]
    if facts["str_state_static"]:
        lies.append(("str without the static mark", objects("str")[0],
                     lambda a, at: u32(a, at + facts["str_state"], lambda s: s & ~facts["str_state_static"]),
                     "malformed string"))
    ints = objects("int")
    if facts["long_tagged"]:
        lies.append(("int with sign bits 3", ints[0],
                     lambda a, at: u32(a, at + facts["long_size_word"], lambda w: w | 3), "malformed int"))
    else:
        lies.append(("int with 2**40 digits", ints[0],
                     lambda a, at: struct.pack_into("<q", a.b, at + facts["long_size_word"], 2**40),
                     "implausible object size"))
    if facts["code_version"] is not None:
        lies.append(("code object with a foreign version", objects("code")[0],
                     lambda a, at: struct.pack_into("<I", a.b, at + facts["code_version"], 7),
                     "without an archived version"))
    if facts["tuple_hash"] is not None:
        lies.append(("tuple with a cached hash", objects("tuple")[0],
                     lambda a, at: struct.pack_into("<q", a.b, at + facts["tuple_hash"], 12345),
                     "with a cached hash"))
    # A tuple that holds the root code object, which comes after it: a cycle (the root's
    # constants lead back to the tuple) or at least not children first.
    root_addr = base.h("preferred_base") + base.file_off(alpha, base.e(alpha, "root_off"))

    def hold_root(a, at):
        slot = at + facts["tuple_items"]
        struct.pack_into("<Q", a.b, slot, root_addr)
        byte, bit = a.bitmap_byte_at(alpha, a.module_off(alpha, slot))
        a.b[byte] |= 1 << bit
    holders = [t for t in objects("tuple") if struct.unpack_from("<q", base.b, t + 16)[0] > 0]
    # The root is the module's run-once code: from a tuple of the run-once part it is a forward
    # pointer; from any object before that part, a pointer into it (which would keep released
    # pages reachable).
    lies.append(("tuple holding an object that comes after it", [t for t in holders if base.in_run_once(alpha, t)][0],
                 hold_root, "points forward"))
    lies.append(("tuple outside the run-once part holding the module's code",
                 [t for t in holders if not base.in_run_once(alpha, t)][0], hold_root, "points into the run-once objects"))
    for label, at, mutate, reason in lies:
        a = Archive(bytearray(data))
        mutate(a, at)
        a.fix_data_crc(alpha)
        img = root / "case.img"
        img.write_bytes(bytes(a.b))
        p = subprocess.run([PYTHON, "main.py"], cwd=root, capture_output=True, text=True, timeout=60,
                           env=dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=str(img), PYCDSVERBOSE="1"))
        assert (p.returncode, p.stdout) == (0, EXPECTED), (label, p.stderr[-1000:])
        assert "alpha: imported normally" in p.stderr and reason in p.stderr, (label, p.stderr[-1000:])
        assert "pkg.beta: imported normally" not in p.stderr, (label, p.stderr[-1000:])


def _run_case(root, env, data):
    img = root / "case.img"
    img.write_bytes(bytes(data))
    return subprocess.run([PYTHON, "main.py"], cwd=root, capture_output=True, text=True, timeout=60,
                          env=dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=str(img), PYCDSVERBOSE="1"))


def test_interned_string_lies_with_valid_checksums(clean):
    """Interned strings live once per archive, in a table; module slots name them by number.
    Behind recomputed checksums: a number beyond the table, a number where the holder needs
    another type than str, a stored string that is not a valid text, and damage the string's own
    checksum catches. Each makes the modules that use the string fall back, saying why, and the
    program's output is unchanged."""
    root, data, env = clean
    base = Archive(bytearray(data))
    names = [base.name(i) for i in range(base.h("module_count"))]
    alpha = base.index_of("alpha")
    used = {i: {n for _, n in base.intern_refs(i)} for i in range(len(names))}
    # A string that only alpha uses (none of the standard library, nor pycds's runtime).
    only_alpha = sorted(used[alpha] - set().union(*(used[i] for i in used if i != alpha)))
    assert only_alpha and len(base.intern_refs(alpha)) > 5

    def fallback(a, reason):
        p = _run_case(root, env, a.b)
        assert (p.returncode, p.stdout) == (0, EXPECTED), (reason, p.stderr[-1000:])
        assert "alpha: imported normally" in p.stderr and reason in p.stderr, (reason, p.stderr[-1000:])
        for name in ("json", "pkg.beta"):
            assert f"{name}: imported normally" not in p.stderr, (reason, p.stderr[-1000:])

    # A number beyond the table.
    a = Archive(bytearray(data))
    at, _ = base.intern_refs(alpha)[0]
    n = a.h("intern_count")
    struct.pack_into("<Q", a.b, at, 1 << 63 | n << 1 | 1)
    a.fix_data_crc(alpha)
    fallback(a, f"names no interned string ({n})")

    # References where the holder needs another type: every pointer field of alpha's code
    # object (its constants tuple, its bytecode tables, ...) made to name string 0.
    a = Archive(bytearray(data))
    root_off = a.e(alpha, "root_off")
    # The code object's pointer fields lie in its fixed part (its bytecode follows it).
    basicsize = int(subprocess.run([PYTHON, "-c", "import types; print(types.CodeType.__basicsize__)"],
                                   check=True, capture_output=True, text=True, env=env).stdout)
    fields = [s for s in a.pointer_slots(alpha) if root_off + 16 <= s < root_off + basicsize]
    assert len(fields) >= 4
    for slot in fields:
        struct.pack_into("<Q", a.b, a.file_off(alpha, slot), 1 << 63 | 1)
        at, bit = a.bitmap_byte_at(alpha, slot)
        a.b[at] &= ~(1 << bit) & 0xFF
    a.fix_data_crc(alpha)
    fallback(a, "where another type is required")

    # The stored text: damaged (its checksum no longer matches), not an encoding of a string
    # (kind byte 3, checksum recomputed), or a code point beyond U+10FFFF (checksum recomputed).
    number = max(only_alpha, key=lambda n: len(base.interned(n)))
    rec, (off, length, _) = base.string_record(number)
    assert length >= 5
    text_at = base.h("strings_off") + off
    a = Archive(bytearray(data))
    a.b[text_at] ^= 0x20
    fallback(a, f"interned string {number} out of bounds or checksum mismatch")
    for label, text in (("malformed", bytes(base.interned(number)[:-1]) + b"\x03"),
                        ("not a valid string", b"\xff\xff\xff\x7f" + b"\x04")):
        a = Archive(bytearray(data))
        a.b[text_at:text_at + len(text)] = text
        struct.pack_into("<II", a.b, rec + 4, len(text), zlib.crc32(text))
        fallback(a, f"interned string {number} is {label}")


@pytest.mark.parametrize("part", ["cold", "run-once"])
def test_each_part_must_start_at_an_object(clean, part):
    """A module whose cold or run-once objects do not start where an object starts is refused
    when the module is first imported: the file keeps the three parts of a module's objects
    apart, so an object running from one part into the next would be read, in memory, from
    whatever follows its part (and the loader later parses the run-once part on its own to prove
    its objects dead, which needs their true boundaries). Here the last string or bytes object
    before the part is made to run into it (its length grown past the end of its own part, data
    checksum recomputed)."""
    root, data, env = clean
    facts = layout_facts(env)
    a = Archive(bytearray(data))
    alpha = a.index_of("alpha")
    args = dict(facts["type_args"])
    types = {arg: addr for kind, arg, addr in a.externals() if kind == 1}
    first, cold, _ = a.parts(alpha)
    before = first if part == "cold" else cold
    assert before[0] < before[1], f"alpha has no objects before its {part} part"
    leaves = [at for kind in ("str", "bytes")
              for at in a.objects_of_type(alpha, types[args[kind]], facts["archived_refcnt"])
              if before[0] <= at < before[1]]
    last = max(leaves)
    # A str's length and a bytes object's size are the word after the header (docs/format.md).
    (size,) = struct.unpack_from("<q", a.b, last + 16)
    struct.pack_into("<q", a.b, last + 16, size + (before[1] - last))
    a.fix_data_crc(alpha)
    p = _run_case(root, env, a.b)
    assert (p.returncode, p.stdout) == (0, EXPECTED), p.stderr[-1000:]
    assert f"{part} objects start at" in p.stderr, p.stderr[-1000:]
    assert "alpha: imported normally" in p.stderr and "inside an object" in p.stderr, p.stderr[-1000:]

"""The archive's metadata that the loader reads once (interned strings' records and bytes, and each
module's metadata, pointer bitmap and fix-ups) is unmapped behind the loader as it goes, so that
after a program's imports those clean pages no longer count in its memory. Reading any of it
again (a module imported anew) reads the same bytes from the file; a module of the archive that
the run never imports stops the saving, never the program."""

import json
import struct

# Many modules with many distinct identifiers: a strings section and bitmaps of several
# fault-around windows (64 KiB) each.
MODULES = 40
FUNCTIONS = 250


def module_source(i):
    return "".join(
        f"def f_{i}_{j}(a_{i}_{j}, b_{i}_{j}=({j}, 'k_{i}_{j}')):\n    return (a_{i}_{j}, b_{i}_{j})\n"
        for j in range(FUNCTIONS)
    )


MAIN = f"""
import importlib, json, sys
mods = [importlib.import_module(f"m{{i}}") for i in range({MODULES})]
print(json.dumps([getattr(m, f"f_{{m.__name__[1:]}}_{{j}}")(j) for m in mods for j in (0, 7, {FUNCTIONS - 1})]))
"""

# After MAIN: count the pages of the archive's metadata (everything before the objects section,
# which nothing writes) that are mapped in the process (/proc/self/pagemap, bit 63), then import
# m3 anew (its metadata is behind the mark by then; reading it again maps pages back in, as many
# as the kernel's fault-around takes).
PROBE = r"""
import json, os, runpy, struct, sys
runpy.run_path(os.path.abspath("main.py"), run_name="__main__")
archive = os.path.abspath("mod.img")
start = next(int(line.split("-")[0], 16) for line in open("/proc/self/maps") if line.rstrip().endswith(archive))
with open(archive, "rb") as f:
    meta = struct.unpack_from("<Q", f.read(152), 104)[0]
with open("/proc/self/pagemap", "rb") as f:
    f.seek(start // 4096 * 8)
    entries = f.read(meta // 4096 * 8)
mapped = sum(1 for k in range(meta // 4096) if struct.unpack_from("<Q", entries, 8 * k)[0] >> 63) * 4096
del sys.modules["m3"]
import m3
again = m3.f_3_9(5)
import cds
print("PROBE" + json.dumps({"again": again, "mapped": mapped, "info": cds.info()}), file=sys.stderr)
"""


def metadata_bytes(archive):
    """Bytes before the objects section (header field objects_off, docs/format.md)."""
    head = archive.read_bytes()[:152]
    return struct.unpack_from("<Q", head, 104)[0]


def write_project(project):
    for i in range(MODULES):
        project.write(f"m{i}.py", module_source(i))
    project.write("main.py", MAIN)
    project.write("probe.py", PROBE)


def test_metadata_read_once_is_unmapped_after_the_imports(project):
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    meta = metadata_bytes(project.archive)
    # The test means something only if the metadata spans many windows.
    assert meta >= 8 * 65536, meta
    proc = project.share("probe.py")
    assert proc.stdout == expected
    probe = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")][0][5:])
    assert [f"m{i}" for i in range(MODULES)] == [n for n in probe["info"]["served"] if n.startswith("m")][:MODULES]
    assert probe["again"] == [5, [9, "k_3_9"]]
    # Without unmapping, the whole metadata would be mapped (every byte of it was read, and
    # fault-around maps its neighbours): now only what is read again or not yet passed.
    assert probe["mapped"] <= meta // 4, (probe["mapped"], meta)


def test_a_module_the_run_never_imports_stops_the_saving_not_the_program(project):
    write_project(project)
    # Traced with m0 imported first, run without it: the modules' mark stays before m0, and
    # the strings numbered for m0 are never made.
    project.write("first.py", "import m0\n" + MAIN)
    project.build("first.py")
    skip = MAIN.replace("range(40)", "range(1, 40)")
    project.write("main.py", skip)
    expected = project.plain("main.py").stdout
    proc = project.share("probe.py")
    assert proc.stdout == expected
    probe = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")][0][5:])
    assert "m0" not in probe["info"]["served"] and "m39" in probe["info"]["served"]
    # Only the re-import of m3 may take the normal path, where its run-once objects were released.
    assert set(probe["info"]["fallbacks"]) <= {"m3"}
    assert all("released" in why for why in probe["info"]["fallbacks"].values())
    assert probe["again"] == [5, [9, "k_3_9"]]

"""The tables that code objects only read in place (line numbers, exception handlers, kinds of
locals) lie in the archive's cold region (docs/format.md), and where nothing relocates them (the
archive at its preferred address, no type object moved: a non-PIE interpreter such as Debian's
3.11) running the served code leaves their pages clean: still the file's pages, shared with
every process that maps the archive, never copied into one. Behaviour that reads them (line
numbers in tracebacks, handlers that catch, `locals()`) matches a normal import."""

import json

from archive_tools import Archive

# Functions with line tables, handlers and locals; the program raises, catches and prints
# tracebacks, so that the interpreter reads every kind of cold table.
WORK = "\n".join(
    f"def work{i}(n):\n"
    f"    total = 0\n"
    f"    for k in range(n):\n"
    f"        try:\n"
    f"            total += {i} // (k % 3)\n"
    f"        except ZeroDivisionError:\n"
    f"            total -= 1\n"
    f"    captured = sorted(locals())\n"
    f"    return total, captured\n"
    for i in range(150)
) + "\ndef fail():\n    x = 1\n    raise KeyError(x)\n"

MAIN = r"""
import json, sys, traceback
import work
out = [getattr(work, f"work{i}")(7) for i in range(150)]
try:
    work.fail()
except KeyError:
    out.append(traceback.format_exc().replace(sys.prefix, ""))
print(json.dumps(out))
"""

# After the program ran: the state of each page of the cold region in this process, read from
# /proc/self/pagemap (bit 63: present; bit 61: a page of the file, not a private copy), and where
# the mapping and the bytes type are, to tell whether relocation had to write the region.
PROBE = r"""
import json, os, runpy, struct, sys
runpy.run_path(os.path.abspath("main.py"), run_name="__main__")
import work
start = None
for line in open("/proc/self/maps"):
    fields = line.split()
    if len(fields) == 6 and fields[5].endswith("mod.img") and start is None:
        start = int(fields[0].split("-")[0], 16) - int(fields[2], 16)
args = json.loads(sys.argv[1])
pages = []
with open("/proc/self/pagemap", "rb") as pm:
    for page in range(args["cold_start"] // 4096, args["cold_end"] // 4096):
        pm.seek((start // 4096 + page) * 8)
        (word,) = struct.unpack("<Q", pm.read(8))
        pages.append([bool(word >> 63 & 1), bool(word >> 61 & 1)])
# Only now (taking a reference to a table writes its page) the tables' addresses.
tables = [id(getattr(getattr(work, f"work{i}").__code__, t)) - start
          for i in range(150) for t in ("co_linetable", "co_exceptiontable")]
print("PROBE" + json.dumps({"start": start, "bytes_type": id(bytes), "pages": pages, "tables": tables}),
      file=sys.stderr)
"""


def test_cold_tables_lie_in_the_cold_region_and_stay_clean_where_nothing_moves(project):
    project.write("work.py", WORK)
    project.write("main.py", MAIN)
    project.write("probe.py", PROBE)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    a = Archive(bytearray(project.archive.read_bytes()))
    base = a.h("objects_off")
    cold = (base + a.h("cold_region_off"), base + a.h("cold_region_off") + a.h("cold_region_len"))
    assert cold[0] < cold[1], "the archive has no cold region"
    work = a.index_of("work")
    assert a.parts(work)[1][0] < a.parts(work)[1][1], "work has no cold objects"

    args = json.dumps({"cold_start": cold[0], "cold_end": cold[1]})
    proc = project.share("probe.py", args)
    assert proc.stdout == expected
    probe = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")][0][5:])
    # Every function's line and exception tables were served from the cold region.
    assert all(cold[0] <= t < cold[1] for t in probe["tables"]), (cold, probe["tables"][:4])
    # The interpreter read them (tracebacks, handlers): some of the region's pages are mapped.
    present = [file for here, file in probe["pages"] if here]
    assert present, "no page of the cold region was read"
    bytes_type = next(addr for kind, arg, addr in a.externals() if kind == 1 and arg == 1)
    moved = probe["start"] != a.h("preferred_base") or probe["bytes_type"] != bytes_type
    if not moved:
        # Nothing relocated them and nothing wrote them: each page is still the file's.
        assert all(present), f"{present.count(False)} of {len(present)} cold pages were copied"

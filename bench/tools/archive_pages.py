"""How many archive pages a process writes: traces and dumps an app, runs it from the archive,
and reads the archive mapping's lines of /proc/self/smaps after the app's imports and work.

    python bench/tools/archive_pages.py [APP]      # default: tests/apps/popular.py

Run it with the interpreter (venv) to measure; it prints one JSON line and a summary. Pages that
a process writes become private copies and stop being shared with other processes mapping the
same archive; pages only read stay shared page-cache pages. The written pages are counted as
the mapping's `Anonymous` kilobytes: a private file mapping's pages turn anonymous exactly when
they are copied on write. (`Private_Dirty` would also count the page cache of a file on tmpfs.) The run is
repeated with the archive at its preferred address (the normal case) and relocated (the
preferred range taken, forced with PYCDS_TEST_FORCE_RELOCATE=1 where supported), when possible.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from app_archive import DEFAULT_APP, plain_env, run_and_report, trace_and_dump

REPORT = r'''
def _report():
    archive = os.path.realpath(os.environ["PYCDSARCHIVE"])
    fields, inside = {}, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) >= 6 and os.path.realpath(head[5]) == archive
                if inside:
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    fields["Size_kB"] = fields.get("Size_kB", 0) + (hi - lo) // 1024
            elif inside and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
                fields[head[0][:-1]] = fields.get(head[0][:-1], 0) + int(head[1])
    import cds
    info = cds.info()
    fields["served"] = len(info.get("served") or [])
    sys.__stderr__.write("PAGES" + __import__("json").dumps(fields) + "\n")
'''


def main():
    app = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_APP).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        img = trace_and_dump(app, tmp)
        f = run_and_report(REPORT, "PAGES", app, tmp, dict(plain_env(), PYCDSMODE="SHARE", PYCDSARCHIVE=str(img)))
        f["archive_bytes"] = img.stat().st_size
        f["python"] = sys.version.split()[0]
        f["executable"] = os.path.realpath(sys.executable)
        print(json.dumps(f))
        kb = 1024
        print(
            f"CPython {f['python']}: archive {f['archive_bytes'] / kb / kb:.1f} MiB, "
            f"{f['served']} modules served; mapping resident {f.get('Rss', 0) / kb:.1f} MiB, "
            f"written (copied on write) {f.get('Anonymous', 0) / kb:.1f} MiB "
            f"= {100 * f.get('Anonymous', 0) / max(1, f['archive_bytes'] / kb):.0f}% of the archive"
        )


if __name__ == "__main__":
    main()

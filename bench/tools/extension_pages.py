"""Which pages of the extension (`cds/_cds*.so`) a process serving an app maps, and which shared
libraries it loads that the app without pycds does not: traces and dumps an app, runs it from
the archive, and at exit reads /proc/self/pagemap for each mapping of the extension.

    python bench/tools/extension_pages.py [APP]      # default: tests/apps/popular.py

Run it with the interpreter (venv) to measure. It prints one JSON line, then each mapping of
the extension as a row of its pages (`#` mapped, `.` not) and the extra libraries. Every process
that serves an archive loads the extension, and its mapped pages count in that process's RSS;
the kernel maps a file's pages in windows (64 KiB) around each page touched, so code that is
never run still costs memory when it lies among code that is (see
crates/cds-python/link/cold-text.ld).
"""

import json
import sys
import tempfile
from pathlib import Path

from app_archive import DEFAULT_APP, plain_env, run_and_report, trace_and_dump

REPORT = r'''
import json, struct

def _libraries():
    with open("/proc/self/maps") as f:
        return sorted({ln.split()[-1] for ln in f if ".so" in ln.split()[-1].rsplit("/", 1)[-1]})

def _report():
    rows = []
    with open("/proc/self/maps") as f:
        maps = [ln.split() for ln in f]
    with open("/proc/self/pagemap", "rb") as pm:
        for m in maps:
            if len(m) < 6 or "/cds/_cds" not in m[5]:
                continue
            lo, hi = (int(x, 16) for x in m[0].split("-"))
            pm.seek(lo // 4096 * 8)
            words = pm.read((hi - lo) // 4096 * 8)
            present = "".join(
                "#" if struct.unpack_from("<Q", words, 8 * i)[0] >> 63 else "."
                for i in range((hi - lo) // 4096)
            )
            rows.append({"perms": m[1], "offset": int(m[2], 16), "pages": present})
    sys.__stderr__.write("EXT" + json.dumps({"mappings": rows, "libraries": _libraries()}) + "\n")
'''


def main():
    app = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_APP).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        img = trace_and_dump(app, tmp)
        # The same app without pycds: which libraries it loads by itself.
        plain_libs = run_and_report(REPORT, "EXT", app, tmp, plain_env())["libraries"]
        f = run_and_report(REPORT, "EXT", app, tmp, dict(plain_env(), PYCDSMODE="SHARE", PYCDSARCHIVE=str(img)))
        plain_names = {x.rsplit("/", 1)[-1] for x in plain_libs}
        extra = [x for x in f["libraries"] if x.rsplit("/", 1)[-1] not in plain_names and "/cds/_cds" not in x]
        out = {
            "python": sys.version.split()[0],
            "mappings": [
                {"perms": m["perms"], "offset": m["offset"], "pages": len(m["pages"]),
                 "mapped": m["pages"].count("#")}
                for m in f["mappings"]
            ],
            "extra_libraries": extra,
        }
        print(json.dumps(out))
        total = sum(m["pages"].count("#") for m in f["mappings"])
        print(f"CPython {out['python']}: the extension has {total} pages mapped ({total * 4} KiB)")
        for m in f["mappings"]:
            print(f"  {m['perms']} at {m['offset']:#8x}: {m['pages'].count('#'):4d} of {len(m['pages']):4d}  {m['pages']}")
        print("  libraries the app without pycds does not load (besides the extension):", ", ".join(extra) or "none")


if __name__ == "__main__":
    main()

"""Where the memory of N concurrent processes goes, mapping by mapping, plain against pycds.

    python3 bench/tools/pss_breakdown.py [--procs 8] [--workload app] [--work-dir DIR]

Run after `python bench/run.py` (it reuses its work directory: the venvs and the workload's
pycds archive). For each side it starts N processes of the workload, each parked after its work
(`BENCH_WAIT=1`, as the benchmark's PSS figure), reads `/proc/PID/smaps` of every one, and
sums `Pss`, `Rss` and `Private_Dirty` by mapping: the archive, the anonymous memory and the
heap (where plain CPython keeps the code objects it unmarshalled), the extension, libpython and
the rest. The per-process figures show what the archive's private pages cost against the heap
they replace, and what else pycds adds (the extension, its tables, the run-ahead thread's
stack and arena). Sides run one after the other, not interleaved: this is an attribution, the
benchmark's PSS figure is the comparison.
"""

import argparse
import collections
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import WORKLOADS, child_env, require, work_dir_option  # noqa: E402  (the benchmark's own choices)

FIELDS = ("Pss", "Rss", "Private_Dirty")


def mapping_name(line, archive):
    parts = line.split()
    path = parts[5] if len(parts) > 5 else "[anonymous]"
    if path == str(archive):
        return "archive"
    name = Path(path).name if path.startswith("/") else path
    if name.startswith("_cds."):
        return "extension (cds._cds)"
    return name


def smaps(pid, archive):
    sums = collections.defaultdict(collections.Counter)
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if not head.endswith(":"):
                name = mapping_name(line, archive)
            elif head[:-1] in FIELDS:
                sums[name][head[:-1]] += int(line.split()[1])
    return sums


def measure(py, env, script, procs, archive):
    started = []
    try:
        for _ in range(procs):
            p = subprocess.Popen([str(py), script.name], cwd=script.parent, env=dict(env, BENCH_WAIT="1"),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            started.append(p)
            for line in p.stdout:
                if "READY" in line:
                    break
            else:
                sys.exit(f"{py} {script.name} exited before it was ready (status {p.wait()})")
        total = collections.defaultdict(collections.Counter)
        for p in started:
            for name, c in smaps(p.pid, archive).items():
                total[name].update(c)
        return total
    finally:
        for p in started:
            p.stdin.close()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    work_dir_option(ap)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--workload", default="app")
    ap.add_argument("--top", type=int, default=8, help="mappings listed per side (the rest are summed)")
    args = ap.parse_args()
    work = args.work_dir.resolve()
    archive = (work / "archives" / f"{args.workload}.pycds.img").resolve()
    script = WORKLOADS / f"{args.workload}.py"
    sides = {
        "plain": (work / "venv-plain/bin/python", child_env()),
        "pycds": (work / "venv-pycds/bin/python", child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(archive)})),
    }
    require(archive, *(py for py, _ in sides.values()))
    n = args.procs
    results = {side: measure(py, env, script, n, archive) for side, (py, env) in sides.items()}
    mib = 1024.0
    for side, total in results.items():
        pss = sum(c["Pss"] for c in total.values())
        print(f"== {side}: PSS of {n} {args.workload} processes {pss / mib:.1f} MiB; per process (MiB):")
        print(f"   {'mapping':34} {'Pss':>7} {'Rss':>7} {'Private_Dirty':>13}")
        ranked = sorted(total.items(), key=lambda kv: -kv[1]["Pss"])
        rest = collections.Counter()
        for name, c in ranked[args.top:]:
            rest.update(c)
        for name, c in ranked[: args.top] + [("(the rest)", rest)]:
            print(f"   {name[:34]:34} {c['Pss'] / mib / n:7.2f} {c['Rss'] / mib / n:7.2f} {c['Private_Dirty'] / mib / n:13.2f}")
    plain, pycds = results["plain"], results["pycds"]

    def private(total, names):
        return sum(total[k]["Private_Dirty"] for k in names) / mib / n

    heap = ("[heap]", "[anonymous]")
    print(f"per process: plain heap+anonymous {private(plain, heap):.2f} MiB; pycds heap+anonymous "
          f"{private(pycds, heap):.2f} + archive private {private(pycds, ('archive',)):.2f} MiB; "
          f"PSS difference {(sum(c['Pss'] for c in pycds.values()) - sum(c['Pss'] for c in plain.values())) / mib / n:+.2f} MiB")


if __name__ == "__main__":
    main()

"""Plots for the pycds benchmark: ``python bench/plot.py results.json OUTDIR``.

run.py calls this with the interpreter of its own tooling venv (bench/.work/venv-tools), which
is the only place matplotlib is installed; the measured venvs never see it. Prints the name of
each PNG it writes.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIDES = ("plain", "seed", "pycds")
COLORS = {"plain": "#7f7f7f", "seed": "#d62728", "pycds": "#1f77b4", "floor": "#2ca02c"}


def q(stats, sid, key):
    s = stats.get(sid) or {}
    return s.get(key)


def failed(stats, sid):
    s = stats.get(sid) or {}
    return bool(s.get("failed"))


def unavailable(stats, sid):
    """The side could not be installed for this interpreter (e.g. the seed on 3.13): n/a."""
    s = stats.get(sid) or {}
    return bool(s.get("unavailable"))


def bars(ax, groups, series, values, errors=None, fail_marks=None, ylabel=""):
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ys = [values[name][i] if values[name][i] is not None else 0 for i in range(len(groups))]
        err = None
        if errors:
            err = [[e[0] if e else 0 for e in errors[name]], [e[1] if e else 0 for e in errors[name]]]
        ax.bar(xs, ys, width, label=name, color=COLORS.get(name), yerr=err, capsize=2)
        for i, x in enumerate(xs):
            if values[name][i] is None:
                mark = "failed" if fail_marks and fail_marks[name][i] else "n/a"
                # at the foot of the axes (axes coordinates in y: also right on a log scale)
                ax.text(x, 0.01, mark, rotation=90, ha="center", va="bottom", fontsize=7,
                        color=COLORS.get(name), transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def plot_wall(res, outdir):
    st = res["stats"]
    groups = res["workloads"] + ["empty"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    vals = {x: [] for x in SIDES}
    errs = {x: [] for x in SIDES}
    fails = {x: [] for x in SIDES}
    rat = {x: [] for x in SIDES[1:]}
    for g in groups:
        base = q(st, f"{g}/plain", "wall")
        for x in SIDES:
            w = q(st, f"{g}/{x}", "wall")
            vals[x].append(w[1] * 1e3 if w else None)
            errs[x].append(((w[1] - w[0]) * 1e3, (w[2] - w[1]) * 1e3) if w else None)
            fails[x].append(failed(st, f"{g}/{x}"))
            if x != "plain":
                rat[x].append(w[1] / base[1] if w and base else None)
    small = [i for i, g in enumerate(groups) if not g.startswith("scale-")]
    bars(axes[0], [groups[i] for i in small], SIDES,
         {x: [vals[x][i] for i in small] for x in SIDES},
         {x: [errs[x][i] for i in small] for x in SIDES},
         {x: [fails[x][i] for i in small] for x in SIDES}, "ms (median, IQR)")
    axes[0].set_title("whole-process wall time")
    bars(axes[1], groups, SIDES[1:], rat, None, {x: fails[x] for x in SIDES[1:]},
         "side / plain (below 1 = faster)")
    axes[1].axhline(1.0, color="black", linewidth=0.8)
    axes[1].set_title("wall time relative to plain CPython (same run)")
    fig.suptitle(title(res))
    fig.tight_layout()
    return save(fig, outdir, "wall.png")


def plot_phases(res, outdir):
    st = res["stats"]
    wls = [w for w in res["workloads"] if not w.startswith("scale-") or w == res["workloads"][-1]]
    fig, axes = plt.subplots(1, len(wls), figsize=(4 * len(wls), 4.5), squeeze=False)
    colors = {"startup": "#9467bd", "imports": "#1f77b4", "work": "#bcbd22", "teardown": "#ff7f0e"}
    for ax, w in zip(axes[0], wls):
        sides = list(SIDES) + ["floor"]
        bottoms = [0.0] * len(sides)
        for ph in ("startup", "imports", "work", "teardown"):
            ys = []
            for x in sides:
                v = q(st, f"{w}/{x}", ph)
                ys.append(v[1] * 1e3 if v and not (x == "floor" and ph != "imports") else 0)
            ax.bar(range(len(sides)), ys, bottom=bottoms, color=colors[ph], label=ph)
            bottoms = [b + y for b, y in zip(bottoms, ys)]
        for i, x in enumerate(sides):
            if failed(st, f"{w}/{x}") and not q(st, f"{w}/{x}", "wall"):
                ax.text(i, 0, "failed", rotation=90, ha="center", va="bottom", fontsize=8)
            elif unavailable(st, f"{w}/{x}"):
                ax.text(i, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(sides)))
        ax.set_xticklabels(["plain", "seed", "pycds", "floor\n(imports only)"], fontsize=8)
        ax.set_title(w)
        ax.set_ylabel("ms (medians)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("where the time goes: start-up, import phase, work, teardown")
    fig.tight_layout()
    return save(fig, outdir, "phases.png")


def plot_scale(res, outdir):
    st = res["stats"]
    ns = res.get("scale_ns") or []
    if not ns:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for x in list(SIDES) + ["floor"]:
        for ax, key in ((axes[0], "wall"), (axes[1], "imports")):
            if key == "wall" and x == "floor":
                continue
            pts = [(n, q(st, f"scale-{n}/{x}", key)) for n in ns]
            pts = [(n, v[1] * 1e3) for n, v in pts if v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS[x], label=x)
            for n in ns:
                if failed(st, f"scale-{n}/{x}") and not q(st, f"scale-{n}/{x}", key):
                    ax.annotate(f"{x} failed", (n, 1), fontsize=7, color=COLORS[x])
    for ax, t in ((axes[0], "whole-process wall"), (axes[1], "import phase")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("modules imported (N)")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"scale workload: {t}")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return save(fig, outdir, "scale.png")


def plot_empty_vs_archive(res, outdir):
    st = res["stats"]
    base = q(st, "empty/plain", "wall")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    any_pts = False
    for x in SIDES[1:]:
        pts = []
        cases = [("empty", res["prep"].get("app", {}).get(x, {}).get("archive_bytes"))]
        for n in res.get("scale_ns") or []:
            cases.append((f"empty-scale-{n}",
                          res["prep"].get(f"scale-{n}", {}).get(x, {}).get("archive_bytes")))
        for case, size in cases:
            v = q(st, f"{case}/{x}", "wall")
            if v and size:
                pts.append((size / 2**20, v[1] * 1e3))
        pts.sort()
        if pts:
            any_pts = True
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS[x], label=f"{x} (SHARE)")
    inactive = [(x, q(st, f"empty-inactive/{x}", "wall")) for x in SIDES[1:]]
    if base:
        ax.axhline(base[1] * 1e3, color=COLORS["plain"], linestyle="--", label="plain")
    for x, v in inactive:
        if v:
            ax.axhline(v[1] * 1e3, color=COLORS[x], linestyle=":", linewidth=0.8,
                       label=f"{x} installed, inactive")
    if not any_pts:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("archive size (MiB)")
    ax.set_ylabel("`python -c pass` wall, ms (median)")
    ax.set_title("cost of an archive that the program does not use")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return save(fig, outdir, "empty_vs_archive.png")


def plot_memory(res, outdir):
    st = res["stats"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = res["workloads"]
    vals = {x: [] for x in SIDES}
    fails = {x: [] for x in SIDES}
    for g in groups:
        for x in SIDES:
            v = q(st, f"{g}/{x}", "hwm_kb")
            vals[x].append(v[1] / 1024 if v else None)
            fails[x].append(failed(st, f"{g}/{x}"))
    bars(axes[0], groups, SIDES, vals, None, fails, "MiB (median VmHWM)")
    axes[0].set_yscale("log")
    axes[0].set_title("peak RSS per process")
    pss = res.get("pss") or {}
    names = [x for x in SIDES]
    ys = [pss.get(x, {}).get("pss_kb", 0) / 1024 for x in names]
    axes[1].bar(names, ys, color=[COLORS[x] for x in names])
    for i, x in enumerate(names):
        if "pss_kb" not in pss.get(x, {}):
            mark = "n/a" if pss.get(x, {}).get("unavailable") else "failed"
            axes[1].text(i, 0, mark, rotation=90, ha="center", va="bottom")
        else:
            axes[1].text(i, ys[i], f"{ys[i]:.0f}", ha="center", va="bottom", fontsize=8)
    axes[1].set_ylabel("MiB")
    axes[1].set_title(f"total PSS of {res['pss_procs']} concurrent app processes")
    fig.tight_layout()
    return save(fig, outdir, "memory.png")


def plot_archives(res, outdir):
    fig, ax = plt.subplots(figsize=(10, 4.5))
    groups = res["workloads"]
    vals = {"pyc": [], "seed": [], "pycds": []}
    for g in groups:
        pr = res["prep"].get(g, {})
        pyc = pr.get("pycds", {}).get("pyc_bytes") or pr.get("seed", {}).get("pyc_bytes")
        vals["pyc"].append(pyc / 2**20 if pyc else None)
        for x in ("seed", "pycds"):
            ab = pr.get(x, {}).get("archive_bytes")
            vals[x].append(ab / 2**20 if ab else None)
    COLORS.setdefault("pyc", "#8c564b")
    bars(ax, groups, ["pyc", "seed", "pycds"], vals, None, None, "MiB")
    ax.set_yscale("log")
    ax.set_title("archive size against the .pyc bytes of the archived modules")
    fig.tight_layout()
    return save(fig, outdir, "archives.png")


def title(res):
    t = f"{res['rounds']} interleaved rounds"
    version = (res.get("machine") or {}).get("python", "").split(" ")[0]
    if version:
        t = f"CPython {version}, {t}"
    if res.get("quick"):
        t += " (--quick)"
    return t


def save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return name


def main(argv):
    with open(argv[0]) as f:
        res = json.load(f)
    outdir = argv[1]
    for fn in (plot_wall, plot_phases, plot_scale, plot_empty_vs_archive, plot_memory, plot_archives):
        try:
            name = fn(res, outdir)
        except Exception as exc:  # one broken plot should not lose the others
            print(f"{fn.__name__} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if name:
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Cross-interpreter safety: an archive made by one interpreter and opened by another is refused
with a clear message, and the program runs normally.

Run from the repository root after the test suite has built a venv for each interpreter
(``.ci/run`` does this last):

    python3 tests/cross_interpreters.py

Every interpreter whose venv exists takes part: the machine's CPython 3.11 (``.venv``, a PIE
build), Debian's non-PIE 3.11 (``.venv-debian311``), 3.13, 3.14 and 3.15 in their chroots
(``.venv-trixie``, ``.venv-sid``, ``.venv-sid-3.15``, run through ``tests/chroot.sh``). Each one dumps the bundled
example app; then each runs the app with every other's archive. Paths are relative to the
repository root, which the chroots see at /pycds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("target/cross")
APP = "examples/demo/app.py"


def interpreters() -> dict[str, tuple[list[str], str]]:
    """name -> (command prefix that enters its chroot, if any; its python, from the root)."""
    found = {}
    for name, venv, chroot in (
        ("3.11-pie", ".venv", None),
        ("3.11-debian-nonpie", ".venv-debian311", None),
        ("3.13-trixie", ".venv-trixie", "trixie"),
        ("3.14-sid", ".venv-sid", "sid"),
        ("3.15-sid", ".venv-sid-3.15", "sid-3.15"),
    ):
        if not (ROOT / venv / "pyvenv.cfg").exists():
            continue
        prefix = ["bash", "tests/chroot.sh", chroot] if chroot else []
        found[name] = (prefix, f"{venv}/bin/python")
    return found


def run(interp: tuple[list[str], str], args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the interpreter's python with `args`; the variables go through `env` inside the
    command, so that they reach a chroot too."""
    prefix, python = interp
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(prefix + ["env", *extra, python, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def main() -> int:
    found = interpreters()
    if len(found) < 2:
        print(f"cross_interpreters: need at least two interpreters with venvs, found {sorted(found)}", file=sys.stderr)
        return 1
    shutil.rmtree(ROOT / WORK, ignore_errors=True)
    (ROOT / WORK).mkdir(parents=True)
    plain: dict[str, str] = {}
    for name, py in found.items():
        p = run(py, [APP])
        assert p.returncode == 0, f"{name}: plain run failed:\n{p.stderr}"
        plain[name] = p.stdout
        lst, img = str(WORK / f"{name}.lst"), str(WORK / f"{name}.img")
        t = run(py, ["-m", "cds", "trace", "-o", lst, "--", APP])
        assert t.returncode == 0, f"{name}: trace failed:\n{t.stderr}"
        d = run(py, ["-m", "cds", "dump", lst, img])
        assert d.returncode == 0 and (ROOT / img).exists(), f"{name}: dump failed:\n{d.stderr}"
        own = run(py, [APP], {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": img, "PYCDSVERBOSE": "1"})
        assert own.returncode == 0 and own.stdout == plain[name], f"{name}: own archive run failed:\n{own.stderr}"
        assert "served" in own.stderr and "0 imported normally" in own.stderr, f"{name}: own archive not used:\n{own.stderr}"
        print(f"{name}: dumped {img}; served from its own archive")
    failures = []
    for maker in found:
        img = str(WORK / f"{maker}.img")
        for user, py in found.items():
            if user == maker:
                continue
            p = run(py, [APP], {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": img, "PYCDSVERBOSE": "1"})
            ok = (
                p.returncode == 0
                and p.stdout == plain[user]
                and "made by another interpreter or build" in p.stderr
            )
            line = next((x for x in p.stderr.splitlines() if "another interpreter" in x), p.stderr.strip()[-300:])
            print(f"{'ok  ' if ok else 'FAIL'} {maker} archive opened by {user}: exit {p.returncode}; {line}")
            if not ok:
                failures.append((maker, user, p.returncode, p.stderr[-2000:]))
    for f in failures:
        print(f"\n{f[0]} -> {f[1]} (exit {f[2]}):\n{f[3]}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

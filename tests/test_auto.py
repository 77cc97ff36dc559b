"""AUTO mode (``PYCDSMODE=AUTO``): a first run records what it imports and a detached writer
makes the archive; later runs are served, and refresh the archive when modules were imported
normally (new, edited, upgraded). Every run is compared with a plain run in a separate
process; the cache is real files, damaged on purpose, shared by many processes at once."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pycds_testing import PYTHON, base_env, run

APP = {
    "main.py": "import json, textwrap, alpha, pkg.beta\n"
               "print(json.dumps([alpha.A, pkg.beta.f(2), textwrap.shorten('a b c d e f', 7)]))\n",
    "alpha.py": "A = 'alpha-1'\n",
    "pkg/__init__.py": "",
    "pkg/beta.py": "def f(x):\n    return x * 10\n",
}


class Auto:
    def __init__(self, project, cache):
        self.project = project
        self.cache = cache

    def env(self, **extra):
        return self.project.env("AUTO", PYCDS_CACHE_DIR=str(self.cache), **extra)

    def run(self, *args, check=True, **extra):
        return run(args, cwd=self.project.root, env=self.env(**extra), check=check)

    def info(self, script="main.py", **extra):
        return self.project.info(script, mode="AUTO", PYCDS_CACHE_DIR=str(self.cache), **extra)

    def archives(self):
        return sorted(self.cache.glob("*.img"))

    def wait(self, timeout=60, pending_ok=False):
        """Waits until no writer is at work and (unless `pending_ok`) nothing is left for one."""
        import fcntl

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [] if pending_ok else list(self.cache.glob("*.new*")) + list(self.cache.glob(".*.tmp"))
            busy = False
            for lock in self.cache.glob("*.lock"):
                with open(lock) as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        fcntl.flock(f, fcntl.LOCK_UN)
                    except OSError:
                        busy = True
            if not pending and not busy:
                return
            time.sleep(0.05)
        raise AssertionError(f"the writer did not finish: {sorted(os.listdir(self.cache))}")


@pytest.fixture
def auto(project, tmp_path):
    for path, text in APP.items():
        project.write(path, text)
    return Auto(project, tmp_path / "cache")


def traced(project):
    """The modules a TRACE run of main.py records (what an archive can serve)."""
    lst = project.root / "traced.lst"
    run(["main.py"], cwd=project.root, env=base_env(PYCDSMODE="TRACE", PYCDSLIST=str(lst)))
    return {json.loads(x)["name"] for x in lst.read_text().splitlines() if '"name"' in x}


def test_first_run_writes_the_archive_and_later_runs_are_served(auto, project):
    plain = project.plain("main.py").stdout
    first = auto.run("main.py")
    assert first.stdout == plain and first.stderr == ""
    auto.wait()
    [archive] = auto.archives()
    assert stat.S_IMODE(auto.cache.stat().st_mode) == 0o700
    info, second = auto.info()
    assert second.stdout == plain
    assert info["mode"] == "AUTO" and info["archive"] == str(archive)
    names = traced(project)
    served = set(info["served"])
    assert len(served & names) >= 0.95 * len(names), names - served
    assert {"alpha", "pkg.beta", "json", "textwrap"} <= served
    assert info["auto"]["writable"] and info["auto"]["refused"] is None
    # Once the probe's own modules are archived too, nothing is new: no refresh is scheduled,
    # and the archive is not rewritten.
    auto.wait()
    mtime = archive.stat().st_mtime_ns
    info, _ = auto.info()
    assert info["auto"]["refresh"] is None and info["fallbacks"] == {}
    auto.wait()
    assert archive.stat().st_mtime_ns == mtime


def test_edit_runs_at_once_and_is_served_after_the_refresh(auto, project):
    auto.run("main.py")
    auto.wait()
    project.write("alpha.py", "A = 'alpha-2, edited'\n")
    info, proc = auto.info()
    assert json.loads(proc.stdout)[0] == "alpha-2, edited"
    assert "alpha" in info["fallbacks"] and "alpha" not in info["served"]
    assert info["auto"]["refresh"], info["auto"]
    auto.wait()
    info, proc = auto.info()
    assert json.loads(proc.stdout)[0] == "alpha-2, edited"
    assert "alpha" in info["served"] and info["fallbacks"] == {}


def test_new_module_is_served_after_the_refresh(auto, project):
    auto.run("main.py")
    auto.wait()
    project.write("gamma.py", "G = 'gamma'\n")
    project.write("main.py", APP["main.py"] + "import gamma\nprint(gamma.G)\n")
    info, proc = auto.info()
    assert proc.stdout.endswith("gamma\n") and "gamma" not in info["served"]
    auto.wait()
    info, _ = auto.info()
    assert "gamma" in info["served"]


def test_mtime_only_change_keeps_modules_served(auto, project):
    auto.run("main.py")
    auto.wait()
    for name in ("alpha.py", "pkg/beta.py"):
        path = project.root / name
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    info, proc = auto.info()
    assert proc.stdout == project.plain("main.py").stdout
    assert {"alpha", "pkg.beta"} <= set(info["served"]) and info["fallbacks"] == {}
    # The archive's records are brought up to date, so the digest is not read at every run.
    auto.wait()
    lst = next(auto.cache.glob("*.lst")).read_text()
    rec = [json.loads(x) for x in lst.splitlines() if '"alpha"' in x][0]
    assert rec["mtime_ns"] == (project.root / "alpha.py").stat().st_mtime_ns


def _wheel(path, version):
    """A minimal wheel of package `verpkg` at `version` (pip installs it offline)."""
    tag = f"verpkg-{version}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("verpkg/__init__.py", f"VERSION = {version!r}\n")
        z.writestr("verpkg/util.py", f"def who():\n    return 'util of {version}'\n")
        z.writestr(f"{tag}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: verpkg\nVersion: {version}\n")
        z.writestr(f"{tag}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{tag}.dist-info/RECORD", "")


def test_pip_install_of_another_version_refreshes_the_archive(auto, project, tmp_path):
    target = tmp_path / "site"
    for version in ("1.0", "2.0"):
        _wheel(tmp_path / f"verpkg-{version}-py3-none-any.whl", version)
    pip = [PYTHON, "-m", "pip", "install", "-q", "--no-index", "--target", str(target)]
    subprocess.run(pip + [str(tmp_path / "verpkg-1.0-py3-none-any.whl")], check=True, env=base_env())
    project.write("main.py", "import verpkg, verpkg.util\nprint(verpkg.VERSION, verpkg.util.who())\n")
    env = {"PYTHONPATH": str(target)}
    auto.run("main.py", **env)
    auto.wait()
    info, proc = auto.info(**env)
    assert proc.stdout == "1.0 util of 1.0\n" and {"verpkg", "verpkg.util"} <= set(info["served"])
    subprocess.run(pip + ["--upgrade", str(tmp_path / "verpkg-2.0-py3-none-any.whl")], check=True, env=base_env())
    info, proc = auto.info(**env)
    assert proc.stdout == "2.0 util of 2.0\n" and "verpkg.util" not in info["served"]
    auto.wait()
    info, proc = auto.info(**env)
    assert proc.stdout == "2.0 util of 2.0\n" and {"verpkg", "verpkg.util"} <= set(info["served"])


def test_a_module_rewritten_at_every_run_is_backed_off(auto, project):
    project.write("churn.py", "N = 0\n")
    project.write("main.py", "import pathlib, churn\n"
                             "pathlib.Path(churn.__file__).write_text(f'N = {churn.N + 1}\\n# ' + 'x' * churn.N + '\\n')\n"
                             "print('ok')\n")
    writes = []
    for _ in range(12):
        auto.run("main.py")
        auto.wait()
        state = json.loads(next(auto.cache.glob("*.json")).read_text())
        writes.append(state["written"])
    # A refresh every other run (a run that finds churn served leaves nothing new), three in a
    # row re-archiving churn, then it is backed off and the runs stop writing.
    assert len(set(writes)) <= 5, writes
    assert len(set(writes[-4:])) == 1, writes
    assert "churn" in state["volatile"]


def test_stampede_of_16_processes_on_an_empty_cache(auto, project):
    plain = project.plain("main.py").stdout
    procs = [subprocess.Popen([PYTHON, "main.py"], cwd=project.root, env=auto.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(16)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out == plain and err == "", err
    auto.wait()
    assert len(auto.archives()) == 1
    leftovers = [p.name for p in auto.cache.iterdir() if p.suffix in (".tmp", ".new") or ".new." in p.name]
    assert leftovers == []
    info, _ = auto.info()
    assert {"alpha", "pkg.beta"} <= set(info["served"])


def _served_then(auto, project, damage, reason):
    """Serves once from a good cache, damages it, and checks that the program still runs as
    plain, falling back for `reason`, and that the old archive survived."""
    plain = project.plain("main.py").stdout
    auto.run("main.py")
    auto.wait()
    [archive] = auto.archives()
    info, _ = auto.info()
    assert "alpha" in info["served"]
    auto.wait()
    before = archive.read_bytes()
    damage()
    project.write("alpha.py", "A = 'alpha-1'  # edited, so a refresh is due\n")
    quiet = auto.run("main.py")
    assert quiet.stdout == plain and quiet.returncode == 0
    loud = auto.run("main.py", PYCDSVERBOSE="1")
    assert loud.stdout == plain
    assert reason in loud.stderr, loud.stderr
    return archive, before


def test_world_writable_cache_is_refused(auto, project):
    archive, before = _served_then(auto, project, lambda: auto.cache.chmod(0o777), "writable by group or others")
    info, _ = auto.info()
    assert info["served"] == [] and "writable by group or others" in info["auto"]["refused"]
    assert archive.read_bytes() == before


def test_cache_owned_by_another_user_is_refused(auto, project):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    archive, before = _served_then(auto, project, lambda: os.chown(auto.cache, 12345, 12345), "owned by uid 12345")
    assert archive.read_bytes() == before


def test_cache_that_is_a_file_runs_normally(auto, project):
    auto.cache.parent.mkdir(parents=True, exist_ok=True)
    auto.cache.write_text("not a directory\n")
    plain = project.plain("main.py").stdout
    assert auto.run("main.py").stdout == plain
    loud = auto.run("main.py", PYCDSVERBOSE="1")
    assert loud.stdout == plain and "is not a directory" in loud.stderr


def _mount(*args):
    return subprocess.run(["mount", *args], capture_output=True, text=True).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(point)):
        pytest.skip("mounting a tmpfs needs root")
    yield point
    subprocess.run(["umount", "-l", str(point)])


def test_read_only_cache_is_used_and_never_written(project, tmpfs):
    for path, text in APP.items():
        project.write(path, text)
    auto = Auto(project, tmpfs / "cache")
    auto.run("main.py")
    auto.wait()
    [archive] = auto.archives()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in auto.cache.iterdir())
    assert _mount("-o", "remount,ro", str(tmpfs))
    project.write("gamma.py", "G = 1\n")
    project.write("main.py", APP["main.py"] + "import gamma\n")
    info, proc = auto.info()
    assert "alpha" in info["served"] and info["auto"]["writable"] is False
    assert sorted((p.name, p.stat().st_mtime_ns) for p in auto.cache.iterdir()) == before


def test_full_file_system_keeps_the_old_archive(project, tmpfs):
    for path, text in APP.items():
        project.write(path, text)
    auto = Auto(project, tmpfs / "cache")
    auto.run("main.py")
    auto.wait()
    [archive] = auto.archives()
    before = archive.read_bytes()
    filler = tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
        except OSError:
            pass
    project.write("big.py", "DATA = " + repr("y" * 500_000) + "\n")
    project.write("main.py", APP["main.py"] + "import big\n")
    plain = project.plain("main.py").stdout
    assert auto.run("main.py").stdout == plain
    auto.wait(pending_ok=True)
    assert archive.read_bytes() == before
    filler.unlink()
    info, _ = auto.info()
    assert "alpha" in info["served"] and "big" not in info["served"]
    auto.wait()
    info, _ = auto.info()
    assert "big" in info["served"]


def test_writer_killed_midway_leaves_the_old_archive_and_no_debris(auto, project):
    auto.run("main.py")
    auto.wait()
    [archive] = auto.archives()
    before = archive.read_bytes()
    # Something new for the writer, then a writer killed while it works.
    project.write("main.py", APP["main.py"] + "import fractions, decimal, statistics, email.message\n")
    auto.run("main.py", PYCDS_AUTO_DETACH="0")
    base = str(archive)[:-4]
    assert Path(base + ".new").exists()
    killed = subprocess.Popen([PYTHON, "-P", "-m", "cds._auto", "write", str(archive)], env=base_env())
    time.sleep(0.15)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert archive.read_bytes() == before or _loads(auto)
    # Debris left by the dead writer is gone after the next run's refresh.
    auto.run("main.py")
    auto.wait()
    names = os.listdir(auto.cache)
    assert not [n for n in names if n.endswith(".tmp") or ".new" in n], names
    info, _ = auto.info()
    assert {"fractions", "statistics"} <= set(info["served"])


def _loads(auto):
    info, _ = auto.info()
    return "alpha" in info["served"]


def test_warm_writes_the_archive_before_returning(auto, project):
    # As in a Dockerfile: `python -m cds warm -- main.py` (it sets AUTO for the program only).
    env = auto.env()
    del env["PYCDSMODE"]
    proc = subprocess.run([PYTHON, "-m", "cds", "warm", "--", "main.py"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == project.plain("main.py").stdout
    [archive] = auto.archives()  # no wait: warm returned after the write
    assert not list(auto.cache.glob("*.new*"))
    info, _ = auto.info()
    assert {"alpha", "pkg.beta", "json"} <= set(info["served"])


def test_run_without_archive_is_auto(auto, project):
    env = auto.env()
    del env["PYCDSMODE"]
    proc = subprocess.run([PYTHON, "-m", "cds", "run", "--", "main.py"], cwd=project.root,
                          env=env, capture_output=True, text=True)
    assert proc.stdout == project.plain("main.py").stdout
    auto.wait()
    assert len(auto.archives()) == 1


def test_cache_list_clear_prune(auto, project, tmp_path):
    auto.run("main.py")
    auto.wait()
    env = auto.env()
    del env["PYCDSMODE"]  # the commands themselves run plainly
    # A second environment's archive in the same cache (as another venv would make).
    shutil.copy(auto.archives()[0], auto.cache / "cpython-000-0000000000000000.img")
    os.utime(auto.cache / "cpython-000-0000000000000000.img", (1, 1))
    cmd = [PYTHON, "-m", "cds", "cache"]
    listed = subprocess.run(cmd + ["list", "--json"], env=env, capture_output=True, text=True, check=True)
    data = json.loads(listed.stdout)
    assert data["cache_dir"] == str(auto.cache) and len(data["archives"]) == 2
    mine = [a for a in data["archives"] if a["modules"]][0]
    assert mine["prefix"] == sys.prefix and mine["interpreter"].startswith("CPython")
    text = subprocess.run(cmd + ["list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "2 archives" in text and "environment " + sys.prefix in text
    size = auto.archives()[0].stat().st_size
    limit_mib = size * 1.5 / 2**20  # room for one archive, not two
    pruned = subprocess.run(cmd + ["prune", "--max-mib", f"{limit_mib:.3f}"], env=env,
                            capture_output=True, text=True, check=True)
    assert "removed 1 archives" in pruned.stdout
    assert [p.name for p in auto.archives()] != ["cpython-000-0000000000000000.img"]
    assert not (auto.cache / "cpython-000-0000000000000000.img").exists()
    cleared = subprocess.run(cmd + ["clear"], env=env, capture_output=True, text=True, check=True)
    assert "removed 1 archives" in cleared.stdout and auto.archives() == []


@pytest.mark.parametrize("env, line", [
    ({"PYCDSMODE": "AUOT"}, "unknown PYCDSMODE='AUOT'"),
    ({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": "/nonexistent/missing.img"}, "does not exist"),
    ({"PYCDSMODE": "SHARE"}, "needs PYCDSARCHIVE"),
    ({"PYCDSMODE": "TRACE"}, "needs PYCDSLIST"),
])
def test_misconfiguration_is_said_at_the_default_verbosity(project, env, line):
    project.write("main.py", "print('ran')\n")
    proc = run(["main.py"], cwd=project.root, env=base_env(**env))
    assert proc.stdout == "ran\n" and proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pycds: ") and line in lines[0], proc.stderr


def test_cds_run_with_a_missing_archive_fails_clearly(project):
    project.write("main.py", "print('ran')\n")
    proc = run(["-m", "cds", "run", "--archive", "missing.img", "--", "main.py"], cwd=project.root, check=False)
    assert proc.returncode == 2 and "missing.img does not exist" in proc.stderr and proc.stdout == ""

"""Many processes at once: tracers appending to one list, dumps replacing an archive that
running and starting processes use, two dumps racing for the same target."""

import json
import subprocess
import threading

from pycds_testing import PYTHON


def _modules(project, n):
    for i in range(n):
        project.write(f"m{i}.py", f"X = {i}\n" + "def f():\n    return X\n" * 20)


def test_concurrent_tracers_lose_and_tear_no_lines(project):
    _modules(project, 40)
    project.write("main.py", "import sys\nfor i in range(40):\n    __import__(f'm{i}')\n")
    procs = [subprocess.Popen([PYTHON, "main.py"], cwd=project.root, env=project.env("TRACE"))
             for _ in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    lines = project.list.read_text().splitlines()
    records = [json.loads(ln) for ln in lines]  # every line is whole
    for i in range(40):
        assert sum(r.get("name") == f"m{i}" for r in records) == 8


def test_redump_while_processes_run_and_start(project):
    _modules(project, 30)
    project.write("main.py", "import sys\ntotal = sum(__import__(f'm{i}').f() for i in range(30))\nprint(total)\n")
    project.build("main.py")
    expected = f"{sum(range(30))}\n"
    failures = []

    def runner():
        for _ in range(6):
            p = subprocess.run([PYTHON, "main.py"], cwd=project.root, env=project.env("SHARE", PYCDSVERBOSE="1"),
                               capture_output=True, text=True, timeout=120)
            # Every run is served whole, from the old archive or the new one, never a mix
            # and never a partial file.
            summary = [ln for ln in p.stderr.splitlines() if ln.startswith("pycds: served ")]
            whole = len(summary) == 1 and summary[0].endswith(", 0 imported normally") \
                and int(summary[0].split()[2]) >= 30
            if p.returncode != 0 or p.stdout != expected or not whole:
                failures.append((p.returncode, p.stdout, p.stderr))

    threads = [threading.Thread(target=runner) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(5):
        project.dump()
    for t in threads:
        t.join()
    assert failures == []


def test_two_dumps_to_one_target(project):
    _modules(project, 30)
    project.write("main.py", "for i in range(30):\n    __import__(f'm{i}')\n")
    project.trace("main.py")
    cmd = [PYTHON, "-m", "cds.dump", str(project.list), str(project.archive)]
    procs = [subprocess.Popen(cmd, cwd=project.root, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    info, proc = project.info("main.py")
    assert {f"m{i}" for i in range(30)} <= set(info["served"])
    leftovers = [p.name for p in project.root.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []

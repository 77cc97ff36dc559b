"""The command-line interface: `pycds` and `python -m cds` {run,warm,cache,trace,dump,inspect}."""

import json
import os
import subprocess
import sys
from pathlib import Path

from pycds_testing import base_env, run


def test_help_lists_every_command():
    out = run(["-m", "cds", "--help"]).stdout
    for word in ("trace", "dump", "run", "warm", "cache", "inspect", "PYCDSMODE", "AUTO"):
        assert word in out
    for cmd in ("trace", "dump", "run", "warm", "cache", "inspect"):
        assert run(["-m", "cds", cmd, "--help"]).stdout.startswith("usage: python -m cds " + cmd)
    assert run(["-m", "cds.dump", "--help"]).stdout.startswith("usage: python -m cds.dump")


def test_trace_dump_run_inspect(project):
    project.write("main.py", "import re, sys, helper\nre.compile('pycds+cli')\nprint(helper.X, sys.argv[1:])\n")
    project.write("helper.py", "X = 42\n")
    t = run(["-m", "cds", "trace", "-o", "mod.lst", "--", "main.py", "a", "--b"], cwd=project.root)
    assert t.stdout == "42 ['a', '--b']\n"
    names = [r["name"] for r in map(json.loads, project.list.read_text().splitlines()) if "name" in r]
    assert "helper" in names
    # trace replaces the list unless --append
    run(["-m", "cds", "trace", "-o", "mod.lst", "--", "main.py"], cwd=project.root)
    assert [r.get("name") for r in map(json.loads, project.list.read_text().splitlines())].count("helper") == 1
    d = run(["-m", "cds", "dump", "mod.lst", "mod.img"], cwd=project.root)
    assert "archived" in d.stdout
    r = run(["-m", "cds", "run", "--archive", "mod.img", "-v", "-v", "--", "main.py", "x"], cwd=project.root)
    assert r.stdout == "42 ['x']\n"
    assert "served helper from the archive" in r.stderr
    i = run(["-m", "cds", "inspect", "mod.img", "--modules"], cwd=project.root)
    assert "fingerprint:" in i.stdout and "0 stale now" in i.stdout and "helper" in i.stdout
    regexes = int(i.stdout.split("regexes:")[1].split()[0])
    assert regexes >= 1 and regexes == json.loads(
        run(["-m", "cds", "inspect", "--json", "mod.img"], cwd=project.root).stdout)["archive"]["regexes"]
    project.write("helper.py", "X = 43  # edited\n")
    i = run(["-m", "cds", "inspect", "mod.img"], cwd=project.root)
    assert "1 stale now" in i.stdout and "stale: helper" in i.stdout
    j = json.loads(run(["-m", "cds", "inspect", "--json", "mod.img"], cwd=project.root).stdout)
    assert j["archive"]["modules"] == len(j["entries"])


def test_inspect_bad_archive_fails_cleanly(project):
    (project.root / "bad.img").write_bytes(b"nope")
    proc = run(["-m", "cds", "inspect", "bad.img"], cwd=project.root, check=False)
    assert proc.returncode == 1 and "truncated" in proc.stderr


def test_run_without_program_is_a_usage_error(project):
    proc = run(["-m", "cds", "run", "--archive", "x.img"], cwd=project.root, check=False, env=base_env())
    assert proc.returncode == 2 and "after `--`" in proc.stderr


def test_version_and_console_script():
    from cds import __version__

    assert run(["-m", "cds", "--version"]).stdout == f"pycds {__version__}\n"
    script = Path(sys.executable).with_name("pycds")
    assert script.exists(), "the pycds console script is not installed"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=base_env())
    assert out.returncode == 0 and out.stdout == f"pycds {__version__}\n"
    helped = subprocess.run([str(script), "inspect", "--help"], capture_output=True, text=True, env=base_env())
    assert helped.stdout.startswith("usage: pycds inspect")


def test_output_to_a_closed_pipe_ends_quietly(project):
    project.write("main.py", "import json, textwrap, email.message, http.client, argparse, logging, asyncio, "
                             "unittest, helper\n")
    project.write("helper.py", "X = 1\n")
    run(["-m", "cds", "trace", "-o", "mod.lst", "--", "main.py"], cwd=project.root)
    run(["-m", "cds", "dump", "mod.lst", "mod.img"], cwd=project.root)
    # `pycds inspect --modules mod.img | head -n 1`: the reader goes away after one line.
    r, w = os.pipe()
    import fcntl

    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # smaller than the listing, so the writer meets EPIPE
    proc = subprocess.Popen([sys.executable, "-m", "cds", "inspect", "--modules", "mod.img"], cwd=project.root,
                            stdout=w, stderr=subprocess.PIPE, env=base_env())
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        first = reader.readline()
    _, err = proc.communicate(timeout=60)
    assert first.startswith(b"archive:")
    assert len(run(["-m", "cds", "inspect", "--modules", "mod.img"], cwd=project.root).stdout) > 8192
    assert err == b"", err.decode()
    assert proc.returncode in (0, 1)

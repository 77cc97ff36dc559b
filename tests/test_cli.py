"""The command-line interface: python -m cds {trace,dump,run,inspect}."""

import json

from pycds_testing import base_env, run


def test_help_lists_every_command():
    out = run(["-m", "cds", "--help"]).stdout
    for word in ("trace", "dump", "run", "inspect", "PYCDSMODE"):
        assert word in out
    for cmd in ("trace", "dump", "run", "inspect"):
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

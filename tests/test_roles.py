"""The three roles through the seeds' interface: environment variables, ``cds.dump.run_dump``,
``python -m cds.dump``, ``PYCDSMODE=DUMP``, plain-name lists, verbosity, ``cds.info()`` and the
cost of the ``.pth`` hook when pycds is not in use."""

import json

import pytest

from pycds_testing import PYTHON, base_env, run

MAIN = "import json, textwrap, appmod\nprint(appmod.hello(), json.dumps([1]))\n"
APPMOD = "def hello():\n    return 'hello'\n"


def make(project):
    project.write("main.py", MAIN)
    project.write("appmod.py", APPMOD)


def test_trace_appends_json_records(project):
    make(project)
    project.trace("main.py")
    project.trace("main.py")
    lines = project.list.read_text().splitlines()
    records = [r for r in map(json.loads, lines) if "name" in r]  # (not the regex records)
    names = [r["name"] for r in records]
    assert names.count("appmod") == 2  # appended, not replaced
    rec = next(r for r in records if r["name"] == "appmod")
    assert rec["origin"] == str(project.root / "appmod.py")
    assert rec["search"][0] == str(project.root)
    assert rec["package"] is False and rec["size"] == len(APPMOD)
    assert next(r for r in records if r["name"] == "json")["package"] is True


@pytest.mark.parametrize("how", ["run_dump", "module", "env"])
def test_every_dump_interface_writes_a_serving_archive(project, how):
    make(project)
    project.trace("main.py")
    lst, img = str(project.list), str(project.archive)
    if how == "run_dump":
        run(["-c", f"import cds.dump; cds.dump.run_dump({lst!r}, {img!r})"], cwd=project.root)
    elif how == "module":
        run(["-m", "cds.dump", lst, img], cwd=project.root)
    else:
        proc = run([], cwd=project.root, env=base_env(PYCDSMODE="DUMP", PYCDSLIST=lst, PYCDSARCHIVE=img))
        assert "archived" in proc.stderr
    info, proc = project.info("main.py")
    assert proc.stdout == "hello [1]\n"
    assert {"appmod", "json", "textwrap"} <= set(info["served"])


def test_dump_mode_does_not_run_the_program(project):
    make(project)
    project.trace("main.py")
    proc = run(["main.py"], cwd=project.root,
               env=base_env(PYCDSMODE="DUMP", PYCDSLIST=project.list, PYCDSARCHIVE=project.archive))
    assert proc.stdout == ""
    assert project.archive.exists()


def test_plain_name_list_is_valid_dump_input(project):
    make(project)
    project.write("pkg/__init__.py", "")
    project.write("pkg/sub.py", "X = 1\n")
    project.write("main.py", MAIN + "import pkg.sub\n")
    project.list.write_text("# the seeds' format: one module name per line\njson\njson.decoder\nappmod\npkg\npkg.sub\n\n")
    run(["-c", f"import cds.dump; cds.dump.run_dump({str(project.list)!r}, {str(project.archive)!r})"],
        cwd=project.root)
    info, proc = project.info("main.py")
    assert proc.stdout == "hello [1]\n"
    assert {"json", "json.decoder", "appmod", "pkg", "pkg.sub"} <= set(info["served"])


def test_dump_runs_no_application_code(project):
    project.write("main.py", "import sidefx\n")
    project.write("sidefx.py", "open('SIDE_EFFECT', 'w').write('ran')\n")
    project.trace("main.py")
    (project.root / "SIDE_EFFECT").unlink()
    project.dump()
    assert not (project.root / "SIDE_EFFECT").exists()
    # Also for a plain-name list, where the dumper resolves names itself.
    project.list.write_text("sidefx\n")
    project.dump()
    assert not (project.root / "SIDE_EFFECT").exists()


def test_bad_list_lines_are_reported_and_skipped(project):
    make(project)
    project.list.write_text("appmod\n{not json\nnot a name!\n{\"no_name\": 1}\nno_such_module_xyz\n")
    proc = run(["-m", "cds.dump", str(project.list), str(project.archive)], cwd=project.root)
    assert "line 2" in proc.stderr and "line 3" in proc.stderr and "line 4" in proc.stderr
    assert "archived 1 modules" in proc.stdout
    verbose = run(["-m", "cds.dump", "-v", str(project.list), str(project.archive)], cwd=project.root)
    assert "skipped no_such_module_xyz: not found" in verbose.stderr


def test_missing_list_fails_clearly(project):
    proc = run(["-m", "cds.dump", str(project.root / "nope.lst"), str(project.archive)], cwd=project.root, check=False)
    assert proc.returncode == 1 and "dump failed" in proc.stderr and "nope.lst" in proc.stderr
    assert not project.archive.exists()


def test_verbose_levels(project):
    make(project)
    project.build("main.py")
    project.write("appmod.py", APPMOD + "# edited\n")
    quiet = project.share("main.py")
    assert quiet.stderr == ""
    one = project.share("main.py", PYCDSVERBOSE="1")
    assert "pycds: appmod: imported normally: source" in one.stderr
    assert "served json" not in one.stderr
    assert "pycds: served" in one.stderr  # the summary at exit
    two = project.share("main.py", PYCDSVERBOSE="2")
    assert "pycds: served json from the archive" in two.stderr


def test_info_reports_mode_archive_served_and_fallbacks(project):
    make(project)
    project.build("main.py")
    project.write("appmod.py", APPMOD + "# edited\n")
    info, _ = project.info("main.py")
    assert info["mode"] == "SHARE"
    assert info["archive"] == str(project.archive)
    assert info["error"] is None
    served = info["served"]
    assert served.index("json") < served.index("json.decoder") < served.index("textwrap")  # import order
    assert set(info["fallbacks"]) == {"appmod"}
    off = run(["-c", "import cds, json; print(json.dumps(cds.info()))"], cwd=project.root)
    assert json.loads(off.stdout) == {"mode": None, "archive": None, "list": None, "error": None,
                                      "served": [], "fallbacks": {}, "released": 0, "released_bytes": 0,
                                      "regexes": 0, "prepared_ahead": 0}


def test_pth_hook_imports_nothing_when_mode_is_unset(project):
    proc = run(["-c", "import sys; print(sorted(m for m in sys.modules if m.startswith('cds')))"])
    assert proc.stdout == "[]\n"
    # A missing archive is recorded natively: the runtime is imported only by cds.info(). An
    # archive named but missing is a misconfiguration: one line even at the default verbosity.
    share = run(["-c", "import sys, cds; print('cds._runtime' in sys.modules); print(cds.info()['error'])"],
                env=base_env(PYCDSMODE="SHARE", PYCDSARCHIVE="/nonexistent.img"))
    first, error = share.stdout.splitlines()
    assert first == "False" and "/nonexistent.img" in error, share.stdout
    assert share.stderr == "pycds: PYCDSARCHIVE=/nonexistent.img does not exist; running without an archive\n"


def test_mode_without_its_files_runs_normally(project):
    make(project)
    for env in ({"PYCDSMODE": "SHARE"}, {"PYCDSMODE": "TRACE"}, {"PYCDSMODE": "bogus"}):
        proc = run(["main.py"], cwd=project.root, env=base_env(PYCDSVERBOSE="1", **env))
        assert proc.stdout == "hello [1]\n"
        assert proc.stderr.startswith("pycds: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert PYTHON


def test_module_names_that_are_not_identifiers_are_archived(project):
    """Like sysconfig's `_sysconfigdata__linux_x86_64-linux-gnu`: a real source module whose
    name has a dash."""
    project.write("odd-name_mod.py", "X = 'odd'\n")
    project.write("main.py", "import importlib\nprint(importlib.import_module('odd-name_mod').X)\n")
    project.build("main.py")
    info, proc = project.info("main.py")
    assert proc.stdout == "odd\n" and "odd-name_mod" in info["served"]

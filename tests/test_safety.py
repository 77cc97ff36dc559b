"""Stale sources, bad archives and changed search paths: the program always runs as without
pycds, the interpreter never crashes or hangs, and PYCDSVERBOSE=1 says why in one line."""

import os
import time

import pytest

from archive_tools import Archive
from pycds_testing import rewrite_header, run

APP = {
    "main.py": "import mod_a, mod_b, pkg.inner\nprint(mod_a.A, mod_b.B, pkg.inner.I)\n",
    "mod_a.py": "A = 'a-original'\n",
    "mod_b.py": "B = 'b-original'\n",
    "pkg/__init__.py": "",
    "pkg/inner.py": "I = 'inner'\n",
}


def make(project):
    for path, text in APP.items():
        project.write(path, text)
    project.build("main.py")


def test_edited_source_falls_back_and_the_rest_is_served(project):
    make(project)
    project.write("mod_a.py", "A = 'a-edited-and-longer'\n")
    info, proc = project.info("main.py")
    assert proc.stdout == project.plain("main.py").stdout == "a-edited-and-longer b-original inner\n"
    assert "changed since the dump" in info["fallbacks"]["mod_a"]
    assert "mod_a" not in info["served"]
    assert {"mod_b", "pkg", "pkg.inner"} <= set(info["served"])


def test_same_size_edit_detected_by_mtime(project):
    make(project)
    path = project.root / "mod_b.py"
    path.write_text("B = 'b-0riginal'\n")  # same length
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    info, proc = project.info("main.py")
    assert proc.stdout == "a-original b-0riginal inner\n"
    assert "mod_b" in info["fallbacks"]


def test_mtime_only_change_is_still_served_by_digest(project):
    """A checkout or a copy that resets mtimes keeps the bytes: the module is still served (its
    digest matches), while a same-size edit with a new mtime falls back (above)."""
    make(project)
    for name in ("mod_a.py", "pkg/inner.py"):
        path = project.root / name
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    info, proc = project.info("main.py")
    assert proc.stdout == "a-original b-original inner\n"
    assert {"mod_a", "mod_b", "pkg.inner"} <= set(info["served"]), info
    assert info["fallbacks"] == {}


def test_deleted_source_is_not_served(project):
    make(project)
    (project.root / "mod_b.py").unlink()
    (project.root / "main.py").write_text("try:\n    import mod_b\nexcept ImportError as e:\n    print('gone', e.name)\n")
    proc = project.share("main.py")
    assert proc.stdout == project.plain("main.py").stdout == "gone mod_b\n"


def test_new_module_earlier_on_the_path_wins(project):
    project.write("app/main.py", "import helper\nprint(helper.WHO)\n")
    project.write("lib/helper.py", "WHO = 'lib'\n")
    env = {"PYTHONPATH": str(project.root / "lib")}
    project.trace("app/main.py", **env)
    project.dump()
    assert "served" in str(project.info("app/main.py", **env)[0]) and \
        "helper" in project.info("app/main.py", **env)[0]["served"]
    # A module with the same name appears in the script's directory, earlier on sys.path.
    project.write("app/helper.py", "WHO = 'shadow'\n")
    info, proc = project.info("app/main.py", **env)
    assert proc.stdout == project.plain("app/main.py", **env).stdout == "shadow\n"
    assert "helper" not in info["served"]
    assert "app/helper.py" in info["fallbacks"]["helper"]


def test_new_package_directory_in_the_same_directory_wins(project):
    project.write("main.py", "import thing\nprint(thing.WHAT)\n")
    project.write("thing.py", "WHAT = 'module'\n")
    project.build("main.py")
    time.sleep(0.01)
    project.write("thing/__init__.py", "WHAT = 'package'\n")
    info, proc = project.info("main.py")
    assert proc.stdout == project.plain("main.py").stdout == "package\n"
    assert "thing" not in info["served"]


def test_changed_directory_with_same_resolution_is_still_served(project):
    make(project)
    project.write("unrelated.txt", "a new file changes the directory's mtime\n")
    info, proc = project.info("main.py")
    assert proc.stdout == "a-original b-original inner\n"
    assert {"mod_a", "mod_b"} <= set(info["served"])


def _corruptions(archive):
    """(label, how to damage the archive file) pairs."""
    def size():
        return archive.stat().st_size

    def of_mod_b(where):
        """A file offset in mod_b's index entry or in the middle of its objects (mod_b is
        imported by the app, so its damage is found when it is first used)."""
        a = Archive(bytearray(archive.read_bytes()))
        i = a.index_of("mod_b")
        if where == "index":
            return a.entry_at(i) + 4
        return a.middle(i)

    def write(data):
        archive.write_bytes(data)

    def flip_at(offset):
        def go():
            b = bytearray(archive.read_bytes())
            b[offset] ^= 0x5A
            write(bytes(b))
        return go

    return [
        ("missing", lambda: archive.unlink()),
        ("empty", lambda: write(b"")),
        ("short", lambda: write(archive.read_bytes()[:100])),
        ("truncated", lambda: write(archive.read_bytes()[: size() // 2])),
        ("garbage", lambda: write(os.urandom(size()))),
        ("text file", lambda: write(b"this is not an archive\n" * 100)),
        ("magic", flip_at(0)),
        ("header field", flip_at(60)),
        ("index", lambda: flip_at(of_mod_b("index"))()),
        ("objects", lambda: flip_at(of_mod_b("objects"))()),
        ("foreign interpreter", lambda: rewrite_header(archive, lambda b: b.__setitem__(slice(16, 48), b"\x01" * 32))),
        ("format version", lambda: rewrite_header(archive, lambda b: b.__setitem__(slice(8, 12), (99).to_bytes(4, "little")))),
        ("directory", lambda: (archive.unlink(), archive.mkdir())),
        ("fifo", lambda: (archive.unlink(), os.mkfifo(archive))),
    ]


@pytest.mark.parametrize("label", [c[0] for c in _corruptions(None)])
def test_bad_archive_runs_normally_with_one_clear_line(project, label):
    make(project)
    damage = dict(_corruptions(project.archive))[label]
    damage()
    expected = project.plain("main.py")
    quiet = project.share("main.py", timeout=60)
    assert quiet.returncode == 0 and quiet.stdout == expected.stdout
    if label == "missing":
        # Named but missing is a misconfiguration, said at the default verbosity too.
        assert quiet.stderr.startswith("pycds: ") and "does not exist" in quiet.stderr
        assert len(quiet.stderr.splitlines()) == 1
    else:
        assert quiet.stderr == ""
    loud = project.share("main.py", PYCDSVERBOSE="1", timeout=60)
    assert loud.stdout == expected.stdout
    lines = [ln for ln in loud.stderr.splitlines() if ln]
    assert lines, "no diagnostic"
    assert all(ln.startswith("pycds: ") for ln in lines), lines
    if label in ("objects", "index"):
        # Opening checks only the header (O(1)); damage to an index entry or to a module's
        # objects is caught by that entry's or module's checksum when it is first used: that
        # module falls back and the rest of the archive is served.
        assert any("checksum mismatch" in ln for ln in lines), lines
    else:
        assert len(lines) == 1, lines
        assert ("does not exist" if label == "missing" else "archive not used") in lines[0]
    if label == "foreign interpreter":
        assert "another interpreter" in lines[0]
    if label == "format version":
        assert "format version 99" in lines[0]


def test_archive_of_another_pycds_build_names_the_build(project):
    """An archive made by another pycds build for the same interpreter (a wheel's archive
    opened by a source build, say) is refused with both pycds builds named, not the layouts."""
    make(project)
    a = Archive(bytearray(project.archive.read_bytes()))
    producer = a.blob(0, a.h("producer_len")).decode()
    assert "; pycds " in producer and ", layouts " in producer, producer
    mine = producer.rsplit(", layouts ", 1)[1]
    other = producer[: -len(mine)] + "0" * len(mine)
    off = a.h("blob_off")
    a.b[off:off + len(producer)] = other.encode()
    a.b[16:48] = bytes(x ^ 0xFF for x in a.b[16:48])  # the fingerprint of that other build
    a.fix_header_crc()
    project.archive.write_bytes(bytes(a.b))
    loud = project.share("main.py", PYCDSVERBOSE="1")
    assert loud.stdout == project.plain("main.py").stdout
    line = [ln for ln in loud.stderr.splitlines() if "another interpreter or build" in ln][0]
    assert f"by pycds {other.split('; pycds ')[1]}, not this pycds {producer.split('; pycds ')[1]}" in line, line


def test_stale_archive_module_never_runs_old_code(project):
    """Edit a module in place many times: every run prints the current source's value."""
    make(project)
    for i in range(5):
        project.write("mod_a.py", f"A = 'version-{i}' + '{'x' * i}'\n")
        assert project.share("main.py").stdout.startswith(f"version-{i}")


@pytest.mark.parametrize("change", ["group-writable", "world-writable", "other owner"])
def test_untrusted_archive_is_refused(project, change):
    make(project)
    if change == "group-writable":
        project.archive.chmod(0o664)
    elif change == "world-writable":
        project.archive.chmod(0o646)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(project.archive, 65534, 65534)
    proc = project.share("main.py", PYCDSVERBOSE="1")
    assert proc.stdout == "a-original b-original inner\n"
    assert proc.stderr.count("\n") == 1 and "refusing to run code from it" in proc.stderr


def test_dumped_archive_is_owner_writable_only_even_with_a_loose_umask(project):
    for path, text in APP.items():
        project.write(path, text)
    project.trace("main.py")
    run(["-c", "import os, sys, runpy; os.umask(0o002); sys.argv = ['cds.dump', 'mod.lst', 'mod.img']; "
               "runpy.run_module('cds.dump', run_name='__main__')"], cwd=project.root)
    assert project.archive.stat().st_mode & 0o022 == 0
    info, _ = project.info("main.py")
    assert "mod_a" in info["served"]


def test_parent_path_extended_at_run_time_is_respected(project):
    """A package that puts an overlay directory first on its __path__: a submodule that
    appears in the overlay after the dump wins, as it would without pycds."""
    project.write("pkg/__init__.py",
                  "import os\n__path__.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, 'overlay'))\n")
    project.write("pkg/sub.py", "WHERE = 'pkg'\n")
    project.write("main.py", "import pkg.sub\nprint(pkg.sub.WHERE)\n")
    (project.root / "overlay").mkdir()
    project.build("main.py")
    info, proc = project.info("main.py")
    assert proc.stdout == "pkg\n" and "pkg.sub" in info["served"]
    project.write("overlay/sub.py", "WHERE = 'overlay'\n")
    info, proc = project.info("main.py")
    assert proc.stdout == project.plain("main.py").stdout == "overlay\n"
    assert "pkg.sub" not in info["served"] and "overlay" in info["fallbacks"]["pkg.sub"]


def test_archive_replaced_while_a_process_runs(project):
    """The dumper renames a new archive into place: a running process keeps its mapping and
    finishes with the code it started with; a new process uses the new archive."""
    make(project)
    project.write("slow.py", "import sys, time, mod_a\nsys.stdout.write('started\\n'); sys.stdout.flush()\n"
                             "sys.stdin.readline()\nimport mod_b, pkg.inner\nprint(mod_a.A, mod_b.B, pkg.inner.I)\n")
    import subprocess
    from pycds_testing import PYTHON
    project.list.write_text("")
    subprocess.run([PYTHON, "slow.py"], cwd=project.root, env=project.env("TRACE"), input="\n",
                   capture_output=True, text=True, check=True)
    project.dump()
    proc = subprocess.Popen([PYTHON, "slow.py"], cwd=project.root, env=project.env("SHARE"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"
    project.write("mod_b.py", "B = 'b-new-version'\n")
    project.dump()  # replaces the archive the running process has mapped
    out, _ = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert out == "a-original b-new-version inner\n"
    info, fresh = project.info("main.py")
    assert fresh.stdout == "a-original b-new-version inner\n" and "mod_b" in info["served"]

"""Command-line interface: ``python -m cds {run,warm,cache,trace,dump,inspect}``."""

import argparse
import os
import sys

_EPILOG = """\
examples (`pycds` is the same command):
  python -m cds run -- app.py --flag                   run app.py in AUTO mode (archive kept in the cache)
  python -m cds warm -- app.py                         run app.py, return once its archive is written
  python -m cds cache list                             the cached archives; also `clear`, `prune`
  python -m cds trace -o mod.lst -- app.py --flag     record what app.py imports
  python -m cds dump mod.lst mod.img                   write the archive
  python -m cds run --archive mod.img -- app.py        run app.py importing from the archive
  python -m cds inspect mod.img                        describe an archive and its stale entries

Everything after `--` is passed to the interpreter as is (so `-- -m pkg.mod` works too).
The same roles are available through PYCDSMODE (AUTO, TRACE, SHARE, DUMP), PYCDSLIST,
PYCDSARCHIVE, PYCDSVERBOSE and PYCDS_CACHE_DIR.
"""


def _exec_python(args, env_updates):
    env = dict(os.environ)
    env.update(env_updates)
    argv = [sys.executable, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _python_args(ns, parser):
    args = list(ns.python_args)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        parser.error("give the program to run after `--`, e.g. `-- app.py` or `-- -m pkg`")
    return args


def cmd_trace(ns, parser):
    args = _python_args(ns, parser)
    if not ns.append:
        try:
            open(ns.output, "w").close()
        except OSError as exc:
            parser.error(f"cannot write {ns.output}: {exc}")
    env = {"PYCDSMODE": "TRACE", "PYCDSLIST": os.path.abspath(ns.output)}
    if ns.verbose:
        env["PYCDSVERBOSE"] = str(ns.verbose)
    _exec_python(args, env)


def cmd_dump(ns, parser):
    from cds import dump

    argv = [ns.list, ns.archive] + (["-v"] if ns.verbose else [])
    return dump.main(argv)


def cmd_run(ns, parser):
    args = _python_args(ns, parser)
    if ns.archive is None:
        env = {"PYCDSMODE": "AUTO"}
    else:
        archive = os.path.abspath(ns.archive)
        if not os.path.exists(archive):
            parser.error(f"archive {ns.archive} does not exist (without --archive, AUTO keeps one in the cache)")
        env = {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": archive}
    if ns.verbose:
        env["PYCDSVERBOSE"] = str(ns.verbose)
    _exec_python(args, env)


def cmd_warm(ns, parser):
    """Runs the program in AUTO mode, then writes its archive before returning (for image
    builds and CI, where a detached writer would be killed with the container step)."""
    import subprocess

    from cds import _auto, _cds

    args = _python_args(ns, parser)
    config = _cds.auto_config()
    if config["refused"]:
        print(f"pycds: cannot warm: {config['refused']}", file=sys.stderr)
        return 1
    if not config["writable"]:
        print(f"pycds: cannot warm: {config['cache_dir']} is not writable", file=sys.stderr)
        return 1
    env = dict(os.environ, PYCDSMODE="AUTO", PYCDS_AUTO_DETACH="0")
    if ns.verbose:
        env["PYCDSVERBOSE"] = str(ns.verbose)
    status = subprocess.run([sys.executable, *args], env=env).returncode
    _auto.write(config["archive"], wait=True)
    if os.path.isfile(config["archive"]) and not _quiet():
        print(f"pycds: {config['archive']} is ready", file=sys.stderr)
    return status


def _quiet():
    return not sys.stderr.isatty()


def cmd_cache(ns, parser):
    import time

    from cds import _auto, _cds

    directory = ns.cache_dir or _cds.auto_config()["cache_dir"]
    if ns.action == "list":
        found = _auto.archives(directory)
        if ns.json:
            import json

            print(json.dumps({"cache_dir": directory, "archives": found}, indent=2))
            return 0
        total = sum(a["bytes"] for a in found)
        print(f"{directory}: {len(found)} archives, {total / 2**20:.1f} MiB (limit {_auto.cache_max() / 2**20:.0f} MiB)")
        for a in reversed(found):
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["last_use"])) if a["last_use"] else "never"
            print(f"  {os.path.basename(a['path'])}  {a['bytes'] / 2**20:7.1f} MiB  {a['modules'] or '?':>5} modules"
                  f"  used {used}\n      {a['interpreter'] or '?'}\n      environment {a['prefix'] or '?'}")
        return 0
    if ns.action == "clear":
        found = _auto.archives(directory)
        for a in found:
            _auto.remove(a["path"])
        print(f"removed {len(found)} archives from {directory}")
        return 0
    limit = None if ns.max_mib is None else int(ns.max_mib * 2**20)
    removed = _auto.prune(directory, limit=limit)
    print(f"removed {len(removed)} archives from {directory}")
    return 0


def cmd_inspect(ns, parser):
    from cds import _cds

    try:
        archive = _cds.Archive(ns.archive)
        stats = archive.stats()
        entries = archive.entries()
    except _cds.ArchiveError as exc:
        print(f"pycds: {exc}", file=sys.stderr)
        return 1
    stale = [e for e in entries if e["stale"]]
    if ns.json:
        import json

        print(json.dumps({"archive": stats, "entries": entries}, indent=2))
        return 0
    mib = 1024 * 1024
    print(f"archive:      {stats['path']}")
    print(f"made by:      {stats['producer']}")
    print(f"fingerprint:  {stats['fingerprint']}")
    print(f"format:       version {stats['format_version']}")
    print(f"modules:      {stats['modules']} ({len(stale)} stale now)")
    print(f"regexes:      {stats['regexes']} compiled regular expressions")
    print(f"size:         {stats['file_bytes'] / mib:.2f} MiB "
          f"(objects {stats['objects_bytes'] / mib:.2f} MiB, "
          f"metadata {stats['metadata_bytes'] / mib:.2f} MiB, {stats['externals']} externals)")
    at = "at its preferred address" if stats["mapped_at"] == stats["preferred_base"] else "relocated"
    print(f"mapped:       {stats['mapped_at']:#x} ({at})")
    if ns.modules:
        for e in entries:
            mark = "STALE " if e["stale"] else ""
            print(f"  {mark}{e['name']:<40} {e['objects_bytes']:>9}  {e['origin']}")
    for e in stale:
        print(f"stale: {e['name']}: {e['stale']}")
    return 0


def main(argv=None):
    """The `pycds` console script and `python -m cds`. Output to a pipe closed early
    (`pycds inspect --modules | head`) ends the command quietly."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, so that a reader gone early is met inside the try
        return status
    except BrokenPipeError:
        # Python's own advice: point stdout at /dev/null so that the flush at exit does not
        # raise again, and exit with status 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _prog():
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "pycds" if name == "pycds" else "python -m cds"


def _main(argv=None):
    from cds import __version__

    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="pycds: trace a program's imports, dump them into an archive, and run "
                    "programs that import from the archive.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pycds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("trace", help="run a program and record the modules it imports")
    p.add_argument("-o", "--output", required=True, help="module list to write")
    p.add_argument("--append", action="store_true", help="append to the list instead of replacing it")
    p.add_argument("-v", "--verbose", action="count", default=0, help="say how many modules were traced")
    p.add_argument("python_args", nargs=argparse.REMAINDER, help="-- then the interpreter's arguments")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("dump", help="write an archive from a module list")
    p.add_argument("list", help="the module list (from trace, or one module name per line)")
    p.add_argument("archive", help="the archive to write (replaced atomically)")
    p.add_argument("-v", "--verbose", action="store_true", help="name each skipped module")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("run", help="run a program importing from an archive (AUTO mode without --archive)")
    p.add_argument("--archive", "-a", help="the archive to serve from (SHARE mode); without it, AUTO")
    p.add_argument("-v", "--verbose", action="count", default=0, help="say why modules are not served (-vv: more)")
    p.add_argument("python_args", nargs=argparse.REMAINDER, help="-- then the interpreter's arguments")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("warm", help="run a program in AUTO mode and return once its archive is written")
    p.add_argument("-v", "--verbose", action="count", default=0, help="say why modules are not served (-vv: more)")
    p.add_argument("python_args", nargs=argparse.REMAINDER, help="-- then the interpreter's arguments")
    p.set_defaults(func=cmd_warm)

    p = sub.add_parser("cache", help="list, clear or prune AUTO's cached archives")
    p.add_argument("action", choices=("list", "clear", "prune"), help="what to do")
    p.add_argument("--cache-dir", help="the cache directory (default: AUTO's, from PYCDS_CACHE_DIR, XDG_CACHE_HOME or HOME)")
    p.add_argument("--max-mib", type=float, help="prune: the size to bring the cache under (default: PYCDS_CACHE_MAX or 1024)")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("inspect", help="describe an archive: fingerprint, modules, regular expressions, sizes, stale entries")
    p.add_argument("archive", help="the archive to describe")
    p.add_argument("--modules", action="store_true", help="list every module")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=cmd_inspect)

    ns = parser.parse_args(argv)
    return ns.func(ns, parser)


if __name__ == "__main__":
    sys.exit(main())

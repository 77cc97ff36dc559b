"""The runtime side of pycds: activation from the environment and the Python half of serving
from an archive (the freshness check, the spec and the loader of an archived module). The tracer
and the DUMP mode live in ``cds._trace``, imported only in those modes, so that a process that
serves from an archive runs as little Python of pycds as it can.

``pycds.pth`` loads the extension when ``PYCDSMODE`` is set and calls ``_cds.boot()``. SHARE
with an archive starts there natively (``_cds.ArchiveFinder``), and this module is imported only
when the archive first holds a module being imported; every other mode calls ``activate()``. It
imports nothing that an application might import itself (so the tracer sees the application's
imports, and the replayer can serve them): only modules already loaded during start-up.
"""

import os
import sys

import _frozen_importlib_external as _external

try:
    # Loaded by pycds.pth; taking it from sys.modules does not import the `cds` package (the
    # finder may run this module from the archive, before anything else of pycds).
    _cds = sys.modules["cds._cds"]
except KeyError:
    from cds import _cds

SourceFileLoader = _external.SourceFileLoader
PathFinder = _external.PathFinder

_state = {
    "mode": None,
    "archive": None,
    "list": None,
    "error": None,
    "served": [],
    "fallbacks": {},
    # Modules whose run-once objects (module code, class bodies) were given back after they
    # ran, and the bytes of archive pages that freed.
    "released": 0,
    "released_bytes": 0,
}
# The archive served from (for its counters), once a module was served.
_served_from = None
_verbose = 0
_active = False

_booted = _cds.booted()
if _booted is not None:
    # SHARE was started natively by ``_cds.boot()``, without diagnostics.
    _active = True
    _state["mode"], _state["archive"] = _booted


def _say(level, message):
    """Write one diagnostic line to stderr when PYCDSVERBOSE is at least ``level``."""
    if _verbose >= level:
        try:
            sys.stderr.write("pycds: " + message + "\n")
            sys.stderr.flush()
        except Exception:
            pass


def _verbosity():
    raw = os.environ.get("PYCDSVERBOSE", "").strip()
    if not raw:
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 1


def info():
    """A snapshot of what pycds did in this process (see ``cds.info``)."""
    return {
        "mode": _state["mode"],
        "archive": _state["archive"],
        "list": _state["list"],
        "error": _state["error"],
        "served": list(_state["served"]),
        "fallbacks": dict(_state["fallbacks"]),
        "released": _state["released"],
        "released_bytes": _state["released_bytes"],
        "regexes": _regex_hook.served if _regex_hook is not None else 0,
        "prepared_ahead": _served_from.stats()["prepared_ahead"] if _served_from is not None else 0,
    }


def activate():
    """Start the mode named by PYCDSMODE (TRACE, SHARE or DUMP). Never raises: a problem is
    reported on stderr (at PYCDSVERBOSE>=1) and the program runs normally."""
    global _verbose, _active
    if _active:
        return
    _active = True
    if sys.flags.ignore_environment:
        # -E and -I ask for an interpreter that the environment does not steer: PYCDS* too.
        return
    _verbose = _verbosity()
    mode = os.environ.get("PYCDSMODE", "").strip().upper()
    if not mode:
        return
    _state["mode"] = mode
    try:
        if mode == "TRACE":
            from cds import _trace

            _trace.start_trace(os.environ.get("PYCDSLIST", ""))
        elif mode == "SHARE":
            _start_share(os.environ.get("PYCDSARCHIVE", ""))
        elif mode == "DUMP":
            from cds import _trace

            _trace.dump_and_exit(os.environ.get("PYCDSLIST", ""), os.environ.get("PYCDSARCHIVE", ""))
        else:
            _state["error"] = f"unknown PYCDSMODE={mode!r} (expected TRACE, SHARE or DUMP); ignored"
            _say(1, _state["error"])
    except Exception as exc:  # never take the program down
        _state["error"] = f"{type(exc).__name__}: {exc}"
        _say(1, f"{mode} not started: {_state['error']}")


# ---------------------------------------------------------------------------------------------
# SHARE: serve modules from the archive.


class ArchiveLoader(SourceFileLoader):
    """``SourceFileLoader`` whose ``get_code`` returns the archived code object. Everything
    else (``get_source``, ``get_data``, ``is_package``, resource readers) is the source loader's
    own, so ``inspect``, ``linecache``, tracebacks and ``importlib.resources`` behave as usual."""

    def __init__(self, fullname, path, archive=None, index=None):
        super().__init__(fullname, path)
        self._cds_archive = archive
        self._cds_index = index

    # Equal to (and hashed like) the SourceFileLoader a normal import makes for the same file,
    # so that specs and loaders compare as they would without pycds. Being a subclass, this
    # __eq__ is tried first in both directions.
    def __eq__(self, other):
        if type(other) in (SourceFileLoader, ArchiveLoader):
            return self.name == other.name and self.path == other.path
        return NotImplemented

    def __hash__(self):
        return hash(self.name) ^ hash(self.path)

    def get_code(self, fullname):
        if fullname == self.name and self._cds_archive is not None:
            try:
                code = self._cds_archive.load(self._cds_index)
            except Exception as exc:
                _fallback(fullname, f"archive data unusable: {exc}")
            else:
                _state["served"].append(fullname)
                _say(2, f"served {fullname} from the archive")
                return code
        return super().get_code(fullname)


# ``ArchiveLoader.exec_module``: native (``_cds.ExecModule``), so that no frame of pycds's own
# lies between a module's code and its importer: a warning the module gives with a
# ``stacklevel`` (``warnings.warn(..., stacklevel=2)`` of a deprecated module) names the
# importer's file, as without pycds. It runs the source loader's ``exec_module``, then this.
def _after_exec(loader, module):
    if loader._cds_archive is None:
        return
    if loader.name == "re._compiler":
        _serve_regexes(module, loader._cds_archive)
    # The module has run and its code object is dropped, as a normal import drops it: the
    # archive gives back the pages of its run-once objects if nothing refers to them.
    released, kept = loader._cds_archive.release(loader._cds_index)
    if released:
        _state["released"] += 1
        _state["released_bytes"] += released
        _say(2, f"{loader.name}: released {released} bytes of run-once objects")
    elif kept is not None:
        _say(2, f"{loader.name}: run-once objects kept: {kept}")


ArchiveLoader.exec_module = _cds.ExecModule(SourceFileLoader.exec_module, _after_exec)

# The stand-in for ``re._compiler.compile`` (``_cds.RegexCompile``), once installed.
_regex_hook = None


def _serve_regexes(compiler, archive):
    """Makes ``re._compiler.compile`` (what ``re`` calls for a pattern not in its own cache) take
    the compiled program from the archive when it holds one for the same pattern and flags, and
    hand it to ``_sre.compile`` as ``re`` itself would: the pattern's parse and compile (Python
    code, at start-up often slower than the import of the modules that compile them) are
    skipped. ``_sre.compile`` checks the program; a damaged one is compiled normally. The
    stand-in is native, so warnings that compiling gives name the same caller. Off with
    ``PYCDSREGEX=0``."""
    global _regex_hook
    if os.environ.get("PYCDSREGEX", "").strip() == "0":
        return
    try:
        if archive.stats()["regexes"]:
            _regex_hook = _cds.RegexCompile.install(compiler, archive, None, lambda message: _say(1, message)) or _regex_hook
    except Exception as exc:
        _say(1, f"compiled regular expressions not used: {exc}")


def _fallback(name, reason):
    _state["fallbacks"][name] = reason
    _say(1, f"{name}: imported normally: {reason}")


def _serve(archive, index, fullname, path, target):
    """Called by ``_cds.ArchiveFinder`` for a module the archive holds: its spec if the archived
    code is still what the file system holds (and the search still finds it), else ``None`` (or
    the normal search's spec)."""
    try:
        search = sys.path if path is None else path
        origin, is_package, stale, unverified = archive.check(index, search)
    except Exception as exc:
        _fallback(fullname, f"archive entry unusable: {exc}")
        return None
    if stale is not None:
        _fallback(fullname, stale)
        return None
    if unverified is not None:
        # The cheap proof failed: search as the import system would, and serve only if that
        # finds the very same source file.
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.origin != origin or type(spec.loader) is not SourceFileLoader:
            where = spec.origin if spec is not None else "nothing"
            _fallback(fullname, f"the search path now finds {where} ({unverified})")
            return spec
        _say(2, f"{fullname}: search re-checked ({unverified})")
    global _served_from
    if _served_from is None and "re._compiler" in sys.modules:
        # re was imported before the archive served anything (by a .pth file, say): its
        # compiler did not come from the archive, but may still take the archive's programs.
        _serve_regexes(sys.modules["re._compiler"], archive)
    _served_from = archive
    loader = ArchiveLoader(fullname, origin, archive, index)
    locations = [_external._path_split(origin)[0]] if is_package else None
    return _external.spec_from_file_location(
        fullname, origin, loader=loader, submodule_search_locations=locations
    )


def _archive_unusable(reason):
    """Called by ``_cds.ArchiveFinder`` when the archive cannot be opened: it answers nothing
    from then on, and the program runs normally."""
    _state["error"] = reason
    _say(1, f"archive not used, running normally: {reason}")


def _archive_opened(archive):
    _say(2, f"serving from {archive.path} ({archive.stats()['modules']} modules)")


def _start_share(path):
    _state["archive"] = path or None
    if not path:
        _state["error"] = "PYCDSMODE=SHARE needs PYCDSARCHIVE; running without an archive"
        _say(1, _state["error"])
        return
    _cds.insert_finder(_cds.ArchiveFinder(path, _verbose >= 2))
    if _verbose >= 1:
        import atexit

        atexit.register(_share_summary)


def _share_summary():
    if _state["error"] is not None:
        return
    _say(
        1,
        f"served {len(_state['served'])} modules from {_state['archive']}, "
        f"{len(_state['fallbacks'])} imported normally",
    )

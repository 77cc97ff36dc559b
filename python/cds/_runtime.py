"""The Python side of pycds's start-up: activation from the environment, diagnostics and
``cds.info()``. The tracer and the DUMP mode live in ``cds._trace``, imported only in those modes.

``pycds.pth`` loads the extension when ``PYCDSMODE`` is set and calls ``_cds.boot()``. SHARE
with an archive and no diagnostics starts there, and serves natively (``_cds.ArchiveFinder``
and the loader it makes): such a process imports this module only if it calls ``cds.info()``.
Every other case calls ``activate()``. This module imports nothing that an application might
import itself (so the tracer sees the application's imports, and the replayer can serve them):
only modules already loaded during start-up.
"""

import os
import sys

import _frozen_importlib_external as _external

try:
    # Loaded by pycds.pth, without the `cds` package (which ``boot()`` does not import).
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
}
_verbose = 0
_active = False

_booted = _cds.booted()
if _booted is not None:
    # SHARE was started natively by ``_cds.boot()``, without diagnostics.
    _active = True
    _state["mode"], _state["archive"] = _booted


def _say(level, message):
    """Write one diagnostic line to stderr when PYCDSVERBOSE is at least ``level``."""
    _cds.say(level, message)


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
    served = _cds.serve_log()
    return {
        "mode": _state["mode"],
        "archive": _state["archive"],
        "list": _state["list"],
        "error": _state["error"] or served["error"],
        "served": served["served"],
        "fallbacks": served["fallbacks"],
        "released": served["released"],
        "released_bytes": served["released_bytes"],
        "regexes": served["regexes"],
        "prepared_ahead": served["prepared_ahead"],
        **({"auto": _auto_info(served)} if _state["mode"] == "AUTO" else {}),
    }


def _auto_info(served):
    """AUTO's state: its cache, whether the archive can be written, and the refresh this
    process's exit would schedule (or did), and why."""
    config = _cds.auto_config()
    refresh = None
    auto = sys.modules.get("cds._auto")
    if auto is not None and auto._state["refresh"]:
        refresh = auto._state["refresh"]
    elif config["writable"]:
        normal = _cds.auto_imported_normally()
        if normal:
            refresh = f"{len(normal)} modules imported normally: {', '.join(sorted(normal)[:10])}"
        elif served["revalidated"]:
            refresh = f"{len(served['revalidated'])} modules served after a digest check"
    return {
        "cache_dir": config["cache_dir"],
        "writable": config["writable"],
        "refused": config["refused"],
        "refresh": refresh,
    }


def activate():
    """Start the mode named by PYCDSMODE (AUTO, TRACE, SHARE or DUMP). Never raises: a problem
    with the environment is reported on stderr at PYCDSVERBOSE>=1, a misconfiguration (a
    mistyped mode, a file named but missing) always, and the program runs normally."""
    global _verbose, _active
    if _active:
        return
    _active = True
    if sys.flags.ignore_environment:
        # -E and -I ask for an interpreter that the environment does not steer: PYCDS* too.
        return
    _verbose = _verbosity()
    _cds.set_verbosity(min(_verbose, 255))
    mode = os.environ.get("PYCDSMODE", "").strip().upper()
    if not mode:
        return
    _state["mode"] = mode
    refused = _cds.build_guard()
    if refused is not None:
        _state["error"] = refused
        _say(0, refused)
        return
    try:
        if mode == "TRACE":
            from cds import _trace

            _trace.start_trace(os.environ.get("PYCDSLIST", ""))
        elif mode == "SHARE":
            _start_share(os.environ.get("PYCDSARCHIVE", ""))
        elif mode == "AUTO":
            _state["archive"] = _cds.auto_start()
            if _verbose >= 1:
                import atexit

                atexit.register(_share_summary)
        elif mode == "DUMP":
            from cds import _trace

            _trace.dump_and_exit(os.environ.get("PYCDSLIST", ""), os.environ.get("PYCDSARCHIVE", ""))
        else:
            _state["error"] = f"unknown PYCDSMODE={mode!r} (expected AUTO, TRACE, SHARE or DUMP); ignored"
            _say(0, _state["error"])
    except Exception as exc:  # never take the program down
        _state["error"] = f"{type(exc).__name__}: {exc}"
        _say(1, f"{mode} not started: {_state['error']}")


# ---------------------------------------------------------------------------------------------
# SHARE with diagnostics: the same native finder as ``_cds.boot()`` starts, and a summary.


def _start_share(path):
    _state["archive"] = path or None
    if not path:
        _state["error"] = "PYCDSMODE=SHARE needs PYCDSARCHIVE; running without an archive"
        _say(0, _state["error"])
        return
    if not os.path.lexists(path):
        _state["error"] = f"PYCDSARCHIVE={path} does not exist; running without an archive"
        _say(0, _state["error"])
        return
    _cds.insert_finder(_cds.ArchiveFinder(path))
    if _verbose >= 1:
        import atexit

        atexit.register(_share_summary)


def _share_summary():
    served = _cds.serve_log()
    if _state["error"] is not None or served["error"] is not None:
        return
    _say(
        1,
        f"served {len(served['served'])} modules from {_state['archive']}, "
        f"{len(served['fallbacks'])} imported normally",
    )

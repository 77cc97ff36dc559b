"""AUTO mode, its Python half: recording what a process imported normally, and the writer that
refreshes the archive. The native half (``cds._cds``, ``auto.rs``) picks the archive, serves
from it, and at exit calls :func:`at_exit` only when some module was imported normally.

Files of one archive ``<cache>/<name>.img`` (one per interpreter build and environment):

- ``<name>.lst``: the module list the archive was last written from (JSON lines);
- ``<name>.new``: one record per process that imported modules normally, appended at exit
  (one ``write`` each, ``O_APPEND``), taken by the next writer (renamed to
  ``<name>.new.<pid>`` while it works), which expands it into trace records;
- ``<name>.json``: what the writer knows: the interpreter and environment, modules that could
  not be archived, modules that change at every refresh (backed off), the time of the write;
- ``<name>.lock``: held (``flock``) by the one writer at work; others do not wait;
- ``<name>.used``: its mtime is the archive's last use (touched at most hourly).

The writer runs detached (its own session, low priority, no terminal), writes the archive to a
temporary file renamed into place (so readers never see a partial archive), and leaves the old
archive as it was if it dies. Like the runtime, this module imports at exit nothing a program
might still import itself.
"""

import os
import sys
import time

from cds import _cds

# A module re-archived in this many writes in a row is backed off: it changes every run.
VOLATILE_STREAK = 3
VOLATILE_SECONDS = 24 * 3600
# The default bound on the cache's archives (bytes); PYCDS_CACHE_MAX overrides it (MiB).
DEFAULT_CACHE_MAX = 1 << 30
# Records one process takes from re's cache of compiled patterns at most.
MAX_REGEXES = 4096
# What this process's exit scheduled (for cds.info()).
_state = {"refresh": None}


def _base(archive):
    return archive[:-4] if archive.endswith(".img") else archive


def _read_json(path):
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------
# At exit, in the program's process.


def _process_record(names, known):
    """One record of what this process imported normally, as cheap to make as can be (the
    program waits for it): the modules' names, origins and package flags, the search
    locations a normal import uses now (``sys.path`` once, each parent package's
    ``__path__``), and the patterns in ``re``'s caches. The writer turns it into trace records
    (`_expand`). Modules the writer could not archive (unchanged since) and those it backed
    off are left out. ``None`` when nothing is left."""
    now = time.time()
    volatile, skipped = known.get("volatile", {}), known.get("skipped", {})
    modules, packages = [], {}
    for name in names:
        spec = getattr(sys.modules.get(name), "__spec__", None)
        origin = getattr(spec, "origin", None)
        if not isinstance(origin, str) or volatile.get(name, 0) > now:
            continue
        if name in skipped and skipped[name][:2] == list(_cds.source_stat(origin) or ()):
            continue
        parent = name.rpartition(".")[0]
        if parent and parent not in packages:
            path = getattr(sys.modules.get(parent), "__path__", None) or []
            packages[parent] = [p for p in path if isinstance(p, str)]
        modules.append([name, origin, spec.submodule_search_locations is not None])
    if not modules:
        return None
    return {"process": {"path": [p for p in sys.path if isinstance(p, str)], "packages": packages,
                        "modules": modules, "regexes": _regexes()}}


def _regexes():
    """``[pattern, is_bytes, flags]`` for the patterns in ``re``'s own caches (what this process
    compiled most recently), which the archive can hold compiled (a ``bytes`` pattern as latin-1
    text)."""
    re = sys.modules.get("re")
    if re is None:
        return []
    out, seen = [], set()
    for cache in ("_cache2", "_cache"):
        for key in list(getattr(re, cache, None) or ()):
            if not (isinstance(key, tuple) and len(key) == 3) or key in seen or len(out) >= MAX_REGEXES:
                continue
            seen.add(key)
            kind, pattern, flags = key
            try:
                if kind is bytes:
                    out.append([pattern.decode("latin-1"), True, int(flags)])
                elif kind is str:
                    pattern.encode("utf-8")
                    out.append([pattern, False, int(flags)])
            except (UnicodeError, TypeError, ValueError):
                continue
    return out


def _expand(record):
    """The trace records (dicts, as ``cds.dump.read_list`` reads them) of a process record; the
    sources' stats are taken now."""
    proc = record["process"]
    out = []
    for name, origin, is_package in proc.get("modules", []):
        parent = name.rpartition(".")[0]
        search = proc["packages"].get(parent, []) if parent else proc.get("path", [])
        key = _cds.source_stat(origin)
        if key is not None:
            out.append({"name": name, "origin": origin, "package": bool(is_package), "search": search,
                        "mtime_ns": key[0], "size": key[1]})
    for pattern, is_bytes, flags in proc.get("regexes", []):
        out.append({"regex": pattern, "bytes": bool(is_bytes), "flags": flags})
    return out


def at_exit(normal, revalidated):
    """Called by the native exit hook with the modules this process imported normally and
    those served only after a digest check. Records them and, unless a writer is at work,
    starts one. Never raises into the program (the caller reports an error at
    ``PYCDSVERBOSE>=1``)."""
    config = _cds.auto_config()
    if not config["writable"] or config["refused"]:
        return
    archive = config["archive"]
    base = _base(archive)
    exists = os.path.isfile(archive)
    known = _read_json(base + ".json")
    record = _process_record(list(normal) + [n for n in revalidated if n not in normal], known)
    if record is None:
        return
    import json

    count = len(record["process"]["modules"])
    why = f"{count} modules imported normally" if exists else "no archive yet"
    _state["refresh"] = why
    _cds.say(1, f"AUTO: refresh of {archive} scheduled ({why})")
    # One line (ASCII: every line separator inside is escaped), one write.
    data = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
    fd = os.open(base + ".new", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    except OSError:
        # A full disk, say: leave no empty file behind (the records are made again next run).
        if os.fstat(fd).st_size == 0:
            os.unlink(base + ".new")
        raise
    finally:
        os.close(fd)
    if os.environ.get("PYCDS_AUTO_DETACH", "").strip() == "0" or _writer_busy(base):
        return
    _spawn_writer(archive)


def _writer_busy(base):
    import fcntl

    try:
        fd = os.open(base + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _spawn_writer(archive):
    """Starts ``python -m cds._auto write ARCHIVE`` detached: its own session (no signal sent
    to the program's process group reaches it), stdio on /dev/null, and without PYCDSMODE, so
    it serves and records nothing itself. The program does not wait for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}
    devnull = os.devnull
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
    ]
    argv = [sys.executable, "-P", "-m", "cds._auto", "write", archive]
    os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)


# ---------------------------------------------------------------------------------------------
# The writer, in a process of its own (or in `python -m cds warm`).


def write(archive, *, wait=False):
    """Refreshes ``archive`` from its list and the records processes left. Returns ``True`` if
    this call did the work, ``False`` if another writer holds the lock (and ``wait`` is
    false). Takes up to three rounds, so that records left while it wrote are taken too.

    A process appends its record first and looks at the lock after, and starts no writer if
    the lock is held. So once this writer has let go of the lock it looks for records once
    more: one left while it held the lock by a process that then saw it held is taken now
    (or by the writer that process started, if it found the lock free)."""
    import fcntl

    base = _base(archive)
    did = False
    for _ in range(10):
        fd = os.open(base + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return did
            for _ in range(3):
                if not _write_round(archive, base) and os.path.isfile(archive):
                    break
            prune(os.path.dirname(archive), keep=archive)
            did = True
        finally:
            os.close(fd)
        if not os.path.exists(base + ".new"):
            break
        wait = False
    return did


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _clean_debris(directory, base):
    """Removes what a killed writer left: temporary archives and lists of dead processes."""
    stem = os.path.basename(base)
    for entry in os.listdir(directory):
        parts = entry.split(".")
        # The archive writer's temporary files are `.<file>.<pid>.<nonce>.tmp`, this module's
        # `<name>.lst.<pid>.tmp` and `<name>.json.<pid>.tmp`.
        if entry.startswith("." + stem) and entry.endswith(".tmp") and len(parts) >= 4:
            pid_at = -3
        elif entry.startswith(stem + ".") and entry.endswith(".tmp") and len(parts) >= 3:
            pid_at = -2
        else:
            continue
        try:
            pid = int(parts[pid_at])
        except ValueError:
            continue
        if not _alive(pid):
            _unlink_all([os.path.join(directory, entry)])


def _write_round(archive, base):
    """One refresh. Returns whether there was anything new to write."""
    import json

    from cds import dump

    directory = os.path.dirname(archive) or "."
    _clean_debris(directory, base)
    mine = f"{base}.new.{os.getpid()}"
    try:
        os.rename(base + ".new", mine)
    except FileNotFoundError:
        pass
    stem = os.path.basename(base) + ".new."
    inputs = sorted(os.path.join(directory, e) for e in os.listdir(directory) if e.startswith(stem))
    if not inputs:
        return False
    new = []
    for path in inputs:
        new += _read_records(path)
    if not new:
        _unlink_all(inputs)
        return False
    known = _read_json(base + ".json")
    old = _read_records(base + ".lst")
    modules, regexes = {}, {}
    for rec in old:
        (regexes if "regex" in rec else modules)[_key(rec)] = rec
    now = time.time()
    streak = known.get("streak", {})
    volatile = {n: t for n, t in known.get("volatile", {}).items() if t > now}
    changed = set()
    for rec in new:
        if "regex" in rec:
            regexes[_key(rec)] = rec
            continue
        name = rec["name"]
        before = modules.get(name)
        if before is not None and _source(before) != _source(rec):
            changed.add(name)
        modules[name] = rec
    streak = {n: streak.get(n, 0) + 1 for n in changed}
    for name, count in streak.items():
        if count >= VOLATILE_STREAK:
            volatile[name] = now + VOLATILE_SECONDS
    records = [r for n, r in modules.items() if n not in volatile and os.path.exists(r.get("origin") or "")]
    text = "".join(json.dumps(r) + "\n" for r in records + list(regexes.values()))
    tmp_list = f"{base}.lst.{os.getpid()}.tmp"
    with open(tmp_list, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    try:
        report = dump.run_dump(tmp_list, archive)
        os.replace(tmp_list, base + ".lst")
    finally:
        if os.path.exists(tmp_list):
            os.unlink(tmp_list)
    skipped = {}
    for name, reason in report.skipped.items():
        origin = modules.get(name, {}).get("origin")
        key = _cds.source_stat(origin) if origin else None
        if key:
            skipped[name] = [*key, reason]
    state = {
        "interpreter": _cds.fingerprint()[1],
        "prefix": sys.prefix,
        "written": now,
        "modules": report.modules,
        "skipped": skipped,
        "streak": streak,
        "volatile": volatile,
    }
    tmp_state = f"{base}.json.{os.getpid()}.tmp"
    try:
        with open(tmp_state, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp_state, base + ".json")
    finally:
        _unlink_all([tmp_state])
    _unlink_all(inputs)
    return True


def _unlink_all(paths):
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def _key(rec):
    if "regex" in rec:
        return (rec["regex"], bool(rec.get("bytes")), rec.get("flags"))
    return rec["name"]


def _source(rec):
    return (rec.get("origin"), rec.get("mtime_ns"), rec.get("size"))


def _read_records(path):
    import json

    out = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("process"), dict):
                    out += _expand(rec)
                elif isinstance(rec, dict) and ("name" in rec or "regex" in rec):
                    out.append(rec)
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# The cache: list, clear, prune.


def cache_max():
    raw = os.environ.get("PYCDS_CACHE_MAX", "").strip()
    try:
        return int(raw) << 20 if raw else DEFAULT_CACHE_MAX
    except ValueError:
        return DEFAULT_CACHE_MAX


def archives(directory):
    """The archives of a cache directory: a dict per archive (``path``, ``bytes``,
    ``last_use``, and what its ``.json`` says: ``interpreter``, ``prefix``, ``modules``),
    oldest use first."""
    out = []
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for entry in names:
        if not entry.endswith(".img") or entry.startswith("."):
            continue
        path = os.path.join(directory, entry)
        base = _base(path)
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        last = max((os.stat(p).st_mtime for p in (path, base + ".used") if os.path.exists(p)), default=0)
        info = _read_json(base + ".json")
        out.append({"path": path, "bytes": size, "last_use": last, "interpreter": info.get("interpreter"),
                    "prefix": info.get("prefix"), "modules": info.get("modules")})
    out.sort(key=lambda a: a["last_use"])
    return out


def remove(path):
    """Removes an archive and every file of its own."""
    base = _base(path)
    directory = os.path.dirname(path) or "."
    stem = os.path.basename(base) + "."
    for entry in os.listdir(directory):
        if entry.startswith(stem) or entry.startswith("." + stem):
            try:
                os.unlink(os.path.join(directory, entry))
            except OSError:
                pass


def prune(directory, *, limit=None, keep=None):
    """Removes the least recently used archives until the cache holds at most ``limit`` bytes
    of them (default: ``PYCDS_CACHE_MAX`` MiB, else 1 GiB). Returns the paths removed."""
    limit = cache_max() if limit is None else limit
    found = archives(directory)
    total = sum(a["bytes"] for a in found)
    removed = []
    for a in found:
        if total <= limit:
            break
        if a["path"] == keep:
            continue
        remove(a["path"])
        total -= a["bytes"]
        removed.append(a["path"])
    return removed


def main(argv):
    if len(argv) == 2 and argv[0] == "write":
        try:
            os.nice(10)
        except OSError:
            pass
        try:
            write(argv[1])
        except Exception as exc:  # a full disk, say: the old archive stays, records wait
            print(f"pycds: the archive was not refreshed: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m cds._auto write ARCHIVE (started by AUTO itself)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""pycds: serve imported modules' code objects from a memory-mapped archive.

Three roles, chosen by environment variables (see the README):

- ``PYCDSMODE=TRACE PYCDSLIST=mod.lst python app.py`` records the modules a program imports;
- ``python -m cds.dump mod.lst mod.img`` writes the archive;
- ``PYCDSMODE=SHARE PYCDSARCHIVE=mod.img python app.py`` imports from it.

``python -m cds --help`` shows the command-line interface.
"""

__version__ = "0.1.0"
__all__ = ["info", "__version__"]


def _bind_loaded_submodules():
    # pycds.pth loads `cds._cds` before this package is imported (and a serving process may never
    # import it): bind it here as the import system binds a submodule on its parent.
    import sys

    for name in ("_cds", "_runtime"):
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            globals()[name] = module


_bind_loaded_submodules()


def info():
    """What pycds did in this process: a dict with ``mode`` (``None`` when inactive),
    ``archive``, ``list``, ``error`` (why the mode could not start, or ``None``), ``served``
    (names imported from the archive, in order), ``fallbacks`` (name to the reason it was
    imported normally), ``released`` and ``released_bytes`` (modules whose run-once objects were
    released after they ran, and the bytes of archive pages given back), ``regexes`` (regular
    expressions built from the archive's compiled programs instead of compiled), and ``prepared_ahead``
    (imports that found their module already checked, relocated and validated by the run-ahead
    thread)."""
    from cds import _runtime

    return _runtime.info()

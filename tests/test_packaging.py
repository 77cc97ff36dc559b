"""What pycds ships: the source distribution must hold everything a build from it needs (the
extension's build script, its C layout probe and linker script, the start-up hook), since pip
builds from it wherever no wheel fits."""

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdist_holds_the_startup_hook_and_what_the_build_needs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "maturin", "sdist", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sdist,) = tmp_path.glob("pycds-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    needed = {
        # Without it a wheel built from the sdist installs no `.pth`: pycds would never start.
        "python/pycds.data/purelib/00-pycds.pth",
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "crates/cds-python/build.rs",
        "crates/cds-python/csrc/layout_probe.c",
        "crates/cds-python/link/cold-text.ld",
        "crates/cds-archive/src/lib.rs",
        "python/cds/_runtime.py",
        "python/cds/_cds.pyi",
    }
    assert needed <= names, sorted(needed - names)

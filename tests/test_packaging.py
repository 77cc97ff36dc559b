"""What pycds ships: the source distribution must hold everything a build from it needs (the
extension's build script, its C layout probe and linker script, the start-up hook), since pip
builds from it wherever no wheel fits."""

import os
import shutil
import subprocess
import sys

import pytest
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdist_holds_the_startup_hook_and_what_the_build_needs(tmp_path):
    if shutil.which("cargo") is None:
        pytest.skip("maturin sdist needs cargo (the installed wheel is under test)")
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
        "packaging/pycds_build.py",
    }
    assert needed <= names, sorted(needed - names)


def test_building_from_the_sdist_without_rust_fails_clearly(tmp_path):
    """Where no wheel fits, pip builds the sdist: without Rust that stops with a message naming
    what is needed (maturin alone would download a Rust toolchain)."""
    if shutil.which("cargo") is None:
        pytest.skip("making the sdist needs cargo")
    out = subprocess.run([sys.executable, "-m", "maturin", "sdist", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (sdist,) = tmp_path.glob("pycds-*.tar.gz")
    cargo_dir = os.path.dirname(shutil.which("cargo"))
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != cargo_dir
                           and not os.path.exists(os.path.join(p, "cargo")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYCDS", "CARGO", "RUSTUP"))}
    env["PATH"] = path
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "t"),
                           str(sdist)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode != 0
    assert "building pycds from source needs Rust" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]

"""pycds's PEP 517 build backend: maturin's, after checking that what building pycds needs is
there. pip builds pycds from source only where no wheel fits the interpreter; without Rust,
maturin would otherwise download a Rust toolchain (hundreds of MB) into a temporary directory.
Instead the build stops with a message that names what is missing. (`MATURIN_NO_INSTALL_RUST`
is maturin's own switch for the same; `PYCDS_ALLOW_RUST_DOWNLOAD=1` lets maturin download.)"""

import os
import shutil

import maturin
from maturin import build_sdist, get_requires_for_build_sdist  # noqa: F401  (maturin's, as is)

_MISSING = (
    "pycds: no wheel fits this interpreter, and building pycds from source needs Rust (cargo "
    "1.85 or later, https://rustup.rs), a C compiler, and the interpreter's headers including "
    "the internal ones (Debian: python3.X-dev); cargo is not on PATH."
)


def _need_rust():
    if shutil.which("cargo") is None and os.environ.get("PYCDS_ALLOW_RUST_DOWNLOAD") != "1":
        raise RuntimeError(_MISSING)


def get_requires_for_build_wheel(config_settings=None):
    _need_rust()
    return maturin.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    _need_rust()
    return maturin.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _need_rust()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _need_rust()
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _need_rust()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _need_rust()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)

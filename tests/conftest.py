"""pytest fixtures; the helpers themselves live in pycds_testing.py."""

import pytest

from pycds_testing import Project


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)

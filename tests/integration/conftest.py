"""Fixtures the server's tests share (tests/conftest.py holds the project-wide ones)."""

import pytest

from tests.conftest import train_tiny


@pytest.fixture(scope="session")
def served_tiny(tmp_path_factory):
    """The tiny model trained once for the server's API and browser tests: (best.pt, the
    slice's validation source lines)."""
    checkpoint, data = train_tiny(tmp_path_factory.mktemp("serve"))
    return checkpoint, (data / "dev.src").read_text().splitlines()

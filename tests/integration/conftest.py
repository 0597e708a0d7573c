"""Fixtures the integration tests share (tests/conftest.py holds the project-wide ones); a
module that needs another `trained` or `corpus` defines its own, which takes precedence."""

from pathlib import Path

import pytest

from tests.conftest import train_tiny, write_slice


@pytest.fixture(scope="session")
def served_tiny(tmp_path_factory):
    """The tiny model trained once for the server's API and browser tests: (best.pt, the
    slice's validation source lines)."""
    checkpoint, data = train_tiny(tmp_path_factory.mktemp("serve"))
    return checkpoint, (data / "dev.src").read_text().splitlines()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A two-step tiny model, trained once per module: (best.pt, the toy slice it was
    trained on)."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A fresh copy of the toy slice that a test may damage."""
    return write_slice(tmp_path, n_train=60, n_dev=8)

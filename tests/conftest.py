"""Shared test helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny matmuls are fastest that way, and on a busy 2-core machine
    extra OpenMP threads spin-wait (a training step gets ~20x slower). Restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def repo_script():
    """Import a file of the repository that is not in the package (``scripts/x.py``, ``benchmarks/y.py``)."""

    def load(relpath: str):
        path = REPO / relpath
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load

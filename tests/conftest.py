"""Shared fixtures: the tiny reference model is built once per test session, on local disk."""

from __future__ import annotations

import os

import pytest
import torch

from model.engine import Engine
from model.tiny import build_tiny_model

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def engine(tiny_dir) -> Engine:
    return Engine.load(tiny_dir, system_prompt="You are secbot.")


@pytest.fixture
def fresh_engine(tiny_dir) -> Engine:
    """An engine of its own, for tests that change adapters or weights."""
    return Engine.load(tiny_dir, system_prompt="You are secbot.")

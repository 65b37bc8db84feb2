"""Shared test fixtures: a logged, replayable seed for every test."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest

log = logging.getLogger("tidewise.tests")


@pytest.fixture(autouse=True)
def seed(request) -> int:
    """Seed python, numpy and torch; TIDEWISE_TEST_SEED replays a failing run."""
    value = int(os.environ.get("TIDEWISE_TEST_SEED", "1234"))
    random.seed(value)
    np.random.seed(value)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    else:
        torch.manual_seed(value)
    log.info("seed for %s: %d", request.node.nodeid, value)
    return value

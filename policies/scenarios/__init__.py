"""Typed contracts of the three scenarios (vm, serverless, power), shared by replay and daemon.

Each module holds what a policy of its scenario may read and the helpers its policies
share; neither the replay (``traces/replay``) nor the daemon (``service``) is imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def stepped_history(obs: Any) -> Any:  # noqa: ANN401
    """Return the history a stepped scenario's forecaster reads, None at ``t = 0``."""
    return obs.history if obs.t > 0 else None


def policy_horizon(spec: Any, policy: Any) -> int:  # noqa: ANN401
    """Return the steps to forecast: the policy's ``horizon`` parameter (default 1)."""
    return int(getattr(policy, "params", {}).get("horizon", 1) or 1)


def read_only(a: np.ndarray) -> np.ndarray:
    """Return a read-only view of ``a``: what a policy is handed, it cannot change."""
    v = a.view()
    v.flags.writeable = False
    return v

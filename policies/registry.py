"""Policy registry: one file per policy, found by (scenario, name).

Policies register with the :func:`register` class decorator at import time;
:func:`load_all` imports every module in the package so the registry is complete.
The same name (``static-peak``, ``oracle``, ``bayes``) may exist for several scenarios.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from policies.base import Policy

_REGISTRY: dict[tuple[str, str], type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: add ``cls`` under ``(cls.scenario, cls.name)``."""
    if not cls.name or not cls.scenario:
        raise ValueError(f"{cls.__name__} must set both `name` and `scenario`")
    key = (cls.scenario, cls.name)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"policy {cls.name!r} for scenario {cls.scenario!r} registered twice")
    _REGISTRY[key] = cls
    return cls


def load_all() -> None:
    """Import every policy module of the package (idempotent)."""
    import policies

    for info in pkgutil.iter_modules(policies.__path__):
        if info.name not in {"base", "registry"}:
            importlib.import_module(f"policies.{info.name}")


def names(scenario: str | None = None) -> list[str]:
    """Return the registered policy names, for one scenario or all."""
    load_all()
    return sorted({n for (s, n) in _REGISTRY if scenario is None or s == scenario})


def get(name: str, scenario: str) -> type[Policy]:
    """Return the policy class registered as ``name`` for ``scenario``; a clear error otherwise.

    The package's modules are imported (:func:`load_all`) when the name is not registered
    yet: listing them costs more than a decision's own work, and a daemon asks every period.
    """
    cls = _REGISTRY.get((scenario, name))
    if cls is not None:
        return cls
    load_all()
    try:
        return _REGISTRY[(scenario, name)]
    except KeyError:
        known = ", ".join(names(scenario)) or "none"
        raise KeyError(
            f"no policy {name!r} for scenario {scenario!r}; known for {scenario}: {known}"
        ) from None


def create(name: str, scenario: str, **params: Any) -> Policy:
    """Instantiate a registered policy with parameters (unknown ones are refused)."""
    return get(name, scenario)(**params)

"""The suite imports this checkout's packages however it is started (issue 12, item 11).

A ``tests/<pkg>/__init__.py`` made ``models`` resolve to the test folder when pytest put
``tests/`` on ``sys.path``; the project's ``models.*`` then came from wherever the editable
install pointed (another checkout). Test folders are therefore rootless (no ``__init__.py``)
and their module basenames unique, as pytest's default import mode needs.
"""

from __future__ import annotations

import collections
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["models", "policies", "service", "traces"])
def test_project_packages_come_from_this_checkout(name):
    mod = importlib.import_module(name)
    assert Path(mod.__file__).resolve().parent == ROOT / name
    sub = {
        "models": "models.training",
        "policies": "policies.registry",
        "service": "service.decisions",
        "traces": "traces.replay.vm",
    }[name]
    assert Path(importlib.import_module(sub).__file__).resolve().is_relative_to(ROOT / name)


def test_test_folders_have_no_init_and_unique_module_names():
    tests = ROOT / "tests"
    assert sorted(p.relative_to(ROOT).as_posix() for p in tests.rglob("__init__.py")) == []
    names = collections.Counter(
        p.name for p in tests.rglob("test_*.py") if "__pycache__" not in p.parts
    )
    assert [n for n, c in names.items() if c > 1] == []


def test_the_docs_draw_the_store_layers_the_contract_keeps():
    """STYLE 21: the drawing of the store's layers (docs/architecture.md) and the import-linter
    contract that keeps them are the same text: same modules, same rows, same order."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c.get("containers") == ["service.store"]]
    assert contract["type"] == "layers" and contract.get("exhaustive") is True
    kept = [sorted(m.strip() for m in layer.split("|")) for layer in contract["layers"]]

    readme = (ROOT / "docs" / "architecture.md").read_text()
    start = readme.index("\n service/store/ ")
    drawing = readme[start : readme.index("```", start)].splitlines()[2:]
    drawn: list[list[str]] = [[]]
    for line in drawing:
        if line.strip().startswith("─"):
            drawn.append([])
        elif line.strip():
            drawn[-1].extend(n.strip() for n in line.split("  ")[1].strip().split(","))
    assert [sorted(row) for row in drawn] == kept
    modules = {p.stem for p in (ROOT / "service" / "store").glob("*.py")} - {"__init__"}
    assert modules == {m for row in kept for m in row}

"""Every Sphinx-style cross-reference in the code's docstrings and comments names something real.

``:mod:``, ``:func:``, ``:class:``, ``:meth:``, ``:data:``, ``:attr:`` (and ``:exc:``,
``:obj:``) references under service/, models/, policies/, traces/, common/ and bench/ are
resolved the way a reader would: by importing the module and walking attributes, a short or
relative name against the module that holds it (then its classes and packages). So are the
double-backquoted dotted names that start with one of our packages (``service.retrain``),
the form a renamed module leaves behind. A name that no longer resolves fails the test, listed
with its file and line.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "models", "policies", "traces", "common", "bench")
ROLE = re.compile(r":(mod|func|class|meth|data|attr|exc|obj):`(?:[^`<]*<)?([^`>]+)>?`")
#: ``pkg.name`` in double backquotes, pkg one of ours; file names (``models.py``) are skipped
DOTTED = re.compile(r"``((?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+)``")
FILE_SUFFIXES = (".py", ".json", ".md", ".csv", ".toml", ".yml", ".yaml", ".txt", ".png", ".npz")

_MISSING = object()


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _import(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _member(obj: object, name: str) -> object:
    """``obj.name``, counting dataclass, pydantic and annotated fields and ``self.name = …``."""
    if isinstance(obj, types.ModuleType):
        value = getattr(obj, name, _MISSING)
        if value is _MISSING:  # a submodule not imported by its package
            value = _import(f"{obj.__name__}.{name}") or _MISSING
        return value
    value = getattr(obj, name, _MISSING)
    if value is not _MISSING or not inspect.isclass(obj):
        return value
    for klass in obj.__mro__:
        if dataclasses.is_dataclass(klass) and name in {f.name for f in dataclasses.fields(klass)}:
            return name
        if name in getattr(klass, "model_fields", {}) or name in vars(klass).get(
            "__annotations__", {}
        ):
            return name
        if name in (getattr(klass, "__slots__", ()) or ()):
            return name
        if re.search(rf"\bself\.{re.escape(name)}\s*(?::[^=\n]+)?=", _source(klass)):
            return name
    return _MISSING


@functools.cache
def _source(klass: type) -> str:
    try:
        return inspect.getsource(klass)
    except (OSError, TypeError):
        return ""


def _resolve(dotted: str) -> object:
    """The object ``dotted`` names (longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _import(".".join(parts[:cut]))
        if module is None:
            continue
        obj: object = module
        for part in parts[cut:]:
            obj = _member(obj, part)
            if obj is _MISSING:
                break
        if obj is not _MISSING:
            return obj
    return _MISSING


def _candidates(target: str, module: types.ModuleType) -> list[str]:
    """Where a short or relative name may live, nearest first."""
    name = module.__name__
    if target.startswith("."):
        target = target.lstrip(".")
    out = [f"{name}.{target}"]
    out += [  # a method or attribute named short inside its own class
        f"{name}.{cls}.{target}"
        for cls, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == name
    ]
    parts = name.split(".")
    out += [".".join(parts[:i] + [target]) for i in range(len(parts) - 1, 0, -1)]
    out.append(target)
    return out


def _dangling(path: Path) -> list[str]:
    text = path.read_text()
    refs = [(m.start(), m.group(1), m.group(2).strip()) for m in ROLE.finditer(text)]
    refs += [
        (m.start(), "dotted", m.group(1))
        for m in DOTTED.finditer(text)
        if not m.group(1).endswith(FILE_SUFFIXES)
    ]
    if not refs:
        return []
    module = importlib.import_module(_module_name(path))
    problems = []
    for start, role, raw in sorted(refs):
        target = raw.lstrip("~!")
        candidates = [target] if role in ("mod", "dotted") else _candidates(target, module)
        found = next((obj for c in candidates if (obj := _resolve(c)) is not _MISSING), _MISSING)
        ok = found is not _MISSING and (role != "mod" or isinstance(found, types.ModuleType))
        if not ok:
            line = text.count("\n", 0, start) + 1
            shown = f":{role}:`{raw}`" if role != "dotted" else f"``{raw}``"
            problems.append(f"{path.relative_to(ROOT)}:{line}: {shown}")
    return problems


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_checker_catches_a_dangling_reference(tmp_path, monkeypatch):
    """The resolver is not vacuous: a missing module, function or method is reported."""
    pkg = tmp_path / "twrefs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        '"""See :mod:`service.retrain`, :func:`gone`, :func:`here`, :meth:`Thing.run`,\n'
        ':attr:`Thing.size`, :meth:`Thing.fly`, :class:`service.config.Settings`,\n'
        "``service.config.Settings`` and ``service.nowhere``.\"\"\"\n"
        "def here(): pass\n"
        "class Thing:\n"
        "    def __init__(self): self.size = 1\n"
        "    def run(self): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "DOTTED", re.compile(
        r"``((?:service|twrefs)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)``"
    ))
    problems = _dangling(pkg / "mod.py")
    assert [p.split(": ", 1)[1] for p in problems] == [
        ":mod:`service.retrain`",
        ":func:`gone`",
        ":meth:`Thing.fly`",
        "``service.nowhere``",
    ]
    assert problems[0].startswith("twrefs/mod.py:1:")


def test_every_cross_reference_in_the_code_resolves():
    sources = _sources()
    assert len(sources) > 50  # the walk found the packages
    problems = [p for path in sources for p in _dangling(path)]
    if problems:
        pytest.fail("dangling references:\n" + "\n".join(problems))

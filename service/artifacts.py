"""Where a saved model goes: the one place that turns a model name into a folder.

Model names come from metric names (``daemon:<metric>``) and metric names come from clients,
so a name is never used as a path as it is: ``..`` would leave the model folder, a NUL makes
every file call fail, and a plain character substitution maps ``n/x`` and ``n_x`` to the
same folder, where one overwrites the other. Each path component is a readable slug followed
by a hash of the exact name: safe on every file system, and distinct names never share a
folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Characters kept in a slug; every run of others becomes one ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Longest slug kept (characters), so that slug + hash stays far below NAME_MAX (255 bytes).
SLUG_MAX = 64
#: Hex digits of SHA-256 kept per component (64 bits: no accidental collision).
HASH_HEX = 16


def path_component(text: str) -> str:
    """Return a safe, unique folder name for ``text``: ``<slug>-<hash>``.

    The slug keeps ASCII letters, digits, ``.``, ``_`` and ``-`` (other runs become ``_``,
    leading dots are dropped so nothing is hidden or ``..``); the hash is of the exact text,
    so the mapping is one-to-one however the slugs collide.
    """
    slug = _UNSAFE.sub("_", text).lstrip(".")[:SLUG_MAX] or "model"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{slug}-{digest}"


def artifact_folder(root: str | Path, name: str, version: str) -> Path:
    """Return the folder of version ``version`` of model ``name`` under ``root``.

    ``root/<slug(name)>-<hash(name)>/<slug(version)>-<hash(version)>``; always inside
    ``root`` (checked), whatever ``name`` and ``version`` hold.

    Raises:
        ValueError: the result would not be inside ``root`` (cannot happen; a guard).

    """
    base = Path(root)
    folder = base / path_component(name) / path_component(version)
    if folder.parent.parent != base or not folder.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"artifact folder {folder} is outside the model folder {base}")
    return folder

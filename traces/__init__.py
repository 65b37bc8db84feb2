"""Public traces: loaders into one canonical long frame, bundled slices, and the replay.

Public API (imported lazily, so ``import traces`` stays cheap for the CLI)::

    load(path, format=None, step=None) -> DataFrame   # canonical long frame
    FORMATS        # format name -> loader
    detect_format(path) -> str
    BUNDLED        # bundled slice name -> Path (in traces/data/)
    wide(frame) -> DataFrame                          # ts x (entity, metric)

See :mod:`traces.frame` for the frame and :mod:`traces.loaders` for the formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from traces.loaders.registry import FORMATS, detect_format, load, wide  # noqa: F401

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Bundled slices (licences and transformations in ``traces/data/ATTRIBUTION.md``).
BUNDLED: dict[str, Path] = {
    # Azure LLM inference 2023, code service, whole file (CC BY 4.0)
    "azure-llm-code": DATA_DIR / "AzureLLMInferenceTrace_code.csv.gz",
}

__all__ = ["BUNDLED", "DATA_DIR", "FORMATS", "detect_format", "load", "wide"]


def __getattr__(name: str) -> Any:
    if name in {"load", "FORMATS", "detect_format", "wide"}:
        from traces.loaders import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'traces' has no attribute {name!r}")

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
    # Azure Functions 2019, 168 functions x 1,440 min of the In-Vitro 1340 day, with its
    # duration and memory files beside it (MIT / CC BY 4.0)
    "azure-functions-2019": DATA_DIR / "azure_functions_2019_inv.csv.gz",
    # Alibaba 2018 datacenter-wide means, day 1, 10 s bins (CC BY 4.0): VM / power demand
    "alibaba-datacenter-10s": DATA_DIR
    / "alibaba2018_machine_usage_day_1_grouped_10_seconds.csv.gz",
    # Azure 2019 VM trace, sum over all VMs of CPU usage and assigned memory, 30 days, 300 s
    # bins (CC BY 4.0)
    "azure-vms-2019-300s": DATA_DIR / "azure2019_vm_cpu_readings_month_aggregated_cpu_mem.csv.gz",
}



def resolve(trace: str | Path) -> Path:
    """Return the path of ``trace``: an existing file or folder, else a :data:`BUNDLED` name.

    Raises:
        TraceFormatError: neither exists; the message lists the bundled names.

    """
    path = Path(trace)
    if path.exists():
        return path
    if str(trace) in BUNDLED:
        return BUNDLED[str(trace)]
    from common.errors import TraceFormatError

    raise TraceFormatError(
        f"no such file or folder, and no bundled slice of that name "
        f"(bundled: {', '.join(BUNDLED)})",
        str(trace),
    )


__all__ = ["BUNDLED", "DATA_DIR", "FORMATS", "detect_format", "load", "resolve", "wide"]


def __getattr__(name: str) -> Any:
    if name in {"load", "FORMATS", "detect_format", "wide"}:
        from traces.loaders import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'traces' has no attribute {name!r}")

"""Model artifact folders never come from raw names (issue 12, item 2).

A metric named ``..`` once made the retraining job write outside ``TIDEWISE_MODEL_DIR``,
``n/x`` and ``n_x`` shared one artifact (the second overwrote the first), and a NUL in one
metric name made every retraining run fail for all metrics. Both writers (the retraining
job and ``tidewise train``) take their folder from :func:`service.artifacts.artifact_folder`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import Predictor, load_predictor
from service import forecasting
from service.artifacts import artifact_folder, path_component
from service.ingest import Batch
from service.store import model_registry as model_store
from service.store import samples as sample_store
from service.training import train_and_register
from tests.daemon.conftest import send

NAMES = ["..", ".", "n/x", "n_x", "n:x", "\x00z", "a/../../b", "/etc/passwd", "", "\udfff", "é"]


def test_every_name_maps_to_its_own_folder_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "models"
    folders = [artifact_folder(root, name, "v1") for name in NAMES]
    assert len(set(folders)) == len(NAMES)  # n/x, n_x and n:x included
    for name, folder in zip(NAMES, folders, strict=True):
        assert folder.parent.parent == root, (name, folder)
        assert folder.resolve().is_relative_to(root.resolve()), (name, folder)
        for part in folder.relative_to(root).parts:
            assert part not in (".", "..") and not part.startswith(".")
            assert "\x00" not in part and "/" not in part and len(part.encode()) < 100
            part.encode("ascii")  # plain on every file system
    assert artifact_folder(root, "n/x", "v1") == artifact_folder(str(root), "n/x", "v1")
    assert path_component("daemon:cpu_util").startswith("daemon_cpu_util-")
    # versions go through the same mapping
    assert artifact_folder(root, "m", "../v").parent == artifact_folder(root, "m", "v").parent
    assert artifact_folder(root, "m", "../v") != artifact_folder(root, "m", "._v")


def _noisy(now: int, seed: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    return [(now - 3600 + i, float(10 + rng.normal(0, 1))) for i in range(3600)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_retrain_keeps_each_metric_in_its_own_folder_inside_the_model_dir(
    http, store, tmp_path: Path
) -> None:  # noqa: ANN001
    now = int(time.time())
    now -= now % 15
    metrics = ["..", "n/x", "n_x"]
    for i, metric in enumerate(metrics):  # one entity each: each metric its own model
        send(http, f"web-vm-{i}", "vm", metric, _noisy(now, i))
    # A name stored before ingest refused NUL (SQLite keeps it): written past the validation.
    legacy = _noisy(now, 9)
    batch = Batch(
        keys=[("old-vm", "\x00z")] * len(legacy),
        ts=[t for t, _ in legacy],
        values=[v for _, v in legacy],
        kinds={"old-vm": "vm"},
        first_item={"old-vm": 0},
        labels={},
        units={},
    )
    sample_store.ingest(store, batch)

    reports = forecasting.retrain(store, now)
    assert sorted(r["metric"] for r in reports) == sorted([*metrics, "\x00z"])
    assert {r["outcome"] for r in reports} == {"registered"}, reports
    model_dir = Path(store.settings.model_dir).resolve()
    with store.sessions() as session:
        paths = {
            m: model_store.current_model(session, forecasting.daemon_model_name(m)).artifact_path
            for m in [*metrics, "\x00z"]
        }
    assert len(set(paths.values())) == 4  # n/x and n_x no longer share one artifact
    for metric, path in paths.items():
        assert Path(path).is_relative_to(model_dir), (metric, path)
        assert load_predictor(path) is not None
    # nothing was written beside the model folder (".." once wrote into its parent)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("tidewise.db")) == [
        "models"
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_save_failure_skips_that_metric_only(http, store, monkeypatch) -> None:  # noqa: ANN001
    now = int(time.time())
    now -= now % 15
    for i, metric in enumerate(["a", "b"]):
        send(http, f"web-vm-{i}", "vm", metric, _noisy(now, i))

    def broken_save(self, folder):  # noqa: ANN001, ANN202
        if "daemon_a-" in str(folder):
            raise OSError("disk full")
        return orig_save(self, folder)

    orig_save = Predictor.save
    monkeypatch.setattr(Predictor, "save", broken_save)
    reports = {r["metric"]: r for r in forecasting.retrain(store, now)}
    assert reports["a"]["outcome"] == "skipped" and "disk full" in reports["a"]["reason"]
    assert reports["b"]["outcome"] == "registered"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tidewise_train_uses_the_same_folders(store, tmp_path: Path) -> None:  # noqa: ANN001
    rows = [("vm-a", "cpu", 1_700_000_040 + 60 * i, 10.0 + i % 7) for i in range(200)]
    csv = tmp_path / "ramp.csv"
    pd.DataFrame(rows, columns=["entity", "metric", "ts", "value"]).to_csv(csv, index=False)
    root = tmp_path / "models"
    paths = []
    for name in ["..", "n/x", "n_x"]:
        res = train_and_register(
            store,
            csv,
            model="window-mean",
            context=4,
            horizon=1,
            indicator="cpu",
            name=name,
            model_dir=root,
        )
        assert Path(res.artifact) == artifact_folder(root, name, res.version).resolve()
        paths.append(res.artifact)
    assert len(set(paths)) == 3
    assert sorted(
        p.name
        for p in tmp_path.iterdir()
        if p.suffix != ".csv" and not p.name.startswith("tidewise.db")
    ) == ["models"]

"""Every loader on the published files in ../shared/data (skipped when that folder is absent).

Expected figures come from each folder's SOURCE.md (rows, entities, spans) and DESIGN.md
(391,015 invocations in the 670-function day).
"""

from __future__ import annotations

import numpy as np
import pytest

import traces
from traces.loaders.fisher import load_wide


def test_azure_functions_1340_day(shared):
    folder = shared / "azure-functions-2019-invitro-samples" / "1340"
    assert traces.detect_format(folder) == "azure-functions-2019"
    f = traces.load(folder)
    assert f.entity.nunique() == 670 and len(f) == 670 * 1440
    assert f.value.sum() == 391_015
    assert f.ts.min() == 0.0 and f.ts.max() == 1439 * 60.0
    st = f.attrs["static"]
    assert len(st) == 670
    assert all("duration_ms" in s and "memory_mb" in s for s in st.values())


def test_azure_functions_500_layout(shared):
    inv = shared / "azure-functions-2019-invitro-samples" / "500" / "invocations.csv"
    f = traces.load(inv)
    assert f.entity.nunique() == 500 and len(f) == 500 * 480
    assert f.value.sum() == 3_037_902
    assert f.ts.min() == 480 * 60.0 and f.ts.max() == 959 * 60.0
    triggers = [s["trigger"] for s in f.attrs["static"].values()]
    assert triggers.count("timer") == 247 and triggers.count("http") == 139


def test_azure_functions_2021(shared):
    path = shared / "azure-functions-2021-invitro-samples" / "Azure2021_200.csv"
    assert traces.detect_format(path) == "azure-functions-2021"
    f = traces.load(path)
    assert f[f.metric == "invocations"].value.sum() == 199
    assert f.entity.nunique() == 31


def test_azure_llm_code(shared):
    path = shared / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_code.csv"
    assert traces.detect_format(path) == "azure-llm-2023"
    f = traces.load(path, step=1)
    req = f[f.metric == "requests"]
    assert req.value.sum() == 8819
    assert (np.diff(req.ts) == 1.0).all()  # every second, empty ones included


def test_alibaba_2018(shared):
    folder = shared / "alibaba-cluster-trace-2018-sample"
    assert traces.detect_format(folder) == "alibaba-2018"
    f = traces.load(folder)
    assert sorted(set(f.entity)) == [f"m_{i}" for i in range(1932, 1942)]
    cpu = f[f.metric == "cpu_util"]
    assert cpu.value.between(0, 100).all()
    assert f[f.metric == "disk_io"].value.between(0, 100).all()  # -1/101 dropped
    assert len(f[f.metric == "mem_gps"]) < len(cpu)  # mostly empty, as documented


def test_bitbrains_one_vm(shared):
    path = shared / "bitbrains-gwa-t-12-rnd" / "2013-7" / "54.csv.gz"
    assert traces.detect_format(path) == "bitbrains"
    f = traces.load(path)
    assert f.attrs["step"] is None  # this VM has extra interleaved samples
    assert traces.load(path.parent / "1.csv.gz").attrs["step"] == 300.0
    ts = f[f.metric == "cpu_util"].ts.to_numpy()
    assert (np.diff(ts) > 0).all()  # the file's repeated samples were merged
    assert 1372629600 - 86400 < ts[0] < 1375228800  # July 2013, unix seconds


def test_azure_vm_2017(shared):
    folder = shared / "azure-vm-2017-datacentersim-sample"
    f = traces.load(folder)
    assert f.entity.nunique() == 70
    assert len(f) == 2 * 70 * 8004
    w = traces.wide(f[f.entity == f.entity.iloc[0]])
    assert (w.iloc[:, 0] <= w.iloc[:, 1]).all()  # avg <= max, as SOURCE.md checked


def test_fisher(shared):
    folder = shared / "fisher-containers-2018"
    f = traces.load(folder)
    assert sorted(set(f.entity)) == [f"container{i}" for i in range(1, 8)]
    assert len(f[f.entity == "container1"]) == 4464 * 11
    w = load_wide(folder / "container3.csv")
    assert w.shape == (3941, 11) and str(w.index[0]) == "2018-07-27 15:10:00"


def test_h100_power(shared):
    path = shared / "gpu-power-h100-training-wilkins" / "power-trace_2025-07-26-23-32-09.csv.gz"
    f = traces.load(path)
    power = f[f.metric == "power_w"]
    assert power.groupby("entity").size().tolist() == [45632 // 8] * 8
    assert power.value.min() == pytest.approx(69.2, abs=0.05)
    assert power.value.max() == pytest.approx(598.1, abs=0.05)


def test_alibaba_genai(shared):
    folder = shared / "alibaba-genai-2026"
    f = traces.load(folder / "qps.tar.gz")
    assert len(f) == 24_627
    assert f[f.metric == "qps"].entity.nunique() == 107
    r = traces.load(folder / "lora_request_trace.csv")
    assert r[r.metric == "requests"].value.sum() == 26_823


def test_datacenter_aggregates(shared):
    path = (shared / "datacenter-aggregates-alejandrofdez" / "alibaba2018"
            / "machine_usage_day_3_grouped_10_seconds.csv")
    f = traces.load(path)
    cpu = f[f.metric == "cpu_util"]
    assert len(cpu) == 8640 and cpu.ts.iloc[0] == 2 * 86400.0


def test_detection_of_every_folder(shared):
    expected = {
        "azure-functions-2019-invitro-samples/1340": "azure-functions-2019",
        "azure-functions-2019-invitro-samples/500": "azure-functions-2019",
        "alibaba-cluster-trace-2018-sample": "alibaba-2018",
        "bitbrains-gwa-t-12-rnd/2013-7": "bitbrains",
        "azure-vm-2017-datacentersim-sample": "azure-vm-2017",
        "fisher-containers-2018": "fisher",
        "gpu-power-h100-training-wilkins": "h100-power",
        "alibaba-genai-2026": "alibaba-genai-2026",
    }
    for rel, name in expected.items():
        assert traces.detect_format(shared / rel) == name, rel

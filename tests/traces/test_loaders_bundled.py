"""The bundled slices load, stay small and are attributed."""

from __future__ import annotations

import gzip

import traces


def test_every_bundled_slice_loads():
    formats = {"azure-llm-code": "azure-llm-2023", "azure-functions-2019": "azure-functions-2019",
               "alibaba-datacenter-10s": "datacenter-aggregates",
               "azure-vms-2019-300s": "datacenter-aggregates"}
    assert set(formats) <= set(traces.BUNDLED)
    for name, path in traces.BUNDLED.items():
        assert path.is_file(), name
        f = traces.load(path)
        assert len(f) > 0 and f.attrs["format"] == formats.get(name, f.attrs["format"])


def test_llm_slice_binned_per_second():
    f = traces.load(traces.BUNDLED["azure-llm-code"], step=1)
    assert set(f.entity) == {"azure-llm-code"}
    assert f[f.metric == "requests"].value.sum() == 8819


def test_functions_slice_has_static_attrs():
    f = traces.load(traces.BUNDLED["azure-functions-2019"])
    assert f.entity.nunique() == 168 and len(f) == 168 * 1440
    st = f.attrs["static"]
    assert all(s["duration_ms"] >= 0 and s["memory_mb"] > 0 for s in st.values())


def test_bundle_is_small_and_attributed():
    files = [p for p in traces.DATA_DIR.iterdir() if p.name != "ATTRIBUTION.md"]
    assert sum(p.stat().st_size for p in files) < 3_000_000
    attribution = (traces.DATA_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for name, path in traces.BUNDLED.items():
        assert f"`{name}`" in attribution and path.name.split("_inv")[0] in attribution


def test_llm_slice_is_the_published_file(shared):
    original = (shared / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_code.csv")
    with gzip.open(traces.BUNDLED["azure-llm-code"], "rb") as fh:
        assert fh.read() == original.read_bytes()


def test_functions_slice_lines_are_published_lines(shared):
    folder = shared / "azure-functions-2019-invitro-samples" / "1340"
    for kind in ("inv", "run", "mem"):
        with gzip.open(traces.DATA_DIR / f"azure_functions_2019_{kind}.csv.gz", "rt") as fh:
            bundled = fh.read().splitlines()
        published = (folder / f"1340_{kind}.csv").read_text().splitlines()
        assert bundled[0] == published[0]  # same header
        assert set(bundled[1:]) <= set(published[1:]) and len(bundled) == 169
    # every 4th function row, starting with the first
    inv = (folder / "1340_inv.csv").read_text().splitlines()
    with gzip.open(traces.BUNDLED["azure-functions-2019"], "rt") as fh:
        assert fh.read().splitlines()[1:] == inv[1::4]

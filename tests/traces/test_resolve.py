import pytest

import traces
from common.errors import TraceFormatError


def test_a_bundled_name_resolves_to_its_file_and_loads():
    assert traces.resolve("azure-llm-code") == traces.BUNDLED["azure-llm-code"]
    frame = traces.load("azure-llm-code", step=60)
    assert set(frame["metric"]) >= {"requests"}
    assert frame.attrs["format"] == "azure-llm-2023"


def test_an_existing_path_wins_over_a_bundled_name(tmp_path, monkeypatch):
    (tmp_path / "azure-llm-code").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert traces.resolve("azure-llm-code") == tmp_path.joinpath("azure-llm-code").relative_to(
        tmp_path
    )


def test_neither_path_nor_name_lists_the_bundled_names():
    with pytest.raises(TraceFormatError) as err:
        traces.resolve("no-such-trace")
    assert "no-such-trace" in str(err.value)
    assert "azure-functions-2019" in str(err.value)


def test_replay_cli_accepts_a_bundled_name(tmp_path):
    from typer.testing import CliRunner

    from service.cli import app

    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        ["replay", "--trace", "alibaba-datacenter-10s", "--scenario", "vm",
         "--policy", "static-peak", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert (out / "report.json").exists()

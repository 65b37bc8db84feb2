"""Feeding a canonical trace frame to the daemon over HTTP."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from common.errors import InputError
from service.feed import feed_frame


def frame(kind="function", relative=False, origin=1_600_000_000):
    f = pd.DataFrame(
        {
            "entity": ["fn-a", "fn-a", "fn-a", "fn-b"],
            "metric": ["invocations", "invocations", "invocations", "cold_starts"],
            "ts": [origin + 0.0, origin + 1.0, origin + 2.0, origin + 1.0],
            "value": [3.0, 0.0, 5.0, 1.0],
        }
    )
    f.attrs.update(
        kind=kind, units={"invocations": "invocations per step"}, relative_time=relative, step=1.0
    )
    return f


def test_feed_shifts_to_now_and_stores_every_sample(live_url):
    now = time.time()
    with httpx.Client() as client:
        res = feed_frame(frame(), client, url=live_url, batch_size=3, shift_to_now=True, now=now)
    assert (res.samples, res.batches, res.entities) == (4, 2, 2)
    last = int(now) - 1
    assert res.last_ts == last and res.first_ts == last - 2
    assert res.shift_s == last - (1_600_000_000 + 2)
    with httpx.Client(base_url=live_url) as http:
        pts = http.get(
            "/v1/series/fn-a/invocations", params={"start": last - 10, "end": last}
        ).json()
        ents = http.get("/v1/entities").json()["entities"]
    assert pts["points"] == [[last - 2, 3.0], [last - 1, 0.0], [last, 5.0]]
    assert pts["unit"] == "invocations per step"
    assert {e["name"]: e["kind"] for e in ents} == {"fn-a": "function", "fn-b": "function"}


def test_feed_window_keeps_the_trace_end(live_url):
    with httpx.Client() as client:
        res = feed_frame(frame(), client, url=live_url, shift_to_now=True, window_s=1.5)
    assert res.samples == 3  # ts origin+1 (two rows) and origin+2


def test_unshifted_old_trace_is_refused_with_the_daemons_reason(live_url):
    with httpx.Client() as client, pytest.raises(InputError) as info:
        feed_frame(frame(), client, url=live_url)
    msg = str(info.value)
    assert "HTTP 422" in msg and "--shift-to-now" in msg and "trace row 0" in msg


@pytest.mark.parametrize(
    ("f", "kw", "phrase"),
    [
        (frame(kind=None), {}, "entity kind"),
        (frame(relative=True), {}, "relative timestamps"),
        (frame().iloc[0:0], {}, "no samples"),
    ],
)
def test_unusable_frames(f, kw, phrase):
    if phrase == "no samples":
        f.attrs.update(kind="function")
    with httpx.Client() as client, pytest.raises(InputError, match=phrase):
        feed_frame(f, client, url="http://127.0.0.1:9", **kw)


def test_unreachable_daemon_is_a_clear_error(port):
    with httpx.Client() as client, pytest.raises(InputError, match="is `tidewise serve` running"):
        feed_frame(frame(), client, url=f"http://127.0.0.1:{port}", shift_to_now=True)


def test_a_mixed_kind_long_csv_feeds_each_entity_with_its_own_kind(live_url, tmp_path):
    from traces.loaders import long

    path = tmp_path / "mixed.csv"
    pd.DataFrame(
        {
            "entity": ["vm-1", "vm-1", "fn-1"],
            "metric": ["cpu_util", "cpu_util", "invocations"],
            "ts": [1_600_000_000, 1_600_000_001, 1_600_000_000],
            "value": [40.0, 42.0, 7.0],
            "kind": ["vm", "vm", "function"],
        }
    ).to_csv(path, index=False)
    f = long.load(path)
    assert f.attrs["kind"] == "mixed"  # what the loader hands the feed
    with httpx.Client() as client:
        res = feed_frame(f, client, url=live_url, shift_to_now=True)
    assert (res.samples, res.entities) == (3, 2)
    with httpx.Client(base_url=live_url) as http:
        ents = http.get("/v1/entities").json()["entities"]
    assert {e["name"]: e["kind"] for e in ents} == {"vm-1": "vm", "fn-1": "function"}


def test_an_unknown_entity_kind_is_refused_before_sending():
    f = frame(kind="mixed")
    f.attrs["kinds"] = {"fn-a": "function", "fn-b": "container"}
    with httpx.Client() as client, pytest.raises(InputError, match="'fn-b' has kind 'container'"):
        feed_frame(f, client, url="http://127.0.0.1:9")


def test_the_feed_command_counts_in_words_with_plurals(live_url, tmp_path):
    """`fed 1 sample of 1 entity in 1 batch`, `fed 3 samples of 2 entities in 2 batches`."""
    from typer.testing import CliRunner

    from service.cli import app

    now = int(time.time())
    path = tmp_path / "one.csv"
    pd.DataFrame({"entity": ["vm-1"], "metric": ["cpu_util"], "ts": [now - 5],
                  "value": [40.0], "kind": ["vm"]}).to_csv(path, index=False)
    r = CliRunner().invoke(app, ["feed", "--trace", str(path), "--url", live_url, "--step", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"fed 1 sample of 1 entity in 1 batch to {live_url} (")
    assert "shifted by 0 s" in r.output and " UTC .. " in r.output

    path = tmp_path / "two.csv"
    pd.DataFrame({"entity": ["vm-1", "vm-1", "vm-2"], "metric": ["cpu_util"] * 3,
                  "ts": [now - 5, now - 4, now - 5], "value": [40.0, 41.0, 7.0],
                  "kind": ["vm"] * 3}).to_csv(path, index=False)
    r = CliRunner().invoke(app, ["feed", "--trace", str(path), "--url", live_url, "--step", "1",
                                 "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"fed 3 samples of 2 entities in 2 batches to {live_url} (")

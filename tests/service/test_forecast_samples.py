"""The binary form of a stored forecast's sample paths (``forecasts.samples``).

:func:`service.store.forecasts.encode_samples` keeps each value as the nearest ``float32``
(``float64`` where one is beyond ``float32``'s range); :func:`decode_samples` gives them
back exactly as kept, and refuses anything that is not such a value, naming what is wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.forecast import Forecast
from service import forecasting
from service.store.errors import NotFoundError
from service.store.forecasts import (
    StoredRecord,
    _plain,
    decode_samples,
    encode_many,
    encode_samples,
    samples_of,
)
from tests.service.conftest import PG_AVAILABLE

ROOT = Path(__file__).resolve().parents[2]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
paths = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=30),
                   elements=finite)


@settings(max_examples=300, deadline=None)
@given(paths)
def test_round_trip_is_float32_where_it_fits_else_exact(a):
    blob = encode_samples(a)
    got = decode_samples(blob)
    assert got.dtype == np.float64 and got.shape == a.shape
    with np.errstate(over="ignore"):
        small = a.astype(np.float32)
    if np.isfinite(small).all():
        assert len(blob) == 12 + 4 * a.size
        assert (got == small.astype(np.float64)).all()  # the nearest float32, bit for bit
    else:  # a value beyond float32's range: kept as float64, exactly
        assert len(blob) == 12 + 8 * a.size
        assert (got == a).all()
    assert encode_samples(got) == blob  # what was kept encodes to the same bytes


def test_float32_keeps_what_a_forecast_needs():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 30.0, size=(100, 20)) * 10.0 ** rng.integers(-6, 12, size=(100, 1))
    got = decode_samples(encode_samples(a))
    assert np.abs(got / a - 1).max() <= 2.0 ** -24  # round to nearest: half a unit in 2^-23
    assert len(encode_samples(a)) == 12 + 8000  # against about 21 kB of JSON before


@pytest.mark.parametrize(("value", "says"), [
    (np.zeros(5), "must be (paths, steps)"),
    (np.zeros((2, 2, 1)), "must be (paths, steps)"),
    (np.array([[1.0, np.nan]]), "must be finite"),
    (np.array([[1.0, np.inf]]), "must be finite"),
])
def test_encode_refuses_what_is_not_paths(value, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        encode_samples(value)


def test_decode_names_what_is_wrong():
    good = encode_samples(np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="shorter than their header"):
        decode_samples(good[:5])
    with pytest.raises(ValueError, match="unknown header"):
        decode_samples(b"XX" + good[2:])
    with pytest.raises(ValueError, match="unknown header"):
        decode_samples(good[:2] + b"\x02" + good[3:])  # no 2-byte floats
    with pytest.raises(ValueError, match="28 bytes for 2 x 3 values of 4 bytes"):
        decode_samples(good[:-8])
    with pytest.raises(ValueError, match="40 bytes for 2 x 3 values"):
        decode_samples(good + b"\0" * 4)
    assert (decode_samples(memoryview(good)) == np.arange(6.0).reshape(2, 3)).all()


def test_samples_of_reads_the_column_unless_an_older_writer_put_paths_in_the_json():
    a = np.arange(12.0).reshape(3, 4) / 7
    rec = StoredRecord(1, 0, 0.0, 15.0, "m", False, {"indicators": ["m"]}, encode_samples(a))
    assert (samples_of(rec) == a.astype(np.float32)).all()
    old = StoredRecord(1, 0, 0.0, 15.0, "m", False, {"samples": a.tolist()}, None)
    assert (samples_of(old) == a).all()
    # an older daemon rewrote the row during an upgrade: its JSON paths are the latest, the
    # column still holds what a newer daemon wrote before
    mixed = StoredRecord(1, 0, 0.0, 15.0, "m", False, {"samples": [[9.0]]}, encode_samples(a))
    assert samples_of(mixed).tolist() == [[9.0]]
    with pytest.raises(NotFoundError, match="no sample paths"):
        samples_of(StoredRecord(1, 0, 0.0, 15.0, "m", False, {}, None))


def test_payload_leaves_the_paths_to_the_column():
    rng = np.random.default_rng(1)
    s = rng.normal(10, 2, size=(50, 6, 2))
    fc = Forecast(s, 0.0, 15.0, ("cpu", "mem"), model="m")
    body = forecasting.payload(fc, 1, ("cpu", "mem"))
    assert "samples" not in body and body["indicators"] == ["cpu", "mem"]
    assert body["median"] == pytest.approx(np.median(s[:, :, 1], axis=0).tolist())
    got = decode_samples(forecasting.stored_samples(fc, 1))
    assert (got == s[:, :, 1].astype(np.float32)).all()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_AVAILABLE, reason="no PostgreSQL at 127.0.0.1:5432")
def test_the_payload_bench_stores_and_reads_back_both_layouts():
    """``bench/forecast_payload.py``, tiny: both layouts stored and read back (the bench
    checks every path came back), the binary rows the smaller."""
    out = subprocess.run([sys.executable, "bench/forecast_payload.py", "--series", "30",
                          "--repeat", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [r.split("|") for r in out.stdout.splitlines() if r.startswith("| constant")
            or r.startswith("| varied")]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        ("constant", "JSON"), ("constant", "binary"), ("varied", "JSON"), ("varied", "binary")]
    size = {(r[1].strip(), r[2].strip()): int(r[3].split()[0].replace(",", "")) for r in rows}
    for kind in ("constant", "varied"):
        assert size[(kind, "binary")] < 0.6 * size[(kind, "JSON")]


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(st.sampled_from([np.float64, np.float32]),
                  st.tuples(st.integers(1, 40), st.integers(1, 6), st.integers(1, 3)),
                  elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)))
def test_stored_quantiles_are_numpys_to_the_bit(s):
    """The payload's quantile columns come from one sort of the paths; they are
    ``numpy.quantile``'s figures exactly (ties, constant paths and one path included)."""
    fc = Forecast(s, 0.0, 15.0, tuple(f"m{i}" for i in range(s.shape[2])), model="m")
    got = forecasting._quantiles(fc)
    want = np.quantile(fc.samples, list(forecasting.QUANTILES.values()), axis=0)  # float64
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=3, max_dims=3, max_side=6),
                  elements=finite))
def test_encode_many_is_encode_samples_of_each(a):
    assert encode_many(a) == [encode_samples(p) for p in a]


def test_encode_many_refuses_what_is_not_paths():
    with pytest.raises(ValueError, match=r"must be \(forecasts, paths, steps\)"):
        encode_many(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="must be finite"):
        encode_many(np.array([[[1.0]], [[np.nan]]]))


def _json(body):
    """The bytes ``save_forecasts`` writes for a payload (its bind processor's call)."""
    return orjson.dumps(body, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)


forecast_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, width=64),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 5e-324, 1e-40]),  # signs, float32 overflow
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([(1, 1, 1), (3, 2, 1), (4, 3, 2), (100, 20, 5)]),
                          st.booleans(), st.integers(0, 2**32 - 1)), min_size=1, max_size=7),
       st.sampled_from([10, 200, 2_000_000]), st.data())
def test_stored_forms_are_payload_and_stored_samples_to_the_bit(specs, batch, data):
    """The refresh's batched form of each forecast: the JSON and bytes that
    :func:`payload` and :func:`stored_samples` give one forecast at a time, whatever the
    mix of shapes and however the batches split (``_FORMS_VALUES``)."""
    fcs = []
    for (s, h, m), named, seed in specs:
        rng = np.random.default_rng(seed)
        x = rng.normal(rng.uniform(-50, 50), rng.uniform(0, 9), size=(s, h, m))
        if data.draw(st.booleans()):  # a few drawn values: ties, zeros' signs, overflow
            for _ in range(data.draw(st.integers(1, 4))):
                x[tuple(int(rng.integers(0, d)) for d in x.shape)] = data.draw(forecast_values)
        names = tuple(f"m{j}" for j in range(m))
        fc = Forecast(x, 1.7e9 + seed % 977, 15.0, names, model="m",
                      info={"n": seed, "why": None, "odd": [1, 2]})
        fcs.append((fc, tuple(reversed(names)) if named else None))
    old = forecasting._FORMS_VALUES
    forecasting._FORMS_VALUES = batch
    try:
        got = forecasting.stored_forms(fcs)
    finally:
        forecasting._FORMS_VALUES = old
    assert len(got) == len(fcs)
    for (fc, names), forms in zip(fcs, got, strict=True):
        assert len(forms) == fc.samples.shape[2]
        for j, (body, blob) in enumerate(forms):
            assert _json(body) == _json(forecasting.payload(fc, j, names))
            assert blob == forecasting.stored_samples(fc, j)
    # each body is its own: the refresh adds to one's info without touching the others
    if len(got[0]) > 1:
        got[0][0][0]["info"]["source_last_ts"] = 1
        assert "source_last_ts" not in got[0][1][0]["info"]


def test_metrics_reads_of_paths_agree_with_samples_of(store, caplog):
    """``promreads.forecast_payloads(samples=True)`` (what /metrics computes a level
    outside the stored columns from) gives the paths :func:`samples_of` gives: the column,
    the JSON paths of an older writer over a column it left behind, nothing for a row
    whose paths cannot be read (logged; the other rows still come back)."""
    from sqlalchemy import text

    from service import promreads
    from service.store import forecasts as forecast_store

    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO entities (name, kind, labels) VALUES ('e', 'vm', '{}')"))
        for m in ("a", "b", "c"):
            conn.execute(text("INSERT INTO series (entity_id, metric, unit) "
                              f"VALUES (1, '{m}', '')"))
    a = np.arange(6.0).reshape(2, 3) / 3
    base = {"computed_at": 5, "start": 0.0, "step": 15.0, "model": "m", "fallback": False}
    forecast_store.save_forecasts(store, [
        {**base, "series_id": 1, "payload": {"mean": [0.0]}, "samples": encode_samples(a)},
        {**base, "series_id": 2, "payload": {"mean": [0.0], "samples": [[7.0, 8.0]]},
         "samples": encode_samples(a)},  # an older daemon's row over a newer one's column
        {**base, "series_id": 3, "payload": {"mean": [0.0]}, "samples": b"TW\x04\x00broken"},
    ])
    with store.sessions() as session:
        got = promreads.forecast_payloads(session, [1, 2, 3], samples=True)
        heads = promreads.forecast_payloads(session, [1, 2, 3])
    assert (got[1][2]["samples"] == a.astype(np.float32)).all()
    assert np.asarray(got[2][2]["samples"]).tolist() == [[7.0, 8.0]]
    assert "samples" not in got[3][2] and got[3][2]["mean"] == [0.0]
    assert "stored paths unreadable" in caplog.text
    assert all("samples" not in heads[i][2] for i in (1, 3))  # not read unless asked


def test_the_stored_forms_bench_checks_both_ways_agree_and_prints_both():
    out = subprocess.run([sys.executable, "bench/stored_forms.py", "--entities", "12",
                          "--metrics", "3", "--repeat", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [r.split("|")[1].strip() for r in out.stdout.splitlines()
            if r.startswith("| one") or r.startswith("| batched")]
    assert rows == ["one at a time", "batched"] and "36 series" in out.stdout

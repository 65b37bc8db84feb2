"""common.units: the one formatter behind every CLI figure and plot axis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.units import PREFIXES, count, human, plural

FACTOR = {p: f for f, p in PREFIXES}


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1_035_930.0, "GB·s", "1.04 M GB·s"),  # the wasted_memory_gb_s=1.03593e+06
        (3200, "replica·s", "3.2 k replica·s"),
        (0.0172, "%", "1.72 %"),
        (1520.0, "W", "1.52 kW"),
        (2.5, "kW", "2.5 kW"),
        (1234.5, "kWh", "1.23 MWh"),
        (999_999, "", "1 M"),  # rounded before the prefix is chosen, not "1000 k"
        (2.5e-05, "", "0.000025"),
        (0, "s", "0 s"),
        (-1_500_000, "GB·s", "-1.5 M GB·s"),
        (17.0, "cold starts", "17 cold starts"),
        (1.0, "cold starts", "1 cold start"),  # a counted unit agrees with its number
        (1.0, "steps", "1 step"),
        (1.0, "GB·s", "1 GB·s"),  # a unit symbol is not a plural
        (1.0, "s", "1 s"),
        (None, "s", "-"),
        (float("nan"), "s", "nan"),
    ],
)
def test_examples(value, unit, text):
    assert human(value, unit) == text


def test_ticks_leave_the_unit_to_the_label():
    assert human(1_500_000, "GB·s", show_unit=False) == "1.5 M"
    assert human(0.25, "%", show_unit=False) == "25"
    assert human(1500, "kW", show_unit=False) == "1.5 k"  # stays in kW under a [kW] label


def _parse(text: str) -> float:
    """Read a human() string without unit back into a number."""
    parts = text.split()
    return float(parts[0]) * (FACTOR[parts[1]] if len(parts) > 1 else 1.0)


@given(st.floats(min_value=-1e17, max_value=1e17, allow_nan=False).filter(
    lambda x: x == 0 or abs(x) >= 1e-9))
def test_round_trip_within_the_printed_digits(x):
    text = human(x, show_unit=False)
    assert "e" not in text  # never scientific notation
    back = _parse(text)
    # 3 significant digits: off by at most half a unit in the third digit
    assert math.isclose(back, x, rel_tol=5e-3, abs_tol=1e-12), (x, text)
    mantissa = abs(float(text.split()[0]))
    assert x == 0 or len(text.split()) == 1 or 1 <= mantissa < 1000  # prefix chosen well


@given(st.floats(min_value=0, max_value=1e15), st.floats(min_value=0, max_value=1e15))
def test_order_is_kept(a, b):
    lo, hi = sorted((a, b))
    assert _parse(human(lo, show_unit=False)) <= _parse(human(hi, show_unit=False))


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [
        (1, "entity", "1 entity"),
        (3, "entity", "3 entities"),
        (0, "entity", "0 entities"),
        (1, "batch", "1 batch"),
        (2, "batch", "2 batches"),
        (12345, "sample", "12,345 samples"),
        (2, "cold start", "2 cold starts"),
        (2, "day", "2 days"),  # vowel + y
    ],
)
def test_counts_are_plural_aware(n, noun, text):
    assert count(n, noun) == text


def test_plural_of_one_is_the_noun():
    assert plural("window", 1) == "window" and plural("window", 2) == "windows"

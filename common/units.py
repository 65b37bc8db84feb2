"""Numbers as people read them: a unit on every figure, SI prefixes, plural-aware counts.

Every CLI printout (replay summary, evaluate and train tables, feed messages) and every
replay plot axis formats through this module, so one figure reads the same everywhere::

    human(1035930.0, "GB·s")     -> "1.04 M GB·s"
    human(3200, "replica·s")     -> "3.2 k replica·s"
    human(0.0172, "%")           -> "1.72 %"      (a fraction, shown in percent)
    human(1520.0, "W")           -> "1.52 kW"     (the prefix joins a base SI unit)
    human(2.5e-05)               -> "0.000025"    (never "2.5e-05")
    count(1, "entity")           -> "1 entity"
    count(3, "entity")           -> "3 entities"
    utc(1700000000)              -> "2023-11-14 22:13:20 UTC"
"""

from __future__ import annotations

import math

#: SI prefixes for magnitudes of 1,000 and more, largest first.
PREFIXES: tuple[tuple[float, str], ...] = (
    (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"),
)
#: Units a prefix is written against ("1.52 kW"); other units get it as a word
#: ("1.04 M GB·s", "3.2 k replica·s"), since "MGB·s" would misread.
JOINED = frozenset({"W", "Wh", "J", "B", "Hz"})
#: Units that already carry a prefix, rebased so a large figure does not read "1.2 k kWh".
REBASED: dict[str, tuple[str, float]] = {"kW": ("W", 1e3), "kWh": ("Wh", 1e3)}


def _plain(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits, positional (no exponent), zeros trimmed."""
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    if "e" in text:  # tiny values: 2.5e-05 -> 0.000025
        exp = int(text.split("e")[1])
        text = f"{x:.{max(digits - 1 - exp, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def human(value: float | int | None, unit: str = "", digits: int = 3, *,
          show_unit: bool = True) -> str:
    """Format ``value`` with ``digits`` significant digits, an SI prefix and its unit.

    Args:
        value: the figure; None reads ``-``, NaN ``nan``, infinities ``inf``/``-inf``.
        unit: its unit; ``"%"`` means ``value`` is a fraction (0.0172 -> ``1.72 %``).
        digits: significant digits (at least 1).
        show_unit: False leaves the unit out (axis ticks, whose label carries it),
            keeping the prefix (``"1.5 M"``); ``"%"`` still scales by 100, and a ``kW``
            figure stays in kW (not rebased to W, so it matches a ``[kW]`` label).

    Returns:
        e.g. ``"1.04 M GB·s"``; magnitudes of 1,000 or more take a prefix (k, M, G, T,
        P, E), smaller ones are written out (``"0.0172"``, never ``"1.72e-02"``).

    """
    if value is None:
        return "-"
    x = float(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    digits = max(1, int(digits))
    if unit == "%":
        x *= 100.0
    if unit in REBASED and show_unit:
        unit, factor = REBASED[unit]
        x *= factor
    x = float(f"{x:.{digits}g}")  # round first, so 999,999 reads "1 M", not "1000 k"
    prefix = ""
    for factor, p in PREFIXES:
        if abs(x) >= factor:
            x, prefix = x / factor, p
            break
    number = _plain(x, digits)
    if number in ("1", "-1") and not prefix and _counted(unit):
        unit = unit[:-1]  # "1 step", "1 cold start", not "1 steps"
    if not show_unit:
        return f"{number} {prefix}" if prefix else number
    if prefix and unit in JOINED:
        return f"{number} {prefix}{unit}"
    return " ".join(part for part in (number, prefix, unit) if part)


def _counted(unit: str) -> bool:
    """Tell whether ``unit`` is a plural noun (``steps``, ``cold starts``, ``scale-ups``)."""
    last = unit.rpartition(" ")[2]
    return len(last) > 2 and last.endswith("s") and last.replace("-", "").isalpha()


def utc(ts: float) -> str:
    """Unix seconds as a UTC date and time: ``"2026-12-06 13:30:00 UTC"``."""
    import datetime as dt

    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(noun: str, n: float) -> str:
    """``noun`` as it reads after the number ``n``: ``entity`` -> ``entities`` unless n == 1.

    English rules enough for our messages: consonant + y -> ies; s, x, z, ch, sh -> es;
    else s. A noun that is a phrase ("cold start") pluralises its last word.
    """
    if n == 1:
        return noun
    head, _, last = noun.rpartition(" ")
    if len(last) > 1 and last.endswith("y") and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def count(n: int, noun: str) -> str:
    """Write an exact count with thousands separators and its noun: ``"12,345 samples"``."""
    return f"{int(n):,} {plural(noun, int(n))}"

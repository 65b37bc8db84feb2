"""Mutation sample: do the tests notice a broken guard?

    PYTHONPATH=$PWD .venv/bin/python bench/mutants.py [--per-module 15] [--seed 12]
        [--modules ingest,auth,decisions,calibration,bayes_power,power,vm] [--no-listed]
        [--jobs 1] [--timeout 300] [--postgres] [--json runs/mutants.json]

For each module below, every mutation site is enumerated from the module's AST, in source
order, and ``--per-module`` of them are drawn with ``random.Random(seed, module)`` (the same
sample on every run of the same source). Operators:

* comparison: ``<``/``<=``/``>``/``>=`` shifted at the boundary (``<`` -> ``<=``) and
  flipped (``<`` -> ``>=``), ``==`` <-> ``!=``, ``in`` <-> ``not in``, ``is`` <-> ``is not``;
* arithmetic: ``+`` <-> ``-``, ``*`` <-> ``/``;
* constant: a number ``c`` -> ``c + 1``, ``c - 1`` or ``c * 10`` (``True`` <-> ``False``);
* boolean: the test of an ``if``/``while``/conditional expression negated,
  ``and`` <-> ``or``, ``not x`` -> ``x``;
* ``raise`` removed (replaced by ``pass``).

Sites inside log calls, f-strings, docstrings and annotations are left out (a changed log
line is not a broken guard). The hand-listed mutants of issue 12, item 11 (exact text
replacements, :data:`LISTED`) are run as well; one whose text is no longer in the source is
reported as ``n/a``.

Each mutant is applied to a private copy of the tree (tracked and untracked, not ignored,
files; ``git ls-files``) in a temporary folder — the working tree is never edited — and the
module's mapped tests (:data:`MODULES`) run there with ``pytest -x`` under a timeout and
``PYTHONDONTWRITEBYTECODE=1`` (no stale bytecode of a same-size mutant). Tests failing,
erroring or timing out = **killed**; passing = **survived**. PostgreSQL-parametrised tests
are deselected unless ``--postgres``. First the unmutated copy runs each module's tests:
a module whose baseline fails is skipped (its figures would mean nothing).

Some mutants change nothing that can be observed (a parameter the function never reads, a
progress bar's display), or change results only where no input reaches (a float tolerance
moved within noise no clock or grid produces) or only a report's rounding; no honest test
kills them. They are listed in :data:`EQUIVALENT` by module, source line, column and
change, each with the reason (which says "in practice" or "presentation only" where it is
not strict equivalence). Such a mutant still runs; if it survives it is printed as
``EQUIVALENT`` with its reason and counted apart: neither killed nor in the kill rate's
denominator. The raw rate, with every one of them counted as a survivor, is printed beside
it.

Prints one line per mutant (``KILLED``/``SURVIVED``/``EQUIVALENT``, time, place, change),
then the kill rate per module and overall, sampled and listed separately.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: module key -> (source file, tests that guard it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "ingest": (
        "service/ingest.py",
        ["tests/service/test_service_validation.py", "tests/service/test_service_api.py"],
    ),
    "auth": ("service/auth.py", ["tests/daemon/test_auth.py", "tests/daemon/test_auth_guards.py"]),
    "decisions": (
        "service/decisions.py",
        [
            "tests/daemon/test_decisions.py",
            "tests/daemon/test_decision_guards.py",
            "tests/daemon/test_ack_counts.py",
            "tests/daemon/test_orchestrators.py",
            "tests/daemon/test_parity.py",
        ],
    ),
    "calibration": (
        "models/calibration.py",
        ["tests/models/test_calibration.py", "tests/models/test_calibration_guards.py"],
    ),
    "bayes_power": (
        "policies/bayes_power.py",
        ["tests/policies/test_bayes_power.py", "tests/policies/test_bayes_power_guards.py"],
    ),
    "power": (
        "traces/replay/power.py",
        ["tests/replay/test_power_model.py", "tests/replay/test_replay_guards.py"],
    ),
    "vm": (
        "traces/replay/vm.py",
        ["tests/replay/test_vm.py", "tests/replay/test_replay_guards.py"],
    ),
}

#: Issue 12, item 11: (name, module key, exact old text, new text).
LISTED: list[tuple[str, str, str, str]] = [
    ("token min length 16 -> 8", "auth", "if len(token) < 16:", "if len(token) < 8:"),
    (
        "invalid first vm decision recommends the current count",
        "decisions",
        "current=current)\n    return spec, obs, None",
        "current=current or c.Desired(requested_n))\n    return spec, obs, None",
    ),
    (
        "the forecaster's state not restored between decisions (was: the stale-forecast"
        " cut-off, a rule the one-pipeline change retired)",
        "decisions",
        "fc.load_state_dict(fc_state)",
        "pass",
    ),
    (
        "bayes power releases below target, not release_ratio x target",
        "bayes_power",
        'calm = p_free <= float(self.params["release_ratio"]) * eps',
        "calm = p_free <= eps",
    ),
    (
        "replay cancels the oldest booting replica",
        "vm",
        "                        booting.pop()\n",
        "                        booting.popleft()\n",
    ),
    (
        "power replay accepts caps below idle (step segment b)",
        "power",
        "cap_b = np.maximum(cap_b, floor)",
        "cap_b = cap_b",
    ),
    (
        "power replay accepts caps below idle (delayed segment a)",
        "power",
        "cap_a = np.maximum(caps[t - q - 1] if t - q - 1 >= 0 else np.full(n, np.inf),\n"
        "                                   floor)",
        "cap_a = caps[t - q - 1] if t - q - 1 >= 0 else np.full(n, np.inf)",
    ),
    (
        "conformal rank (n + 1) -> n",
        "calibration",
        "np.ceil((n + 1) * LEVEL - 1e-9)",
        "np.ceil(n * LEVEL - 1e-9)",
    ),
    (
        "spread-factor clip removed",
        "calibration",
        "return np.clip(fac, MIN_FACTOR, MAX_FACTOR)",
        "return fac",
    ),
]


#: Mutants no test can kill: (module key, the mutated line's source text stripped, the
#: mutated node's column, the change as printed, why no observable behaviour differs).
#: Matched on text and column, not line numbers, so that edits elsewhere in the module keep
#: the mark in place.
EQUIVALENT: list[tuple[str, str, int, str, str]] = (
    [
        (
            "calibration",
            "above = y >= med",
            12,
            "`>=` -> `>` in `y >= med`",
            "a point exactly at the mean is at distance 0, so it needs factor 0 (dist <= eps) "
            "whichever half-width it is measured against",
        ),
        (
            "calibration",
            "rank = min(n, int(np.ceil((n + 1) * LEVEL - 1e-9)))",
            48,
            "`1e-09` -> `1e-08`",
            "ceil((n + 1) * 0.9 - 1e-9) and ceil((n + 1) * 0.9 - 1e-8) agree for every n up to "
            "2e8 (checked one by one); more validation points than that do not fit in memory",
        ),
        (
            "calibration",
            '"factors": fac.round(4).tolist(),',
            29,
            "`4` -> `5`",
            "presentation only: the factors as recorded in fit_info get a fifth decimal; the "
            "factors applied to forecasts (predictor.calibration) are not rounded",
        ),
        (
            "decisions",
            "ts, values = np.zeros(0, dtype=np.int64), np.zeros(0)",
            34,
            "`0` -> `1`",
            "without the series `values` is empty, and `ts` is read only when there are values",
        ),
        (
            "power",
            "def run(self, policy: Policy, data: PowerData, *, seed: int = 0, "
            "timeline: bool = False,",
            66,
            "`0` -> `1`",
            "the power replay never reads `seed` (it has no randomness)",
        ),
        (
            "power",
            "def run(self, policy: Policy, data: PowerData, *, seed: int = 0, "
            "timeline: bool = False,",
            66,
            "`0` -> `-1`",
            "the power replay never reads `seed` (it has no randomness)",
        ),
        (
            "power",
            "return v[np.clip(i, 0, len(v) - 1)]",
            36,
            "`1` -> `0`",
            "i = searchsorted(...) - 1 is at most len(v) - 1: the clip's upper bound never "
            "binds",
        ),
        (
            "bayes_power",
            "print(json.dumps(out, indent=1))",
            33,
            "`1` -> `2`",
            "display only: the planning CLI's JSON indentation",
        ),
        (
            "power",
            "n_t = int(np.floor((ends - starts).min() / step + 1e-9)) + 1",
            58,
            "`1e-09` -> `1e-08`",
            "in practice: differs only where a run's span / step falls 1e-9..1e-8 short of a "
            "whole number; whole-second or binary-fraction steps divide exactly, and decimal "
            "sub-second steps on epoch clocks err by ~1e-6, beyond both tolerances",
        ),
        (
            "vm",
            'services = tqdm(services, desc=policy.name, unit="service", leave=False)',
            78,
            "`False` -> `True`",
            "display only: whether tqdm's finished progress bar stays on the terminal",
        ),
        (
            "vm",
            "if np.all(np.abs(pos - np.rint(pos)) < 1e-9):",
            47,
            "`1e-09` -> `1e-08`",
            "in practice: only change times 1e-9..1e-8 of a step off a boundary take the "
            "one-segment-per-step path instead of the exact one, moving figures by under 1e-8 "
            "of a step",
        ),
        (
            "bayes_power",
            "samples: np.ndarray, budget_w: float, caps_w: np.ndarray, idle_w: float = 0.0",
            78,
            "`0.0` -> `-1.0`",
            "max(cap, idle) is the cap itself for idle 0 or -1 whenever the cap is >= 0 W, "
            "and caps are watts, never negative",
        ),
        (
            "power",
            "u = np.clip(np.nan_to_num(series, nan=0.0) / 100.0, 0.0, 1.0)",
            50,
            "`0.0` -> `-1.0`",
            "utilisation is clipped to [0, 1] right after: a gap read as 0 % or -1 % is 0 "
            "either way",
        ),
        (
            "power",
            'fc = forecaster if getattr(policy, "needs_forecast", False) else None',
            61,
            "`False` -> `True`",
            "every Policy defines needs_forecast (False on the base class): the default is "
            "never used",
        ),
        (
            "vm",
            "if self.progress and len(services) > 1:  # separate mode: one service at a time",
            29,
            "`>` -> `<=` in `len(services) > 1`",
            "display only: whether a progress bar is drawn over the services",
        ),
        (
            "vm",
            "idx = np.clip(idx, 0, n - 1)",
            23,
            "`0` -> `-1`",
            "t0 is the earliest sample, so idx = floor((ts - t0) / step + 1e-9) is never below 0",
        ),
    ]
    + [
        (
            "calibration",
            f'"{key}": {var}.round(4).tolist(),',
            col,
            f"`4` -> `{new}`",
            "presentation only: a figure recorded in fit_info rounded to another number of "
            "decimals; the factors applied to forecasts are not rounded",
        )
        for key, var, col in (
            ("coverage_before", "before", 40),
            ("coverage_after", "after", 38),
            ("factors", "fac", 29),
        )
        for new in (3, 40)  # `4` -> `5` for the factors is listed above
    ]
    + [
        (
            "calibration",
            f'"{key}": {var}.round(4).tolist(),',
            col,
            "`4` -> `5`",
            "presentation only: a figure recorded in fit_info rounded to 5 decimals instead of 4",
        )
        for key, var, col in (("coverage_before", "before", 40), ("coverage_after", "after", 38))
    ]
)


@dataclasses.dataclass
class Mutant:
    """One change to one module: where, what, and the new source text."""

    module: str
    line: int
    kind: str
    change: str
    source: str
    listed: bool = False
    col: int = 0
    text: str = ""  # the mutated line's source, stripped (matches EQUIVALENT)

    def equivalent(self) -> str | None:
        """Why this mutant is equivalent (:data:`EQUIVALENT`), or None."""
        for module, text, col, change, why in EQUIVALENT:
            if (module, text, col, change) == (self.module, self.text, self.col, self.change):
                return why
        return None


# ----------------------------------------------------------------------------- enumeration

_CMP_SWAP = {
    ast.Lt: [ast.LtE, ast.GtE],
    ast.LtE: [ast.Lt, ast.Gt],
    ast.Gt: [ast.GtE, ast.LtE],
    ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
}
_BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_SYM = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.And: "and", ast.Or: "or",
}  # fmt: skip


def _skipped_ranges(tree: ast.AST) -> list[tuple[int, int, int, int]]:
    """Source ranges never mutated: log calls, f-strings, docstrings, annotations."""
    out = []

    def add(node: ast.AST | None) -> None:
        if node is not None and hasattr(node, "lineno"):
            out.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            if isinstance(base, ast.Name) and base.id in ("log", "logger", "logging", "warnings"):
                add(node)
        elif isinstance(node, ast.JoinedStr):
            add(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(node.returns)
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                add(a.annotation)
        elif isinstance(node, ast.AnnAssign):
            add(node.annotation)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                add(body[0])
    return out


def _inside(node: ast.AST, ranges: list[tuple[int, int, int, int]]) -> bool:
    a = (node.lineno, node.col_offset)
    b = (node.end_lineno, node.end_col_offset)
    return any((r[0], r[1]) <= a and b <= (r[2], r[3]) for r in ranges)


def _replace(src_lines: list[str], node: ast.AST, text: str) -> str:
    """The module source with ``node``'s source segment replaced by ``text``."""
    lines = list(src_lines)
    first, last = node.lineno - 1, node.end_lineno - 1
    head = lines[first][: _byte_col(lines[first], node.col_offset)]
    tail = lines[last][_byte_col(lines[last], node.end_col_offset) :]
    return "".join(lines[:first] + [head + text + tail] + lines[last + 1 :])


def _byte_col(line: str, col: int) -> int:
    """AST columns count UTF-8 bytes; convert to a str index."""
    return len(line.encode()[:col].decode(errors="ignore"))


def _segment(src_lines: list[str], node: ast.AST) -> str:
    return ast.get_source_segment("".join(src_lines), node) or ast.unparse(node)


def _short(text: str, n: int = 70) -> str:
    """``text`` on one line, cut to ``n`` characters (for the printed change)."""
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def enumerate_mutants(module: str, path: Path) -> list[Mutant]:
    """Every mutant of one module, in source order (see the module docstring)."""
    src = path.read_text()
    lines = src.splitlines(keepends=True)
    tree = ast.parse(src)
    skip = _skipped_ranges(tree)
    out: list[Mutant] = []

    def emit(node: ast.AST, kind: str, new_node_text: str, change: str) -> None:
        out.append(
            Mutant(
                module,
                node.lineno,
                kind,
                change,
                _replace(lines, node, new_node_text),
                col=node.col_offset,
                text=lines[node.lineno - 1].strip(),
            )
        )

    for node in ast.walk(tree):
        if not hasattr(node, "lineno") or _inside(node, skip):
            continue
        old = None
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new in _CMP_SWAP.get(type(op), []):
                    m = ast.Compare(node.left, list(node.ops), node.comparators)
                    m.ops[i] = new()
                    old = old or _short(_segment(lines, node))
                    emit(
                        node,
                        "compare",
                        f"({ast.unparse(m)})",
                        f"`{_SYM[type(op)]}` -> `{_SYM[new]}` in `{old}`",
                    )
        elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_SWAP:
            new = _BIN_SWAP[type(node.op)]
            m = ast.BinOp(node.left, new(), node.right)
            emit(
                node,
                "arith",
                f"({ast.unparse(m)})",
                f"`{_SYM[type(node.op)]}` -> `{_SYM[new]}` in `{_short(_segment(lines, node))}`",
            )
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            m = ast.BoolOp(new(), node.values)
            emit(
                node,
                "boolean",
                f"({ast.unparse(m)})",
                f"`{_SYM[type(node.op)]}` -> `{_SYM[new]}` at col {node.col_offset}",
            )
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            emit(
                node,
                "boolean",
                f"({_segment(lines, node.operand)})",
                f"`not` removed in `{_short(_segment(lines, node))}`",
            )
        elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
            t = node.test
            if not _inside(t, skip):
                seg = _segment(lines, t)
                out.append(
                    Mutant(
                        module,
                        t.lineno,
                        "boolean",
                        f"negated `{_short(seg)}`",
                        _replace(lines, t, f"(not ({seg}))"),
                        col=t.col_offset,
                        text=lines[t.lineno - 1].strip(),
                    )
                )
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str | bytes):
            v = node.value
            if isinstance(v, bool):
                emit(node, "constant", repr(not v), f"`{v}` -> `{not v}`")
            elif isinstance(v, int | float) and not isinstance(v, complex):
                for new in (v + 1, v - 1, v * 10):
                    if new != v:
                        text = repr(new) if isinstance(new, int) else repr(float(f"{new:.12g}"))
                        emit(node, "constant", f"({text})", f"`{v!r}` -> `{text}`")
        elif isinstance(node, ast.Raise):
            emit(node, "raise", "pass", f"`raise` removed (`{_short(_segment(lines, node), 60)}`)")
    # by place; ties keep the walk's order (stable sort), so the sample does not depend on
    # how a change is described
    out.sort(key=lambda m: (m.line, m.col, m.kind))
    return out


def sample(mutants: list[Mutant], k: int, seed: int, module: str) -> list[Mutant]:
    """``k`` mutants drawn reproducibly (seeded by ``seed`` and the module's name)."""
    rng = random.Random(seed * 1_000_003 + zlib.crc32(module.encode()))
    picked = rng.sample(range(len(mutants)), min(k, len(mutants)))
    return [mutants[i] for i in sorted(picked)]


def listed_mutants(modules: list[str]) -> list[Mutant]:
    """The hand-listed mutants; ``source`` is empty when the text is no longer found."""
    out = []
    for name, module, old, new in LISTED:
        if module not in modules:
            continue
        path = ROOT / MODULES[module][0]
        src = path.read_text()
        line = src[: src.find(old)].count("\n") + 1 if old in src else 0
        mutated = src.replace(old, new, 1) if src.count(old) == 1 else ""
        out.append(Mutant(module, line, "listed", name, mutated, listed=True))
    return out


# ----------------------------------------------------------------------------- running


def copy_tree(dest: Path) -> None:
    """Copy the checkout's files (tracked, and untracked but not ignored) to ``dest``."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in files:
        if not rel:
            continue
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def run_tests(tree: Path, tests: list[str], timeout: float, postgres: bool) -> tuple[str, float]:
    """Run ``tests`` in ``tree``; return (``pass``/``fail``/``timeout``/``error``, seconds)."""
    env = dict(
        os.environ,
        PYTHONPATH=str(tree),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
        TIDEWISE_TEST_SEED=os.environ.get("TIDEWISE_TEST_SEED", "1234"),
    )
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-o",
        "addopts=",
        *tests,
    ]
    if not postgres:
        argv += ["-k", "not postgresql"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            argv, cwd=tree, env=env, capture_output=True, timeout=timeout, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0
    dt = time.monotonic() - t0
    return {0: "pass", 1: "fail", 2: "fail", 3: "fail"}.get(proc.returncode, "error"), dt


class Worker:
    """A private copy of the tree in which mutants are applied one at a time."""

    def __init__(self, base: Path, i: int) -> None:
        self.tree = base / f"w{i}"
        self.tree.mkdir()
        copy_tree(self.tree)

    def run(self, mutant: Mutant, timeout: float, postgres: bool) -> tuple[str, float]:
        path = self.tree / MODULES[mutant.module][0]
        original = path.read_text()
        try:
            path.write_text(mutant.source)
            return run_tests(self.tree, MODULES[mutant.module][1], timeout, postgres)
        finally:
            path.write_text(original)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-module", type=int, default=15)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("--no-listed", action="store_true", help="skip the hand-listed mutants")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once (one tree each)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's tests")
    ap.add_argument("--postgres", action="store_true", help="also the PostgreSQL-backed tests")
    ap.add_argument("--json", help="write every mutant's outcome here")
    args = ap.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        sys.exit(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}")

    t_start = time.monotonic()
    todo: list[Mutant] = []
    for m in modules:
        every = enumerate_mutants(m, ROOT / MODULES[m][0])
        picked = sample(every, args.per_module, args.seed, m)
        print(f"{m}: {len(every)} mutation sites in {MODULES[m][0]}, {len(picked)} sampled")
        todo += picked
    if not args.no_listed:
        todo += listed_mutants(modules)

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tidewise-mutants-") as tmp:
        workers = [Worker(Path(tmp), i) for i in range(max(1, args.jobs))]
        broken = set()
        for m in modules:  # baseline: the unmutated tree must pass the mapped tests
            status, dt = run_tests(workers[0].tree, MODULES[m][1], args.timeout, args.postgres)
            print(f"baseline {m}: {status} in {dt:.1f} s")
            if status != "pass":
                broken.add(m)
        runnable = [x for x in todo if x.module not in broken and x.source]
        for x in todo:
            if not x.source:
                print(f"n/a       {x.module}: {x.change} (text not found in the source)")
                results.append({**_row(x), "outcome": "n/a"})
        free = list(workers)

        def job(x: Mutant) -> tuple[Mutant, str, float]:
            w = free.pop()
            try:
                return (x, *w.run(x, args.timeout, args.postgres))
            finally:
                free.append(w)

        with cf.ThreadPoolExecutor(len(workers)) as pool:
            for x, status, dt in pool.map(job, runnable):
                killed = status in ("fail", "timeout")
                label = "KILLED" if killed else "SURVIVED" if status == "pass" else "ERROR"
                why = x.equivalent()
                if label == "SURVIVED" and why:
                    label = "EQUIVALENT"
                extra = " (timeout)" if status == "timeout" else ""
                print(
                    f"{label:10} {dt:6.1f} s  {x.module}:{x.line} {x.kind}: {x.change}{extra}",
                    flush=True,
                )
                row = {**_row(x), "outcome": label.lower(), "seconds": round(dt, 1)}
                if label == "EQUIVALENT":
                    row["why"] = why
                results.append(row)

    print()
    print(
        f"{'module':12} {'sampled':>8} {'equiv':>6} {'killed':>7} {'rate':>6}   "
        f"{'listed':>6} {'killed':>7}"
    )
    tot = [0, 0, 0, 0, 0]  # sampled, equivalent, killed, listed, listed killed
    for m in modules:
        if m in broken:
            print(f"{m:12} baseline failed: not measured")
            continue
        s = [r for r in results if r["module"] == m and not r["listed"] and r["outcome"] != "n/a"]
        li = [r for r in results if r["module"] == m and r["listed"] and r["outcome"] != "n/a"]
        eq = sum(r["outcome"] == "equivalent" for r in s)
        ks = sum(r["outcome"] == "killed" for r in s)
        kl = sum(r["outcome"] == "killed" for r in li)
        rate = f"{ks / (len(s) - eq):.0%}" if len(s) > eq else "-"
        print(f"{m:12} {len(s):8d} {eq:6d} {ks:7d} {rate:>6}   {len(li):6d} {kl:7d}")
        tot = [tot[0] + len(s), tot[1] + eq, tot[2] + ks, tot[3] + len(li), tot[4] + kl]
    print(
        f"{'all':12} {tot[0]:8d} {tot[1]:6d} {tot[2]:7d} "
        f"{tot[2] / max(tot[0] - tot[1], 1):6.0%}   {tot[3]:6d} {tot[4]:7d}"
    )
    both, killed = tot[0] + tot[3], tot[2] + tot[4]
    print(
        f"sampled + listed: {killed}/{both - tot[1]} killed "
        f"({killed / max(both - tot[1], 1):.1%}) with {tot[1]} equivalent set apart; "
        f"{killed}/{both} ({killed / max(both, 1):.1%}) counting them as survivors; "
        f"seed {args.seed}, {args.per_module} per module, {args.jobs} job(s), "
        f"{time.monotonic() - t_start:.0f} s"
    )
    for label in ("equivalent", "survived"):
        rows = [r for r in results if r["outcome"] == label]
        if rows:
            print("equivalent (not counted):" if label == "equivalent" else "survivors:")
            for r in rows:
                why = f"  -- {r['why']}" if label == "equivalent" else ""
                print(f"  {r['module']}:{r['line']} {r['kind']}: {r['change']}{why}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


def _row(x: Mutant) -> dict:
    return {
        "module": x.module,
        "line": x.line,
        "kind": x.kind,
        "change": x.change,
        "listed": x.listed,
        "text": x.text,
    }


if __name__ == "__main__":
    main()

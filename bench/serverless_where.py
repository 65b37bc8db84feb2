"""Where ``bayes`` and a fixed keep-alive differ on a serverless trace, function by function.

Replays ``bayes`` at one price ratio and a keep-alive of ``K`` minutes, then splits each
one's cold starts into first-ever invocations (nobody can avoid them), activations after an
idle step, and scale-ups of a function busy the step before; lists the functions where
``bayes`` has the most cold starts more than the keep-alive, and the ages (idle minutes)
of the activations one catches and the other misses.

Example::

    .venv/bin/python bench/serverless_where.py \\
        ../shared/data/azure-functions-2019-invitro-samples/1340 --kappa 5000 --keepalive 60
    # the same with the forecaster as it was before calibration:
    .venv/bin/python bench/serverless_where.py ... --forecaster-param hazard_calibration=false
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import _value  # noqa: E402

AGE_BINS = (1, 2, 3, 5, 10, 20, 30, 45, 60, 120, 240, 1441)


def bayes_forecaster(seed: int, params: dict):
    """The serverless default forecaster (``intermittent-count``) with ``params`` changed."""
    from models.online import online_predictor
    from policies.forecasters import PredictorForecaster
    from policies.pipeline import DEFAULT_FORECASTERS

    name, base = DEFAULT_FORECASTERS["serverless"]
    return PredictorForecaster(online_predictor(name, seed=seed, **{**base, **params}),
                               seed, name)


def warm_matrix(scen, data, policy, forecaster, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Replay ``policy`` and return its totals and its warm instances ``(T, F)``."""
    from policies.pipeline import step as step_policy
    from policies.scenarios import serverless as contract

    c = data.concurrency
    n_t, n_f = c.shape
    spec = contract.Spec(entities=data.entities, duration_ms=data.duration_ms,
                         memory_mb=data.memory_mb, step_s=data.step_s)
    warm = np.zeros((n_t, n_f), dtype=np.int64)
    zeros = np.zeros(n_f, dtype=np.int64)
    memory = None
    for t in range(n_t):
        obs = contract.Observation(
            t=t, history=c[:t], invocations_last=data.invocations[t - 1] if t else zeros,
            warm_last=warm[t - 1] if t else zeros, start_s=float(data.ts[t]),
            current=contract.Desired(warm[t - 1]) if t else None)
        _, desired, memory = step_policy(policy, forecaster, spec, obs, memory,
                                         float(data.ts[t]))
        warm[t] = desired.warm if desired is not None else 0
    cold = np.maximum(c - warm, 0)
    idle = (np.maximum(warm - c, 0) * data.memory_mb[None, :] * data.step_s / 1024.0).sum()
    return {"cold_starts": int(cold.sum()), "idle_gb_s": float(idle)}, warm


def split(c: np.ndarray, warm: np.ndarray) -> dict:
    """Cold starts by kind: first-ever, activation after idle, scale-up while busy."""
    cold = np.maximum(c - warm, 0)
    busy = c > 0
    before = np.vstack([np.zeros((1, c.shape[1]), bool), np.cumsum(busy, axis=0)[:-1] > 0])
    prev = np.vstack([np.zeros((1, c.shape[1]), bool), busy[:-1]])
    first = busy & ~before
    return {"first_ever": int(cold[first].sum()),
            "activation": int(cold[busy & ~prev & before].sum()),
            "scale_up": int(cold[busy & prev].sum())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--kappa", type=float, default=5000.0, help="bayes cold_start_gb_s")
    ap.add_argument("--keepalive", type=float, default=60.0, help="keep-alive minutes")
    ap.add_argument("--forecaster-param", action="append", default=[],
                    help="intermittent-count parameter k=v")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import traces
    from policies import registry
    from traces.replay.base import get_scenario

    scen = get_scenario("serverless")()
    data = scen.prepare(traces.load(a.trace))
    c, mem = data.concurrency, data.memory_mb * data.step_s / 1024.0
    fparams = {k: _value(v) for k, v in (kv.split("=", 1) for kv in a.forecaster_param)}
    bayes = registry.get("bayes", "serverless")(cold_start_gb_s=a.kappa)
    tb, wb = warm_matrix(scen, data, bayes, bayes_forecaster(a.seed, fparams), a.seed)
    ka = registry.get("keepalive-10m", "serverless")(keepalive_min=a.keepalive)
    tk, wk = warm_matrix(scen, data, ka, None, a.seed)
    print(f"bayes cold_start_gb_s={a.kappa:g} {fparams or ''}: {tb['cold_starts']:,} cold "
          f"starts, {tb['idle_gb_s']:,.0f} GB·s idle; keep-alive {a.keepalive:g} min: "
          f"{tk['cold_starts']:,}, {tk['idle_gb_s']:,.0f} GB·s")
    for name, w in (("bayes", wb), (f"keep-alive {a.keepalive:g}", wk)):
        print(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in split(c, w).items()))
    multi = c.max(axis=0) > 1
    cb, ck = np.maximum(c - wb, 0).sum(axis=0), np.maximum(c - wk, 0).sum(axis=0)
    ib = (np.maximum(wb - c, 0) * mem).sum(axis=0)
    ik = (np.maximum(wk - c, 0) * mem).sum(axis=0)
    for label, sel in (("one instance at most", ~multi), ("more than one", multi)):
        print(f"  functions with {label} ({sel.sum()}): cold starts bayes {cb[sel].sum():,} "
              f"/ keep-alive {ck[sel].sum():,}; idle GB·s {ib[sel].sum():,.0f} / "
              f"{ik[sel].sum():,.0f}")
    # activations after an idle gap: which side catches them, by idle age
    rows = []
    for f in range(c.shape[1]):
        steps = np.flatnonzero(c[:, f] > 0)
        for prev, t in zip(steps[:-1], steps[1:], strict=True):
            if t - prev > 1:
                rows.append((t - prev - 1, wb[t, f] >= 1, wk[t, f] >= 1))
    r = np.array(rows, dtype=np.int64).reshape(-1, 3)
    lost = r[(r[:, 1] == 0) & (r[:, 2] == 1), 0]
    won = r[(r[:, 1] == 1) & (r[:, 2] == 0), 0]
    print(f"  activations after >= 1 idle minute: {len(r):,}; bayes cold where the keep-alive "
          f"is warm: {lost.size:,}; bayes warm where the keep-alive is cold: {won.size:,}")
    print("  | idle minutes | " + " | ".join(f"{lo}-{hi - 1}" for lo, hi in
                                             zip(AGE_BINS[:-1], AGE_BINS[1:], strict=True))
          + " |")
    for name, x in (("bayes cold, keep-alive warm", lost), ("bayes warm, keep-alive cold", won)):
        print(f"  | {name} | " + " | ".join(str(v) for v in np.histogram(x, AGE_BINS)[0])
              + " |")
    order = np.argsort(ck - cb)[: a.top]
    print("  functions where bayes has the most cold starts more (index: active minutes, "
          "peak concurrency, MB, median idle gap, cold starts bayes/keep-alive, idle GB·s "
          "bayes/keep-alive):")
    for f in order:
        if cb[f] <= ck[f]:
            break
        steps = np.flatnonzero(c[:, f] > 0)
        gaps = np.diff(steps) - 1
        gaps = gaps[gaps > 0]
        med = f"{np.median(gaps):.0f}" if gaps.size else "-"
        print(f"    {f}: {steps.size}, {c[:, f].max()}, {data.memory_mb[f]:.0f}, {med}, "
              f"{cb[f]}/{ck[f]}, {ib[f]:,.0f}/{ik[f]:,.0f}")


if __name__ == "__main__":
    main()

"""Forecasting peers beside ``harmony`` and the baselines, on the HARMONY protocol (Fisher).

Usage (needs the optional extra: ``pip install -e ".[peers]"``):
    OMP_NUM_THREADS=1 nice -n 5 python bench/peers.py [--containers 1,2,...] [--models ...]
        [--context 72] [--ours DIR/report.json] [--per-container] [--cache DIR]

Every model sees the same thing as in ``tidewise evaluate``: ``models.evaluate.split_dataset``
(chronological 70/10/20 split, MinMax fitted on the training rows), 1 step ahead from every
test position, metrics from ``models.metrics.evaluate_samples`` on the scaled values with
S = 100 samples per forecast. Peers:

* ``autoarima``, ``autoets`` (statsforecast, per indicator, ``season_length=1``): fitted once on
  the training rows, then applied with ``forward`` to each test step's history (the whole
  scaled series up to that step, with the fitted parameters; one ``forward(fitted=True)`` call
  gives the same one-step means as one call per step, checked on container 1's load).
  The predictive is Gaussian, with the width of the fitted model's own 90% interval.
* ``lgbm-diff``: LightGBM quantile regression per indicator and level on lag *differences*
  (the last 24 first differences of the indicator, the last difference of every indicator,
  the last value and the window mean less it), predicting the next difference.
* ``patchtst``, ``itransformer`` (multivariate, HARMONY builds on it), ``deepar``
  (neuralforecast; PatchTST with ``MQLoss``, iTransformer with a Normal and DeepAR with a
  Student-t ``DistributionLoss``), trained on the training rows with early stopping on the
  validation rows and a step cap (:data:`MAX_STEPS`), then forecast every test window
  (``cross_validation``, ``refit=False``); their quantile outputs are used.

Quantile outputs (levels 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95) become S samples the way
``quantile-gbm`` makes them: the predicted quantile function (sorted, linear between levels,
extended linearly past the outer ones) read at the levels ``(s + 0.5) / S``; the Gaussian ones
are read the same way from the normal quantile function. So every CRPS here is the project's
sample CRPS of 100 quantile-spaced samples.

``harmony`` and the baselines: read from a ``tidewise evaluate`` report (``--ours``) when given,
else the cheap baselines are run here and ``harmony``'s figures are the Fisher table of
docs/models.md (MSE and CRPS per container; MAE and coverage only as the average of all seven).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data/fisher-containers-2018")
PEERS = ("autoarima", "autoets", "lgbm-diff", "patchtst", "itransformer", "deepar")
CHEAP = ("last", "window-mean", "seasonal-naive")
LEVELS = (50, 80, 90)  # central intervals -> quantiles 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95
QS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
Z95 = 1.6448536269514722  # standard normal 0.95 quantile
NUM_SAMPLES = 100
# neuralforecast training steps (early stopping on the validation rows may end sooner)
MAX_STEPS = {"patchtst": 300, "itransformer": 1000, "deepar": 300}

# docs/models.md "Measured", Fisher 1-7, context 72 (harmony: 3 members, seed 0).
README_HARMONY = {
    "per_container": {  # MSE, CRPS
        1: (0.0494, 0.0698),
        2: (0.0407, 0.0545),
        3: (0.0505, 0.0805),
        4: (0.0615, 0.0912),
        5: (0.0413, 0.0648),
        6: (0.0392, 0.0607),
        7: (0.0598, 0.0859),
    },
    "all7": {"mse": 0.0489, "mae": 0.1036, "crps": 0.0725, "coverage_90": 0.919, "seconds": 214},
}


# --------------------------------------------------------------------------- protocol glue


def _levels(s: int) -> np.ndarray:
    return (np.arange(s) + 0.5) / s


def quantile_samples(q: np.ndarray) -> np.ndarray:
    """Quantiles ``(N, Q, M)`` at :data:`QS` -> quantile-spaced samples ``(N, S, 1, M)``."""
    from models.baselines import _interp_quantiles

    q = np.sort(q, axis=1)  # no crossing
    n, _, m = q.shape
    out = np.empty((n, NUM_SAMPLES, 1, m))
    for j in range(m):
        out[:, :, 0, j] = _interp_quantiles(q[:, :, j], QS, _levels(NUM_SAMPLES))
    return out


def gaussian_samples(mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Means ``(N, M)`` and scales ``(M,)`` -> quantile-spaced samples ``(N, S, 1, M)``."""
    from scipy.stats import norm

    z = norm.ppf(_levels(NUM_SAMPLES))  # (S,)
    return (mean[:, None, :] + z[None, :, None] * sigma[None, None, :])[:, :, None, :]


class Protocol:
    """One container after the protocol: the scaled series, its split points, test targets."""

    def __init__(self, container: int, context: int, data: Path):
        from models.data import make_windows
        from models.evaluate import load_dataset, split_dataset

        ds = load_dataset(data / f"container{container}.csv")
        self.name = ds.name
        self.split = split_dataset(ds, context, 1)
        tr, va, te = self.split.train[0], self.split.validation[0], self.split.test[0]
        if len(self.split.train) != 1:
            raise SystemExit(f"{ds.name}: one entity per file expected (Fisher layout)")
        self.z = np.concatenate([tr.values, va.values[context:], te.values[context:]])  # (T, M)
        self.n_tr, self.n_va = len(tr), len(va) - context
        self.n_te = len(te) - context
        self.context = context
        self.indicators = self.split.indicators
        self.x, self.y, self.t = make_windows(self.split.test, context, 1)  # y (N, 1, M)
        assert self.y.shape[0] == self.n_te
        assert np.allclose(self.y[:, 0], self.z[self.n_tr + self.n_va :])

    def score(self, samples: np.ndarray) -> dict:
        from models.metrics import evaluate_samples

        return evaluate_samples(samples, self.y, self.indicators)["average"]


# --------------------------------------------------------------------------- peers


def run_statsforecast(p: Protocol, kind: str, seed: int) -> tuple[np.ndarray, dict]:
    from statsforecast.models import AutoARIMA, AutoETS

    start = p.n_tr + p.n_va
    mean = np.empty((p.n_te, p.z.shape[1]))
    sigma = np.empty(p.z.shape[1])
    fallbacks = []
    for j, ind in enumerate(p.indicators):
        train = p.z[: p.n_tr, j]
        try:
            if np.ptp(train) == 0:
                raise ValueError("constant training rows")
            mdl = AutoARIMA(season_length=1) if kind == "autoarima" else AutoETS(season_length=1)
            mdl.fit(train)
            iv = mdl.predict(h=1, level=[90])
            sigma[j] = float(np.asarray(iv["hi-90"])[0] - np.asarray(iv["lo-90"])[0]) / (2 * Z95)
            # fitted[t] = forward(y[:t], h=1)["mean"]: the one-step forecast from each history
            mean[:, j] = mdl.forward(y=p.z[:, j], h=1, fitted=True)["fitted"][start:]
            if not (np.isfinite(mean[:, j]).all() and np.isfinite(sigma[j])):
                raise ValueError("non-finite forecast")
        except Exception as exc:  # per-series fallback: last value, training step spread
            fallbacks.append(f"{ind}: {exc}")
            mean[:, j] = p.z[start - 1 : -1, j]
            sigma[j] = max(float(np.std(np.diff(train))), 1e-6)
    return gaussian_samples(mean, sigma), {"fallbacks": fallbacks}


def lag_diff_features(x: np.ndarray, j: int, lags: int) -> np.ndarray:
    """Features of windows ``x (N, L, M)`` for indicator ``j``: lag differences and level."""
    d = np.diff(x[:, -(lags + 1) :, :], axis=1)  # (N, lags, M)
    last = x[:, -1, j]
    return np.concatenate(
        [d[:, :, j], d[:, -1, :], last[:, None], (x[:, :, j].mean(1) - last)[:, None]], axis=1
    )


def run_lgbm(p: Protocol, seed: int, lags: int = 24) -> tuple[np.ndarray, dict]:
    import lightgbm as lgb

    from models.data import make_windows

    xtr, ytr, _ = make_windows(p.split.train, p.context, 1)
    xva, yva, _ = make_windows(p.split.validation, p.context, 1)
    q = np.empty((p.n_te, QS.size, len(p.indicators)))
    iters = []
    for j in range(len(p.indicators)):
        ftr, fva, fte = (lag_diff_features(a, j, lags) for a in (xtr, xva, p.x))
        ttr, tva = ytr[:, 0, j] - xtr[:, -1, j], yva[:, 0, j] - xva[:, -1, j]
        for k, level in enumerate(QS):
            mdl = lgb.LGBMRegressor(
                objective="quantile",
                alpha=float(level),
                n_estimators=300,
                learning_rate=0.05,
                num_leaves=15,
                min_child_samples=20,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.8,
                random_state=seed,
                n_jobs=1,
                verbose=-1,
            )
            mdl.fit(
                ftr, ttr, eval_set=[(fva, tva)], callbacks=[lgb.early_stopping(30, verbose=False)]
            )
            iters.append(int(mdl.best_iteration_ or 300))
            q[:, k, j] = p.x[:, -1, j] + mdl.predict(fte)
    return quantile_samples(q), {"mean_trees": float(np.mean(iters))}


# iTransformer with MQLoss returned unordered quantile columns in neuralforecast 3.3
# (container 1: 90% coverage 0.15), so it gets a Normal DistributionLoss; with its own
# instance normalisation (use_norm) the MQLoss outputs were not even rescaled (MSE 0.34), so
# the library's per-window scaler is used instead.
ITRANSFORMER_NORM = {"use_norm": False, "scaler_type": "standard"}


def _nf_model(name: str, p: Protocol, seed: int):
    from neuralforecast.losses.pytorch import MAE, DistributionLoss, MQLoss
    from neuralforecast.models import DeepAR, PatchTST, iTransformer

    common = dict(
        h=1,
        input_size=p.context,
        max_steps=MAX_STEPS[name],
        val_check_steps=50,
        early_stop_patience_steps=3,
        learning_rate=1e-3,
        batch_size=32,
        random_seed=seed,
        scaler_type="identity",  # the data are MinMax-scaled already (the protocol's scale)
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
    )
    if name == "patchtst":
        return PatchTST(
            hidden_size=64,
            n_heads=4,
            encoder_layers=2,
            linear_hidden_size=128,
            patch_len=12,
            stride=6,
            windows_batch_size=256,
            loss=MQLoss(level=list(LEVELS)),
            **common,
        )
    if name == "itransformer":
        return iTransformer(
            n_series=len(p.indicators),
            hidden_size=128,
            n_heads=4,
            e_layers=2,
            d_ff=256,
            loss=DistributionLoss("Normal", level=list(LEVELS)),
            valid_loss=MAE(),
            **{**common, **ITRANSFORMER_NORM},
        )
    return DeepAR(
        lstm_hidden_size=64,
        lstm_n_layers=2,
        trajectory_samples=NUM_SAMPLES,
        windows_batch_size=256,
        loss=DistributionLoss("StudentT", level=list(LEVELS)),
        valid_loss=MAE(),
        **{**common, "scaler_type": "standard"},  # identity: CRPS 0.143 vs 0.099 on container 1
    )


def _quantile_column(col: str, alias: str) -> float | None:
    rest = col[len(alias) + 1 :] if col.startswith(alias + "-") else None
    if rest == "median":
        return 0.5
    if rest and rest.startswith(("lo-", "hi-")):
        lv = float(rest[3:]) / 100
        return 0.5 - lv / 2 if rest.startswith("lo-") else 0.5 + lv / 2
    return None


def run_neuralforecast(p: Protocol, name: str, seed: int) -> tuple[np.ndarray, dict]:
    import pandas as pd
    from neuralforecast import NeuralForecast

    for lg in ("pytorch_lightning", "lightning", "lightning.pytorch", "neuralforecast"):
        logging.getLogger(lg).setLevel(logging.ERROR)
    m = len(p.indicators)
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray(p.indicators), len(p.z)),
            "ds": np.tile(np.arange(len(p.z)), m),
            "y": p.z.T.reshape(-1),
        }
    )
    model = _nf_model(name, p, seed)
    nf = NeuralForecast(models=[model], freq=1)
    # train = the first n_tr rows, validation the next n_va (early stopping), then one
    # 1-step forecast from each of the n_te test positions with the trained weights
    cv = nf.cross_validation(df=df, n_windows=p.n_te, step_size=1, val_size=p.n_va, refit=False)
    alias = str(model)
    cols = {c: _quantile_column(c, alias) for c in cv.columns}
    cols = {c: lv for c, lv in cols.items() if lv is not None}
    got = np.array(sorted(cols.values()))
    if not np.allclose(got, QS):
        raise SystemExit(f"{name}: expected quantiles {QS.tolist()}, got {got.tolist()}")
    by_lv = {lv: c for c, lv in cols.items()}
    cv = cv.sort_values(["unique_id", "ds"])
    q = np.empty((p.n_te, QS.size, m))
    for j, ind in enumerate(p.indicators):
        part = cv[cv["unique_id"] == ind]
        ds = part["ds"].to_numpy()
        if not np.array_equal(ds, np.arange(p.n_tr + p.n_va, len(p.z))):
            raise SystemExit(f"{name}: forecast rows do not match the test rows for {ind}")
        for k, lv in enumerate(QS):
            key = min(by_lv, key=lambda v, lv=lv: abs(v - lv))
            q[:, k, j] = part[by_lv[key]].to_numpy()
    return quantile_samples(q), {}


def run_ours(p: Protocol, name: str, seed: int) -> tuple[np.ndarray, dict]:
    """A registered model (a baseline) under the same protocol, as ``tidewise evaluate``."""
    from models.base import get_estimator

    est = get_estimator(
        name, context_length=p.context, prediction_length=1, num_samples=NUM_SAMPLES, seed=seed
    )
    pred = est.fit(p.split.train, p.split.validation)
    outs = pred.predict_windows(p.x, p.t)
    return np.stack([o.samples for o in outs]), {}


def run_model(p: Protocol, name: str, seed: int) -> dict:
    t0 = time.perf_counter()
    if name in ("autoarima", "autoets"):
        samples, info = run_statsforecast(p, name, seed)
    elif name == "lgbm-diff":
        samples, info = run_lgbm(p, seed)
    elif name in ("patchtst", "itransformer", "deepar"):
        samples, info = run_neuralforecast(p, name, seed)
    else:
        samples, info = run_ours(p, name, seed)
    sec = time.perf_counter() - t0
    res = {k: p.score(samples)[k] for k in ("mse", "mae", "crps", "coverage_90")}
    return {**res, "seconds": round(sec, 1), "info": info, "source": "run here"}


# --------------------------------------------------------------------------- report


def from_report(path: Path, name: str, containers: list[int]) -> dict[int, dict] | None:
    rep = json.loads(Path(path).read_text())
    per = rep.get("models", {}).get(name, {}).get("per_dataset", {})
    out = {}
    for c in containers:
        d = per.get(f"container{c}")
        if d is None:
            return None
        out[c] = {k: d["average"][k] for k in ("mse", "mae", "crps", "coverage_90")}
        out[c].update(seconds=d["fit_seconds"], source=str(path))
    return out


def from_readme(containers: list[int]) -> dict[int, dict]:
    out = {}
    for c in containers:
        mse, crps = README_HARMONY["per_container"][c]
        out[c] = {"mse": mse, "mae": None, "crps": crps, "coverage_90": None, "seconds": None}
        out[c]["source"] = "README Fisher table"
    return out


def average(rows: dict[int, dict], containers: list[int]) -> dict:
    keys = ("mse", "mae", "crps", "coverage_90", "seconds")
    avg = {}
    for k in keys:
        v = [rows[c][k] for c in containers]
        avg[k] = None if any(x is None for x in v) else float(np.mean(v))
    return avg


def fmt(v, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def print_table(results: dict[str, dict[int, dict]], containers: list[int], per: bool) -> None:
    print(f"\nFisher containers {','.join(map(str, containers))}, HARMONY protocol, 1 step ahead")
    print("\n| model | MSE | MAE | CRPS | coverage 90% | s / container |")
    print("|---|---|---|---|---|---|")
    avgs = {}
    for name, rows in results.items():
        a = avgs[name] = average(rows, containers)
        if name == "harmony" and rows[containers[0]]["source"].startswith("README"):
            if sorted(containers) == list(range(1, 8)):
                a = avgs[name] = dict(README_HARMONY["all7"])
        print(
            f"| `{name}` | {fmt(a['mse'])} | {fmt(a['mae'])} | {fmt(a['crps'])} | "
            f"{fmt(a['coverage_90'], 3)} | {fmt(a['seconds'], 1)} |"
        )
    if per:
        print("\n| container | " + " | ".join(f"`{n}` MSE / CRPS" for n in results) + " |")
        print("|---|" + "---|" * len(results))
        for c in containers:
            cells = [f"{fmt(r[c]['mse'])} / {fmt(r[c]['crps'])}" for r in results.values()]
            print(f"| container{c} | " + " | ".join(cells) + " |")
    if "harmony" in avgs:
        h = avgs["harmony"]["crps"]
        print("\nharmony's CRPS against each peer (issue target: >= 10% lower):")
        for name in results:
            if name in PEERS:
                gap = 1 - h / avgs[name]["crps"]
                ok = "met" if gap >= 0.10 else "not met"
                print(f"- {name}: {avgs[name]['crps']:.4f} vs {h:.4f}, {gap:+.1%} ({ok})")
    for name, rows in results.items():
        src = {r["source"] for r in rows.values()}
        print(f"({name}: {', '.join(sorted(src))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", default="1,2,3,4,5,6,7")
    ap.add_argument("--models", default=",".join(("harmony", *CHEAP, *PEERS)))
    ap.add_argument("--context", type=int, default=72)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ours", type=Path, help="a `tidewise evaluate` report.json on these files")
    ap.add_argument("--per-container", action="store_true")
    ap.add_argument("--cache", type=Path, help="keep each (container, model) result here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    containers = [int(c) for c in args.containers.split(",")]
    names = args.models.split(",")
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[int, dict]] = {}
    for name in names:  # harmony and the baselines from a report, when one is given
        rows = from_report(args.ours, name, containers) if args.ours else None
        if rows is None and name == "harmony":
            if args.context != 72:
                raise SystemExit("harmony's README figures are for context 72; pass --ours")
            rows = from_readme(containers)
        if rows is not None:
            results[name] = rows
    for c in containers:
        p = None
        for name in names:
            if name in results and c in results[name]:
                continue
            hit = (
                args.cache / f"container{c}__{name}__ctx{args.context}.json" if args.cache else None
            )
            if hit and hit.exists():
                results.setdefault(name, {})[c] = json.loads(hit.read_text())
                continue
            p = p or Protocol(c, args.context, args.data)
            res = run_model(p, name, args.seed)
            print(
                f"container{c} {name:<15} mse {res['mse']:.4f} crps {res['crps']:.4f} "
                f"cov90 {res['coverage_90']:.3f} {res['seconds']:.1f} s {res['info']}",
                flush=True,
            )
            results.setdefault(name, {})[c] = res
            if hit:
                hit.write_text(json.dumps(res, indent=1))
    print_table(results, containers, args.per_container)


if __name__ == "__main__":
    main()

"""Evidence picks the forecaster, per scaling target.

Which forecaster serves a policy best differs by trace (the per-trace tables in docs/decisions.md):
one global default is not enough. For a scaling target with ``forecaster: auto`` (the
default) the ``choose`` job (every ``TIDEWISE_CHOOSE_INTERVAL_S``) backtests the candidates
of ``TIDEWISE_FORECASTER_CANDIDATES`` on the target's own stored history — the same replay
``tidewise backtest`` runs (:mod:`service.backtest`), through the target's policy and
parameters:

1. the last ``TIDEWISE_CHOOSE_HISTORY_S`` of the target's demand (within the raw retention,
   so the buckets are the decisions' own) is split in halves;
2. a candidate that must be trained (``quantile-gbm``, ``harmony``, any registered model) is
   trained on the first half; every candidate, ``online`` (the scenario's online forecaster,
   what a target runs before any choice) included, feeds the policy over the second half;
3. :func:`pick`: of the candidates whose realised violation rate is within the target's SLA
   (``target_violation``), the one with the fewest replica-seconds; with none within it, the
   one with the lowest violation rate;
4. the pick is trained again on the whole history and registered as model
   ``target:<name>`` (artifact in ``TIDEWISE_MODEL_DIR``; ``online`` is registered without
   one), with every candidate's figures in its ``metrics``.

Decisions of an ``auto`` target then read the registered pick (``details.forecaster`` says
which, ``details.forecaster_chosen`` when); before the first choice, or with too little
history, they use the online forecaster — the default the tables of docs/decisions.md measure.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Any

from common.errors import NoDataError
from service.promsource import SourceError
from service.store import model_registry as model_store
from service.store import targets as target_store
from service.store.db import Store

log = logging.getLogger("tidewise.choosing")

#: The candidate that needs no training: the scenario's online forecaster.
ONLINE = "online"
#: Buckets of history a choice needs at least (two halves of a useful length each).
MIN_BUCKETS = 480


def choice_name(target: str) -> str:
    """Registry name of a target's chosen forecaster."""
    return f"target:{target}"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate's backtest on the scored half."""

    name: str
    violation_rate: float = math.nan
    replica_seconds: float = math.nan
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the trial as stored with the choice (JSON: no NaN)."""
        out: dict[str, Any] = {"name": self.name}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(violation_rate=self.violation_rate, replica_seconds=self.replica_seconds)
        return out


def pick(trials: list[Trial], target_violation: float) -> Trial | None:
    """Choose among backtested candidates (see the module doc, step 3); None if all failed."""
    ok = [t for t in trials if t.error is None and math.isfinite(t.violation_rate)]
    within = [t for t in ok if t.violation_rate <= target_violation]
    if within:
        return min(within, key=lambda t: (t.replica_seconds, t.violation_rate))
    return min(ok, key=lambda t: (t.violation_rate, t.replica_seconds)) if ok else None


def _target_violation(target: Any) -> float:  # noqa: ANN401
    return float((target.params or {}).get("target_violation",
                                           target.spec.get("target_violation", 0.01)))


def backtest_candidates(store: Store, target: Any, now: int,  # noqa: ANN401
                        candidates: list[str]) -> tuple[list[Trial], Any, dict[str, Any]]:
    """Run every candidate through the target's policy on its own history (steps 1-2).

    Returns:
        the trials, the history frame and the scenario options.

    Raises:
        NoDataError: fewer than :data:`MIN_BUCKETS` buckets of history.

    """
    from service.backtest import target_frame
    from traces.replay.core import run_replay, split_frame

    s = store.settings
    step = int(s.forecast_step_s)
    span = int(min(s.choose_history_s, s.raw_retention_s))
    end = now - now % step
    frame, options = target_frame(store, target, end - span, end)
    if len(frame) < MIN_BUCKETS:
        raise NoDataError(f"{len(frame)} buckets of history; a choice needs {MIN_BUCKETS}")
    for key, value in (target.params or {}).items():
        options[f"{target.policy}.{key}"] = value
    _, scored, _ = split_frame(frame, 0.5)
    trials = []
    for name in candidates:
        try:
            if name == ONLINE:
                rep = run_replay(scored, "vm", [target.policy], options=options, plots=False)
            else:
                rep = run_replay(frame, "vm", [target.policy], options=options, plots=False,
                                 model=name, train_until=0.5)
            tot = rep["policies"][target.policy][0]["totals"]
            trials.append(Trial(name, float(tot["violation_rate"]),
                                float(tot["replica_seconds"])))
        except Exception as exc:  # noqa: BLE001 - a failing candidate is not chosen
            log.warning("candidate %r for target %r failed: %s", name, target.name, exc)
            trials.append(Trial(name, error=f"{type(exc).__name__}: {exc}"[:500]))
    return trials, frame, options


def _train_pick(target: Any, name: str, frame: Any, options: dict[str, Any]) -> Any:  # noqa: ANN401
    """Train the picked model on the whole history exactly as the replay trains it (step 4).

    :func:`traces.replay.core.model_forecaster` with the target's scenario options and policy
    parameters: the same context, validation split and horizon the backtest used.
    """
    from traces.replay.core import make_scenario, model_forecaster, resolve_policies

    scenario_options = {k: v for k, v in options.items() if "." not in k}
    overrides = {target.policy: {k.partition(".")[2]: v for k, v in options.items()
                                 if k.startswith(f"{target.policy}.")}}
    sc = make_scenario("vm", scenario_options)
    data = sc.prepare(frame)
    predictor, _ = model_forecaster(name, sc, frame, data, resolve_policies("vm", [target.policy]),
                                    overrides, 0, {})
    return predictor


def choose_target(store: Store, target: Any, now: int,  # noqa: ANN401
                  candidates: list[str] | None = None) -> dict[str, Any]:
    """Backtest the candidates for one scaling target and register the pick.

    Returns:
        a report: ``target``, ``outcome`` (``chosen`` or ``skipped``), ``chosen``, ``trials``.

    """
    import shutil

    from service.artifacts import artifact_folder

    s = store.settings
    cands = candidates or [c.strip() for c in s.forecaster_candidates.split(",") if c.strip()]
    report: dict[str, Any] = {"target": target.name, "candidates": cands}
    try:
        trials, frame, options = backtest_candidates(store, target, now, cands)
    except (NoDataError, SourceError) as exc:  # SourceError: the target's source failed
        report.update(outcome="skipped", reason=str(exc))
        return report
    best = pick(trials, _target_violation(target))
    report["trials"] = [t.as_dict() for t in trials]
    if best is None:
        report.update(outcome="skipped", reason="every candidate failed")
        return report
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{best.name}"
    name = choice_name(target.name)
    folder = None
    try:
        if best.name != ONLINE:
            predictor = _train_pick(target, best.name, frame, options)
            folder = artifact_folder(s.model_dir, name, version)
            predictor.save(folder)
        with store.write_sessions() as session, session.begin():
            model_store.register_model(
                session, name, version, str(folder.resolve()) if folder else "",
                trained_on=f"{target.name!r}: {len(frame)} buckets before {now}",
                metrics={"chosen": best.name, "trials": report["trials"],
                         "target_violation": _target_violation(target)})
    except Exception as exc:  # noqa: BLE001 - the previous choice stays
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        report.update(outcome="skipped", reason=f"{type(exc).__name__}: {exc}")
        return report
    report.update(outcome="chosen", chosen=best.name, version=version)
    return report


def choose_all(store: Store, now: int) -> list[dict[str, Any]]:
    """Choose for every scaling target with ``forecaster: auto`` (the ``choose`` job)."""
    with store.sessions() as session:
        targets = [t for t in target_store.list_targets(session)
                   if t.kind == "vm" and t.spec.get("forecaster", "auto") == "auto"]
    out = []
    for target in targets:
        try:
            out.append(choose_target(store, target, now))
        except Exception as exc:  # noqa: BLE001 - one target must not stop the others
            log.exception("choosing the forecaster of %r failed", target.name)
            out.append({"target": target.name, "outcome": "skipped",
                        "reason": f"{type(exc).__name__}: {exc}"})
    return out


#: Loaded chosen models by artifact path (bounded: see :data:`MAX_LOADED`).
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()
MAX_LOADED = 64


def chosen_forecaster(store: Store, target: Any) -> tuple[Any, dict[str, Any]]:  # noqa: ANN401
    """Return the forecaster an ``auto`` target's decision reads, and what to record with it.

    Returns:
        ``(forecaster or None, details)``: None means the scenario's online forecaster (no
        choice yet, ``online`` chosen, or an artifact that cannot be loaded).

    """
    from models.base import load_predictor
    from policies.forecasters import PredictorForecaster

    with store.sessions() as session:
        rec = model_store.current_model(session, choice_name(target.name))
    if rec is None:  # no choice yet: exactly what the replay runs by default (nothing to add)
        return None, {}
    chosen = str((rec.metrics or {}).get("chosen", ONLINE))
    details = {"forecaster": chosen, "forecaster_chosen": rec.version}
    if chosen == ONLINE or not rec.artifact_path:
        return None, details
    try:
        with _LOCK:
            pred = _LOADED.get(rec.artifact_path)
            if pred is None:
                pred = load_predictor(rec.artifact_path)
                if len(_LOADED) >= MAX_LOADED:  # bounded: the oldest loaded goes first
                    _LOADED.pop(next(iter(_LOADED)))
                _LOADED[rec.artifact_path] = pred
    except Exception as exc:  # noqa: BLE001 - a lost artifact: the online forecaster decides
        log.warning("chosen forecaster of %r unreadable (%s); using the online one",
                    target.name, exc)
        return None, {"forecaster": ONLINE, "forecaster_error": f"{type(exc).__name__}"}
    return PredictorForecaster(pred, 0, f"{chosen}@{rec.version}"), details

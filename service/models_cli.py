"""``tidewise train`` and ``tidewise models``: models trained for the daemon, in its store.

The evaluation command that needs no store is in :mod:`models.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.cli import Step, TraceFormat


def register(app: typer.Typer) -> None:
    """Add ``train`` and the ``models`` group to ``app``."""
    _register_training(app)


def _settings(db_url: str | None, model_dir: Path | None = None):  # noqa: ANN202 - Settings
    from service.config import load_settings

    kw: dict[str, object] = {}
    if db_url is not None:
        kw["db_url"] = db_url
    if model_dir is not None:
        kw["model_dir"] = str(model_dir)
    return load_settings(**kw)


DbUrl = Annotated[str | None, typer.Option("--db-url", help="Store URL (default TIDEWISE_DB_URL).")]


def _metric_text(metrics: dict) -> str:
    """CRPS/MSE/coverage of a registry row (ours, or the daemon retraining's holdout CRPS)."""
    from common.units import human

    val = metrics.get("validation") or {}
    if val:
        return (
            f"crps={human(val.get('crps'), digits=4)} mse={human(val.get('mse'), digits=4)} "
            f"cov90={human(val.get('coverage_90'), '%')}"
        )
    if "holdout_crps" in metrics:
        return f"holdout_crps={human(metrics['holdout_crps'], digits=4)}"
    return "-"


def _trained_text(trained) -> str:  # noqa: ANN001 - dict or the daemon's sentence
    if isinstance(trained, dict) and trained:
        inds = ",".join(trained.get("indicators", []))
        return f"{Path(trained.get('path', '?')).name} [{inds}] {trained.get('rows')} rows"
    return str(trained or "-")


def _register_training(app: typer.Typer) -> None:
    models_app = typer.Typer(
        help="Models: the kinds there are (`available`) and those registered in the store "
        "(the daemon forecasts with the current one).",
        no_args_is_help=True,
    )
    app.add_typer(models_app, name="models")

    @app.command()
    def train(
        data: Annotated[Path, typer.Option(help="Trace file (one file).")],
        model: Annotated[str, typer.Option(help="Model name (see `tidewise models available`).")],
        context: Annotated[int, typer.Option(help="Context length L [rows].", min=1)] = 96,
        horizon: Annotated[int, typer.Option(help="Forecast horizon H [rows].", min=1)] = 1,
        format: TraceFormat = None,
        step: Step = None,
        indicator: Annotated[
            str | None,
            typer.Option(
                help="Train a univariate model of this indicator, served by the daemon for "
                "the metric of that name (default name daemon:INDICATOR)."
            ),
        ] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Model parameter KEY=VALUE (JSON value); repeatable."),
        ] = None,
        db_url: DbUrl = None,
        model_dir: Annotated[
            Path | None, typer.Option(help="Artifact folder (default TIDEWISE_MODEL_DIR).")
        ] = None,
        name: Annotated[
            str | None,
            typer.Option(help="Registered name (default daemon:INDICATOR or MODEL:FILE)."),
        ] = None,
        current: Annotated[
            bool,
            typer.Option(help="Make it current when its validation CRPS beats the current one."),
        ] = True,
        force: Annotated[
            bool, typer.Option(help="Make it current without comparing (with --current).")
        ] = False,
        seed: Annotated[int, typer.Option(help="Seed of training and sampling.")] = 0,
        progress: Annotated[
            bool | None,
            typer.Option("--progress/--no-progress",
                         help="Show the fit's progress (epochs, members, quantile models) on "
                         "stderr [default: when stderr is a terminal]."),
        ] = None,
    ) -> None:
        """Fit a model on the train split, score it on the validation split, register it.

        The split is the evaluation's chronological 70/10/20; metrics (CRPS, MSE, MAE, wQL,
        90% coverage) are in the data's units. The artifact goes under
        MODEL_DIR/NAME/VERSION and the store records name, version, data, metrics and path.
        """
        from common.errors import InputError
        from common.units import count, human
        from models.base import get_estimator_class
        from models.evaluate import parse_overrides
        from models.progress import FitBar
        from service.training import daemon_warnings, open_store, train_and_register

        get_estimator_class(model)  # unknown model: error before touching data or store
        for item in set_ or []:
            if "=" not in item or not item.split("=", 1)[0]:
                raise InputError(f"expected KEY=VALUE, got {item!r}", where="--set")
        params = parse_overrides([f"{model}.{s}" for s in set_ or []]).get(model, {})
        settings = _settings(db_url, model_dir)
        store = open_store(settings)
        import sys

        shown = sys.stderr.isatty() if progress is None else progress
        bar = FitBar(1, "train", enabled=shown, lazy=True)  # not before the data loads
        bar.start(model)
        try:
            res = train_and_register(
                store,
                data,
                model=model,
                context=context,
                horizon=horizon,
                fmt=format,
                step=step,
                indicator=indicator,
                params=params,
                name=name,
                model_dir=model_dir,
                make_current=current,
                force=force,
                seed=seed,
                progress=bar.event,
            )
            bar.done()
        finally:
            bar.close()
            store.close()
        m = res.metrics
        typer.echo(
            f"registered id {res.id}: {res.name} {res.version}{' (current)' if res.current else ''}"
        )
        typer.echo(
            f"validation ({count(m['windows'], 'window')}, in the data's units; MSE in their "
            f"square): CRPS {human(m['crps'], digits=4)}  MSE {human(m['mse'], digits=4)}  "
            f"coverage_90 {human(m['coverage_90'], '%')}"
        )
        typer.echo(f"current: {'yes' if res.current else 'no'} ({res.reason})")
        typer.echo(f"artifact: {res.artifact}")
        for line in daemon_warnings(settings, res.name, res.trained_on["step_s"], context, horizon):
            typer.echo(f"warning: {line}", err=True)

    @models_app.command("available")
    def models_available() -> None:
        """List the model names `train` and `evaluate` accept, each with what it is."""
        from models.base import available_models, get_estimator_class

        names = available_models()
        width = max(len(n) for n in names) + 2
        for n in names:
            doc = (get_estimator_class(n).__doc__ or "").strip().splitlines()
            line = doc[0].replace("``", "") if doc else ""
            typer.echo(f"{n:<{width}}{line}")

    @models_app.command("list")
    def models_list(
        db_url: DbUrl = None,
        name: Annotated[str | None, typer.Option(help="Only this registered name.")] = None,
    ) -> None:
        """List registered models: id, name, version, data, metrics, current, path."""
        from service.store import model_registry as model_store
        from service.training import open_store, record_dict

        store = open_store(_settings(db_url))
        try:
            with store.sessions() as session:
                rows = [record_dict(r) for r in model_store.list_models(session, name)]
        finally:
            store.close()
        if not rows:
            typer.echo("no model registered; `tidewise train` registers one")
            return
        typer.echo(
            f"{'id':>4}  {'name':<24}{'version':<34}{'trained_on':<34}"
            f"{'metrics':<40}{'current':<8}path"
        )
        for r in rows:
            typer.echo(
                f"{r['id']:>4}  {r['name']:<24}{r['version']:<34}"
                f"{_trained_text(r['trained_on'])[:33]:<34}{_metric_text(r['metrics']):<40}"
                f"{'*' if r['current'] else '':<8}{r['artifact_path']}"
                f"{'' if r['artifact_present'] else ' (missing)'}"
            )

    @models_app.command("use")
    def models_use(
        model_id: Annotated[int, typer.Argument(help="Id from `tidewise models list`.")],
        db_url: DbUrl = None,
    ) -> None:
        """Make a registered model the current version of its name (its artifact must load)."""
        from service.training import daemon_warnings, open_store, use_model

        settings = _settings(db_url)
        store = open_store(settings)
        try:
            rec, pred = use_model(store, model_id)
        finally:
            store.close()
        typer.echo(f"current {rec.name}: id {rec.id}, version {rec.version}")
        step_s = float(pred.config.get("step", settings.forecast_step_s))
        for line in daemon_warnings(
            settings, rec.name, step_s, pred.context_length, pred.prediction_length
        ):
            typer.echo(f"warning: {line}", err=True)

    @models_app.command("show")
    def models_show(
        model_id: Annotated[int, typer.Argument(help="Id from `tidewise models list`.")],
        db_url: DbUrl = None,
    ) -> None:
        """Print one registered model as JSON."""
        import json

        from service.store import model_registry as model_store
        from service.training import open_store, record_dict

        store = open_store(_settings(db_url))
        try:
            with store.sessions() as session:
                doc = record_dict(model_store.get_model(session, model_id))
        finally:
            store.close()
        typer.echo(json.dumps(doc, indent=2))

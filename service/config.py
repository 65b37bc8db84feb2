"""The one settings object of the Tidewise daemon.

Every field is read from the environment with the prefix ``TIDEWISE_`` (``TIDEWISE_DB_URL``,
``TIDEWISE_PORT`` …) and validated when the daemon starts, so a nonsense or unsafe value
stops it with a message naming the variable instead of misbehaving later. The docs'
configuration table (``docs/service.md``) is checked against these fields by
``tests/service/test_service_config.py``.

Tests never patch this module: they build a :class:`Settings` (``Settings(db_url=...)``)
and hand it to the factories (:func:`service.api.create_app`, :func:`service.store.db.make_engine`).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError

#: Database URL schemes the store supports (SQLAlchemy dialect+driver).
SUPPORTED_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


class Settings(BaseSettings):
    """Settings of the daemon, the CLI and the migrations (env prefix ``TIDEWISE_``)."""

    model_config = SettingsConfigDict(
        env_prefix="TIDEWISE_", extra="ignore", frozen=True, validate_default=True
    )

    environment: Literal["development", "production"] = Field(
        "development",
        description="Deployment kind (no unit). `production` additionally refuses SQLite "
        "synchronous=NORMAL and binding to all interfaces without an explicit opt-in.",
    )
    db_url: str = Field(
        "sqlite:///./tidewise.db",
        description="SQLAlchemy URL of the store (no unit): `sqlite:///PATH` or "
        "`postgresql+psycopg://user@host:port/db`.",
    )
    db_schema: str | None = Field(
        None,
        description="PostgreSQL schema to keep the tables in (no unit; sets `search_path`). "
        "Ignored on SQLite.",
    )
    db_pool_size: int = Field(
        5, ge=1, le=100, description="Connections kept open per daemon (connections)."
    )
    db_ping_idle_s: float = Field(
        1.0, ge=0.0, le=3600.0,
        description="PostgreSQL: a pooled connection idle longer than this is pinged before "
        "use, and replaced if the server dropped it (s); 0 pings at every checkout. Ignored on "
        "SQLite.",
    )
    pg_jit: bool = Field(
        False,
        description="PostgreSQL: let the server JIT-compile Tidewise's queries (no unit; sets "
        "`jit` for its connections). Off by default: they are short index reads, and on a "
        "samples table whose statistics are missing or stale (autovacuum off or behind) the "
        "planner's estimates put them past `jit_above_cost`, where compiling took longer than "
        "running (docs/scale.md). Ignored on SQLite.",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "FULL",
        description="SQLite `PRAGMA synchronous` in WAL mode (no unit). FULL: an acknowledged "
        "batch survives a power cut; NORMAL: survives a process crash only.",
    )
    sqlite_busy_timeout_ms: int = Field(
        10_000, ge=0, le=600_000, description="How long a writer waits for the lock (ms)."
    )
    sqlite_cache_mib: int = Field(
        64,
        ge=1,
        le=65_536,
        description="SQLite page cache per connection (MiB); the samples index must fit for "
        "fast ingest.",
    )
    sqlite_wal_autocheckpoint_pages: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="WAL length that triggers a checkpoint (pages of 4 KiB); a longer WAL "
        "folds repeated writes of the same page into one copy.",
    )
    host: str = Field("127.0.0.1", description="Interface the HTTP server binds (address).")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP server (port).")
    allow_public_bind: bool = Field(
        False,
        description="In production, allow a host that resolves to an unspecified address "
        "(`0.0.0.0`, `::`, `0`, `000.0.0.0`, `::0`, ...: every interface) (bool); the API speaks "
        "plain HTTP, so bearer tokens cross the network in clear unless a TLS proxy is in front.",
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Largest accepted request body of the ingest routes (`POST /v1/metrics`, "
        "remote-write) (bytes); bigger bodies get 413, checked while streaming.",
    )
    max_json_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Largest body of the small JSON routes (`POST /v1/targets`, action acks) "
        "(bytes), capped by max_body_bytes; bigger bodies get 413.",
    )
    max_buffered_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024,
        le=64 * 1024**3,
        description="Most request-body bytes held in memory at once, all requests together "
        "(bytes); a request that finds no room waits up to body_wait_s, then gets 503 with "
        "Retry-After. At least max_body_bytes.",
    )
    body_wait_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How long a request body waits for room under max_buffered_bytes before "
        "the request gets 503 (seconds).",
    )
    max_future_s: int = Field(
        300,
        ge=0,
        le=86_400,
        description="How far ahead of the server clock a sample's ts may be (seconds).",
    )
    max_query_points: int = Field(
        100_000,
        ge=10,
        le=10_000_000,
        description="Most points one /v1/series answer may hold (points).",
    )
    raw_retention_hours: float = Field(
        48.0, gt=0, le=24 * 3650, description="How long 1-second samples are kept (hours)."
    )
    rollup_retention_days: float = Field(
        30.0, gt=0, le=3650, description="How long per-minute rollups are kept (days)."
    )
    rollup_interval_s: float = Field(
        30.0, ge=1, le=3600, description="Period of the rollup job (seconds)."
    )
    retention_interval_s: float = Field(
        600.0, ge=10, le=86_400, description="Period of the retention job (seconds)."
    )
    scheduler_enabled: bool = Field(
        True, description="Run the rollup and retention jobs inside `tidewise serve` (bool)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the daemon (no unit)."
    )
    forecast_interval_s: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="Period of the forecast refresh, followed by a decision per target (seconds).",
    )
    shards: int = Field(
        16,
        ge=1,
        le=4096,
        description="Shards the forecast job's work is split into, so several daemons on one "
        "database share it (shards): an entity's series and the targets deciding on it hash "
        "to one shard, and each daemon leases a share of the shards every period; every "
        "daemon on one database must use the same number (docs/sharding.md).",
    )
    forecast_step_s: int = Field(
        15,
        ge=1,
        le=3600,
        description="Width of the buckets a series is averaged into before forecasting (seconds).",
    )
    forecast_context_steps: int = Field(
        240, ge=2, le=100_000, description="History read per forecast (buckets)."
    )
    decision_history_s: float = Field(
        86_400.0, ge=60, le=30 * 86_400,
        description="History a scaling decision reads (seconds): the online forecaster's "
        "daily season needs a day; capped at the raw retention.",
    )
    forecast_horizon_steps: int = Field(
        20, ge=1, le=10_000, description="Steps forecast ahead (buckets)."
    )
    forecast_joint: bool = Field(
        True,
        description="Forecast an entity's metrics jointly, as the indicators of one model "
        "(HARMONY's multi-indicator forecast; each sample path is one joint draw), rather "
        "than each metric alone (bool).",
    )
    forecast_incremental: bool = Field(
        True,
        description="Keep each series' bucketed history between forecast runs and read only "
        "the buckets written since (and what late writes or retention changed), rather than "
        "the whole context every period; the forecasts are the same (bool).",
    )
    forecast_max_indicators: int = Field(
        8, ge=1, le=64,
        description="Most metrics in one joint forecast; an entity with more is split into "
        "groups in metric order (indicators).",
    )
    forecast_hierarchy: dict[str, dict[str, int]] = Field(
        {},
        description="HARMONY's indicator hierarchy per entity kind, for models that read one "
        "(`harmony`): JSON `{kind: {metric: level}}`, level 0 on top (load, requests), 1 for "
        "CPU and memory, 2 for I/O and network (the default by name when unset).",
    )
    forecast_model: str = Field(
        "window-mean",
        description="Model used when no model is registered as current (no unit): a name "
        "from the models registry (`last`, `window-mean`, `seasonal-naive`, ...).",
    )
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$",
        description="Where models that can use a GPU (`harmony`) train and forecast (no "
        "unit): `cpu`, `cuda`, `cuda:N` or `auto` (a GPU when one is present). Nothing "
        "requires one; a model saved on a GPU machine forecasts on the CPU where none is.",
    )
    train_history_s: float = Field(
        86_400.0, ge=60, le=365 * 86_400,
        description="History the retraining job trains on (seconds), per entity: a day by "
        "default, so daily seasons are seen; capped at the raw retention, or at the rollup "
        "retention when TIDEWISE_FORECAST_STEP_S is a multiple of 60 (the rollups serve it).",
    )
    retrain_model: str | None = Field(
        None,
        description="Model the retraining job trains and registers when it beats the current "
        "one (no unit), e.g. `harmony`; unset: TIDEWISE_FORECAST_MODEL. The refresh keeps "
        "fitting the cheap TIDEWISE_FORECAST_MODEL on the spot until a trained one is current.",
    )
    forecaster_candidates: str = Field(
        "online,quantile-gbm",
        pattern=r"^[A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*$",
        description="Forecasters the `choose` job backtests for each `forecaster: auto` scaling "
        "target (no unit): comma-separated model names, `online` for the scenario's online "
        "forecaster.",
    )
    choose_interval_s: float = Field(
        21_600.0, ge=60, le=30 * 86_400,
        description="Period of the `choose` job, which re-picks each auto target's forecaster "
        "from a backtest on its own history (seconds).",
    )
    choose_history_s: float = Field(
        172_800.0, ge=3600, le=365 * 86_400,
        description="History the `choose` job backtests on (seconds): trained on its first "
        "half, scored on the second; capped at the raw retention.",
    )
    retrain_isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where the retraining job trains (no unit): `process`, a child process at "
        "a lower CPU priority, so a long fit cannot stall the API; `thread`, in the daemon's "
        "own process (no start-up cost, for small models).",
    )
    retrain_interval_s: float = Field(
        3600.0,
        ge=60,
        le=30 * 86_400,
        description="Period of the retraining job (seconds).",
    )
    source_secrets_dir: str | None = Field(
        None,
        description="Folder holding the secrets of targets' Prometheus-compatible sources "
        "(path): a source's bearerTokenFile / passwordFile must lie inside it; unset, "
        "file secrets are refused (environment variables TIDEWISE_SOURCE_* still work).",
    )
    model_dir: str = Field(
        "./tidewise-models",
        description="Folder where retrained model artifacts are saved (path).",
    )
    refuse_fallback_decisions: bool = Field(
        False,
        description="KEDA (`/v1/keda/...`) and the External Metrics API answer 503 for a "
        "decision that came from a fallback (the policy fell back, or a scaling policy read the "
        "per-series fallback forecast), so the orchestrator's own fallback applies (bool). "
        "Stale decisions always get 503.",
    )
    ready_job_periods: float = Field(
        3.0,
        ge=1.5,
        le=1000,
        description="/readyz answers 503 when a scheduled job has not succeeded for this many "
        "of its periods, or the scheduler is not running (periods).",
    )
    export_quantiles: str = Field(
        "0.1,0.5,0.9,0.99",
        description="Quantile levels of each stored forecast exported on /metrics as "
        "`tidewise_forecast{quantile}` (comma-separated levels in (0, 1), at most 10).",
    )
    export_horizons_s: str = Field(
        "60,300",
        description="Horizons of each stored forecast exported on /metrics as "
        "`tidewise_forecast{horizon_s}` (comma-separated seconds after the forecast's origin, "
        "at most 10); a horizon past a forecast's last step is left out.",
    )
    export_max_series: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Most forecast and decision series one /metrics scrape exports (series); "
        "the rest are left out whole per entity/metric or target and counted in "
        "`tidewise_export_dropped_series`. 0 turns these series off.",
    )
    tokens: SecretStr | None = Field(
        None,
        description="Bearer tokens with scopes (no unit): `name:token:scope+scope,...` or a "
        "JSON list; scopes ingest, read, act. Empty: open API, development only "
        "(see service/auth.py).",
    )

    remote_write_entity_label: str = Field(
        "instance",
        description="Prometheus remote-write: label whose value names the entity (label name).",
    )
    remote_write_kind: Literal["vm", "function", "server"] = Field(
        "vm",
        description="Prometheus remote-write: kind given to entities first seen through it "
        "(no unit).",
    )
    remote_write_entity_labels: str = Field(
        "job",
        description="Prometheus remote-write: comma-separated labels stored on the entity "
        "instead of in the metric name (label names).",
    )
    remote_write_drop_labels: str = Field(
        "",
        description="Prometheus remote-write: comma-separated labels ignored entirely, e.g. "
        "`replica` (label names).",
    )
    replay_report: Path | None = Field(
        None,
        description="Replay report shown by the dashboard (path): a report.json, the --out "
        "folder of `tidewise replay`, or a folder of such folders (newest wins).",
    )

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from service.auth import parse_tokens

            try:
                parse_tokens(value.get_secret_value())
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("TIDEWISE_TOKENS")) from None
        return value

    @field_validator("export_quantiles")
    @classmethod
    def _check_export_quantiles(cls, value: str) -> str:
        _levels(value)
        return value

    @field_validator("export_horizons_s")
    @classmethod
    def _check_export_horizons(cls, value: str) -> str:
        _horizons(value)
        return value

    @field_validator("db_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(f"{value!r} is not a URL; use e.g. sqlite:///./tidewise.db")
        if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
            raise ValueError(
                f"use the psycopg 3 driver: postgresql+psycopg://{rest} (got {scheme}://)"
            )
        if scheme not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"unsupported database {scheme!r}; use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST:PORT/DB"
            )
        if scheme.startswith("sqlite"):
            path = rest[1:] if rest.startswith("/") else rest
            if path in ("", ":memory:") or "mode=memory" in path:
                raise ValueError(
                    "an in-memory SQLite database loses every sample on exit and is not shared "
                    "between connections; give a file path, e.g. sqlite:///./tidewise.db"
                )
        return value

    @field_validator("db_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "a").isalnum():
            raise ValueError(f"{value!r}: use letters, digits and underscores only")
        return value

    @field_validator("remote_write_entity_label")
    @classmethod
    def _check_entity_label(cls, value: str) -> str:
        if not value or value == "__name__":
            raise ValueError("give a label name other than __name__, e.g. instance")
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        if self.rollup_retention_days * 24 < self.raw_retention_hours:
            raise ValueError(
                f"rollup_retention_days={self.rollup_retention_days} keeps rollups for less "
                f"time than raw samples (raw_retention_hours={self.raw_retention_hours}); "
                "rollups must outlive the raw data they summarise"
            )
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_bytes={self.max_buffered_bytes} is smaller than max_body_bytes="
                f"{self.max_body_bytes}: a body of the largest accepted size could never be "
                "read; raise TIDEWISE_MAX_BUFFERED_BYTES or lower TIDEWISE_MAX_BODY_BYTES"
            )
        if self.rollup_interval_s > self.raw_retention_hours * 3600:
            raise ValueError("rollup_interval_s must be shorter than raw retention")
        if self.environment == "production":
            if self.is_sqlite and self.sqlite_synchronous == "NORMAL":
                raise ValueError(
                    "sqlite_synchronous=NORMAL can lose acknowledged batches on power loss; "
                    "use FULL in production"
                )
            every = unspecified_addresses(self.host)
            if every and not self.allow_public_bind:
                raise ValueError(
                    f"host={self.host} resolves to {', '.join(every)}, which serves plain HTTP "
                    "(bearer tokens in clear) on every interface; bind 127.0.0.1 behind a TLS "
                    "proxy or set TIDEWISE_ALLOW_PUBLIC_BIND=true"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is an SQLite file."""
        return self.db_url.startswith("sqlite")

    @property
    def remote_write_entity_label_set(self) -> frozenset[str]:
        """The labels remote-write keeps on the entity."""
        return _label_set(self.remote_write_entity_labels)

    @property
    def remote_write_drop_label_set(self) -> frozenset[str]:
        """The labels remote-write ignores."""
        return _label_set(self.remote_write_drop_labels)

    @property
    def export_quantile_levels(self) -> tuple[float, ...]:
        """The forecast quantile levels /metrics exports, ascending."""
        return _levels(self.export_quantiles)

    @property
    def export_horizon_list(self) -> tuple[int, ...]:
        """The forecast horizons (seconds) /metrics exports, ascending."""
        return _horizons(self.export_horizons_s)

    @property
    def decision_window_s(self) -> int:
        """History a scaling decision reads: ``decision_history_s`` within the raw retention."""
        return int(min(self.decision_history_s, self.raw_retention_hours * 3600))

    @property
    def train_window_s(self) -> int:
        """History the retraining job reads, in seconds.

        ``train_history_s`` within the retention that serves buckets of ``forecast_step_s``
        (raw samples, or rollups for whole minutes).
        """
        keep = (self.rollup_retention_days * 86400 if self.forecast_step_s % 60 == 0
                else self.raw_retention_hours * 3600)
        return int(min(self.train_history_s, keep))

    @property
    def raw_retention_s(self) -> int:
        """Raw retention in seconds."""
        return int(self.raw_retention_hours * 3600)

    @property
    def rollup_retention_s(self) -> int:
        """Rollup retention in seconds."""
        return int(self.rollup_retention_days * 86400)


def unspecified_addresses(host: str) -> list[str]:
    """Return the unspecified ("every interface") addresses ``host`` binds to, if any.

    The host is resolved as the server's ``bind`` resolves it (``getaddrinfo``), so every
    spelling counts: ``0``, ``0.0.0.00``, ``000.000.000.000``, ``0x0``, ``::0``,
    ``0:0:0:0:0:0:0:0`` and ``::ffff:0.0.0.0`` all mean every interface. A name that does not
    resolve returns nothing here; ``tidewise serve`` reports it when it tries to listen.
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    found: list[str] = []
    for *_, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        mapped = getattr(addr, "ipv4_mapped", None)
        if (addr.is_unspecified or (mapped is not None and mapped.is_unspecified)) and str(
            addr
        ) not in found:
            found.append(str(addr))
    return found


def _label_set(names: str) -> frozenset[str]:
    """Split a comma-separated list of label names, ignoring blanks."""
    return frozenset(x.strip() for x in names.split(",") if x.strip())


def _numbers(text: str, what: str) -> list[float]:
    parts = [x.strip() for x in text.split(",") if x.strip()]
    if len(parts) > 10:
        raise ValueError(f"at most 10 {what}, got {len(parts)}")
    try:
        return [float(x) for x in parts]
    except ValueError:
        raise ValueError(f"{text!r}: give comma-separated numbers") from None


def _levels(text: str) -> tuple[float, ...]:
    """Parse quantile levels ``"0.1,0.5,0.9"`` (each in (0, 1)), sorted without repeats."""
    levels = _numbers(text, "quantile levels")
    bad = [q for q in levels if not 0.0 < q < 1.0]
    if bad:
        raise ValueError(f"quantile levels must be in (0, 1), got {bad}")
    return tuple(sorted(set(levels)))


def _horizons(text: str) -> tuple[int, ...]:
    """Parse horizons in seconds ``"60,300"`` (positive whole seconds), sorted without repeats."""
    hs = _numbers(text, "horizons")
    bad = [h for h in hs if h <= 0 or h != int(h) or h > 10 * 365 * 86_400]
    if bad:
        raise ValueError(f"horizons must be positive whole seconds, got {bad}")
    return tuple(sorted({int(h) for h in hs}))


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (plus ``overrides``), as a :class:`ConfigError`.

    Raises:
        ConfigError: naming each invalid variable and why.

    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"TIDEWISE_{name.upper()}" if err["loc"] else "settings"
            problems.append(f"{env}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return load_settings()

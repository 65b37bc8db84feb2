"""``harmony``: hierarchical multi-indicator transformer with a conditional flow head.

After HARMONY ("Adaptive Two-Stage Cloud Resource Scaling via Hierarchical
Multi-Indicator Forecasting and Bayesian Decision-Making", 2024), rebuilt for a
probabilistic objective:

1. **Instance normalisation** (RevIN-style, per window and indicator): inputs are centred
   on the window's *last* value and divided by the window's standard deviation; targets
   are expressed as the change from the last value in units of the window's std of
   one-row changes (``target_scale="diff"``; a slowly drifting series with rare jumps
   then still has targets of order 1). Both scales get a floor (``scale_floor`` times the
   indicator's training std of one-row changes). The network predicts a correction to
   "no change" in units of recent variability. Forecasts
   are mapped back to the caller's scale at the end, so metrics are in the caller's scale.
2. **Indicator tokens** (inverted-transformer style): each indicator's whole normalised
   window, with its two log scales, its window-mean anchor and (``level_features``, on by
   default) its last value and window mean in units of the indicator's training mean and
   std, becomes one token through a shared linear map, plus a learned per-indicator
   embedding. Instance normalisation alone throws the absolute level away; a bounded
   counter near its ceiling and one near its floor then look the same, yet one will fall
   and the other rise (the level features are what lets the model mean-revert).
3. **Calendar tokens**: sin/cos of time of day and day of week over the context *and*
   the forecast rows (known in advance), one token per feature.
4. **Hierarchical attention**: each indicator has a level (0 = top). With
   ``hierarchy="mask"`` (default) an indicator token attends only to tokens of its own or
   a higher level (its parents) and to the calendar tokens; calendar tokens attend to
   everything. ``"none"`` is full attention. Default levels come from the names:
   load/requests/invocations -> 0; cpu/mem/gpu/power -> 1; everything else (I/O,
   network) -> 2. ``levels`` in the config overrides this ({name: level}).
5. **Heads**: a point head trained by MSE and a distribution head. The point forecast
   is, per indicator and horizon step, a learned gate (sigmoid of a linear map of the
   indicator's token) between the last value and the window mean (``anchor="gate-only"``,
   the default: a switching series such as a two-level I/O counter needs the window mean,
   a drifting one the last value; a free linear correction on top, ``anchor="gate"``,
   overfits the noise on these short traces). The distribution head (:mod:`models.heads`,
   ``flow`` by default, ``gaussian`` to swap) models the joint indicator vector of each
   horizon step, conditioned on a context vector from all indicator tokens plus a
   horizon-step embedding, trained by negative log-likelihood of the residual from the
   point forecast (detached there, so NLL shapes the distribution only; MSE and the CRPS
   term below train the point forecast).
   Loss = NLL / M + ``mse_weight`` * MSE + ``crps_weight`` * CRPS, each indicator's
   squared error divided by its training mean of squared targets; the CRPS term is the
   fair CRPS of ``crps_samples`` reparameterised flow samples per forecast, in the data's
   scale (see :func:`sample_crps`): NLL in normalised units weighs every window alike,
   the CRPS of the forecast weighs them as the evaluation does, and it is a proper
   scoring rule of the (recentred) samples we actually hand out. Horizon steps are
   conditionally independent
   given the window; indicators are joint within a step.
6. **Point forecast**: samples are shifted so their mean equals the point head
   (``recentre=True``), so ``Forecast.mean`` is the point head (trained by MSE and CRPS)
   without Monte-Carlo noise; the shape of the distribution is the flow's.

Ensemble: ``members`` networks (3 by default) trained alike from different seeds; a forecast
is the mixture of their sample paths, each member drawing ``S // members`` of them (the first
``S % members`` members one more) (a deep ensemble: the members' disagreement
widens the distribution where the data left the model unsure, and the mixture's mean
averages their errors).

Training: Adam, early stopping on the validation loss (the best epoch is kept), a budget of
``max_train_cpu_seconds`` of this process's CPU time per member (so a busy shared machine
does not cut training short) capped by ``max_train_seconds`` of wall-clock time for all
members together (each member gets an equal share of what is left; both are checked after
each epoch, so a fit can run one epoch over; a member with no time left is not trained and
the ensemble is smaller). Where the wall-clock cap binds, the epochs trained, and so the
figures, depend on the machine's load; on an idle machine it does not bind. Targets in
normalised units are clipped to
``±clip`` and jittered by ``jitter`` (std) so exactly repeated values (constant series, a
two-level switching counter) do not give the flow a degenerate density.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import ConfigError
from models.base import Estimator, Predictor, fill_gaps, register_model
from models.data import Series, calendar_features, make_windows
from models.heads import HEADS

#: Flow draws pushed through the head at once when forecasting on the CPU (see
#: ``FlowHead.sample``): small enough for the spline transforms' intermediates to stay in
#: the cache. None: all at once.
SAMPLE_CHUNK_ROWS = 4096

_LEVEL_RULES = (
    (0, re.compile(r"load|request|invocation|concurrency|tokens", re.I)),
    (1, re.compile(r"cpu|mem|gpu|power", re.I)),
)


def default_levels(indicators: tuple[str, ...]) -> list[int]:
    """Hierarchy level of each indicator from its name (0 = top; see module doc)."""
    out = []
    for name in indicators:
        level = 2
        for lv, rx in _LEVEL_RULES:
            if rx.search(name):
                level = lv
                break
        out.append(level)
    return out


def hierarchy_mask(levels: list[int], n_calendar: int, mode: str) -> torch.Tensor:
    """Additive attention mask ``(T, T)`` (0 allowed, -inf blocked), T = M + calendar tokens.

    Row = query token, column = key token. An indicator attends to indicators of the same
    or a higher (smaller number) level and to every calendar token.
    """
    m = len(levels)
    t = m + n_calendar
    allowed = torch.ones(t, t, dtype=torch.bool)
    if mode == "mask":
        lv = torch.tensor(levels)
        allowed[:m, :m] = lv[None, :] <= lv[:, None]
    elif mode != "none":
        raise ValueError(f"hierarchy must be 'mask' or 'none', got {mode!r}")
    mask = torch.zeros(t, t)
    mask[~allowed] = float("-inf")
    return mask


def n_stats(cfg: dict[str, Any]) -> int:
    """Per-indicator statistics appended to each window token (see ``HarmonyNet.encode``)."""
    n = 3
    if cfg.get("level_features", False):
        n += 2
    return n


class HarmonyNet(nn.Module):
    """Encoder plus heads; works in normalised units (see module doc)."""

    N_CAL = 4

    def __init__(self, m: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        ell, h, d = int(cfg["context_length"]), int(cfg["prediction_length"]), int(cfg["d_model"])
        self.m, self.h = m, h
        self.n_stats = n_stats(cfg)
        # window (+ its observed mask) + its statistics -> token
        self.mask_feature = bool(cfg.get("mask_feature", False))
        self.value_embed = nn.Linear(ell * (2 if self.mask_feature else 1) + self.n_stats, d)
        self.ind_embed = nn.Parameter(torch.randn(m, d) * 0.02)
        self.cal_embed = nn.Linear(ell + h, d)
        self.cal_type = nn.Parameter(torch.randn(self.N_CAL, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d,
            int(cfg["n_heads"]),
            int(cfg["d_ff"]),
            float(cfg["dropout"]),
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, int(cfg["n_layers"]), enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(d)
        self.point = nn.Linear(d, h)
        # Gate between the last value (0) and the window mean (1) as the anchor of the
        # point forecast; the point head adds a learned correction on top.
        self.anchor = cfg.get("anchor", "gate")
        self.gate = nn.Linear(d, h)
        c = int(cfg["context_dim"])
        self.ctx = nn.Sequential(nn.Linear(m * d, c), nn.GELU(), nn.Linear(c, c))
        self.h_embed = nn.Parameter(torch.zeros(h, c))
        head_kw = {
            "num_layers": int(cfg["flow_layers"]),
            "hidden_features": int(cfg["flow_hidden"]),
            "transform": cfg["flow_transform"],
            "num_bins": int(cfg["flow_bins"]),
            "tail_bound": float(cfg["tail_bound"]),
            "direction": cfg["flow_direction"],
        }
        self.head = HEADS[cfg["head"]](m, c, **head_kw)
        mask = hierarchy_mask(list(cfg["levels"]), self.N_CAL, cfg["hierarchy"])
        self.register_buffer("mask", mask, persistent=False)

    def encode(
        self, xz: torch.Tensor, stats: torch.Tensor, cal: torch.Tensor,
        obs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point forecast and head context.

        Args:
            xz: ``(B, L, M)`` normalised context.
            stats: ``(B, M, n_stats(cfg))``: log of the input and target scales relative to
                the floor, the window mean relative to the last value in target units, then
                (``level_features``) the last value and window mean in units of the
                indicator's training mean and std.
            cal: ``(B, L + H, 4)`` calendar features.
            obs: ``(B, L, M)`` 1 where the context value was observed, 0 where imputed
                (read with ``mask_feature``; None: all observed).

        Returns:
            ``mu (B, H, M)`` normalised point forecast, ``ctx (B, H, C)`` head context.

        """
        parts = [xz.transpose(1, 2)]
        if self.mask_feature:
            parts.append((torch.ones_like(xz) if obs is None else obs).transpose(1, 2))
        feats = torch.cat([*parts, stats], dim=2)  # (B, M, L [+ L] + n_stats)
        tok = self.value_embed(feats) + self.ind_embed  # (B, M, d)
        ctok = self.cal_embed(cal.transpose(1, 2)) + self.cal_type  # (B, 4, d)
        hid = self.encoder(torch.cat([tok, ctok], dim=1), mask=self.mask)  # (B, M + 4, d)
        hid = self.norm(hid[:, : self.m])  # (B, M, d)
        mu = self.point(hid).transpose(1, 2)  # (B, H, M)
        if self.anchor == "gate-only":
            mu = torch.zeros_like(mu)
        if self.anchor in ("gate", "gate-only"):
            g = torch.sigmoid(self.gate(hid)).transpose(1, 2)  # (B, H, M)
            mu = mu + g * stats[:, None, :, 2]  # window mean rel. to last, (B, 1, M)
        c = self.ctx(hid.flatten(1))  # (B, C)
        ctx = c[:, None, :] + self.h_embed[None]  # (B, H, C)
        return mu, ctx


def resolve_device(name: str, strict: bool = True) -> torch.device:
    """Resolve ``name`` to a torch device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

    ``auto`` is a GPU when one is present, else the CPU.

    Raises:
        ConfigError: (``strict``) a GPU asked for by name and none is usable, or a bad name.
            Not strict (loading a saved model), a missing GPU means the CPU.

    """
    name = str(name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        if strict:
            raise ConfigError(f"device {name!r} asked for, but torch sees no usable GPU "
                              "(torch.cuda.is_available() is False); use cpu or auto")
        return torch.device("cpu")
    return dev


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous setting after.

    Small models on a shared CPU run an order of magnitude faster on one thread than
    on several threads competing with other processes (measured: 0.14 s vs 4 s per batch).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _normalise(
    x: np.ndarray, floor: np.ndarray, target_scale: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Instance normalisation of windows ``x (N, L, M)``.

    Returns:
        ``xz (N, L, M)`` inputs centred on the last value and divided by the window std
        (+ floor); ``loc (N, M)`` the last value; ``in_scale`` and ``out_scale (N, M)``:
        targets are expressed as ``(y - loc) / out_scale`` where ``out_scale`` is the std
        of the window's one-row changes (``target_scale="diff"``) or of its values
        (``"value"``), plus the floor.

    """
    loc = x[:, -1]  # (N, M)
    in_scale = x.std(axis=1) + floor[None]  # (N, M)
    if target_scale == "diff" and x.shape[1] > 2:
        out_scale = np.diff(x, axis=1).std(axis=1) + floor[None]
    else:
        out_scale = in_scale
    return (x - loc[:, None]) / in_scale[:, None], loc, in_scale, out_scale


class HarmonyPredictor(Predictor):
    """Trained ``harmony`` model: torch weights and per-indicator arrays, as state.

    State: the weights, the scale floor and the training mean/std of each indicator
    (``level_mu``, ``level_sd``). With ``members`` > 1 it holds a deep ensemble: member
    ``i``'s weights are stored under ``net.`` (``i = 0``) or ``net{i}.``, and a forecast is
    the mixture of the members' sample paths (each draws its share; see the module doc).
    """

    def __init__(self, config, state=None):
        super().__init__(config, state)
        self.nets: list[HarmonyNet] = []
        self.device = resolve_device(self.config.get("device", "cpu"), strict=False)
        if state:
            self._build()

    def set_device(self, name: str) -> None:
        """Run sampling on ``name`` (see :func:`resolve_device`; no GPU means the CPU)."""
        self.device = resolve_device(name, strict=False)
        for net in self.nets:
            net.to(self.device)

    @property
    def net(self) -> HarmonyNet | None:
        """The first member (the only one unless ``members`` > 1)."""
        return self.nets[0] if self.nets else None

    @staticmethod
    def member_prefix(i: int) -> str:
        """Key prefix of member ``i``'s weights in the state."""
        return "net." if i == 0 else f"net{i}."

    def _build(self) -> None:
        self.nets = []
        for i in range(int(self.config.get("members", 1))):
            pre = self.member_prefix(i)
            net = HarmonyNet(len(self.indicators), self.config)
            weights = {
                k[len(pre) :]: torch.from_numpy(v)
                for k, v in self.state.items()
                if k.startswith(pre)
            }
            net.load_state_dict(weights)
            net.to(self.device)
            net.eval()
            self.nets.append(net)

    def _load_state(self, folder) -> None:
        super()._load_state(folder)
        self._build()

    @property
    def reads_mask(self) -> bool:
        """Models trained with ``mask_feature`` read which context rows were imputed."""
        return bool(self.config.get("mask_feature", False))

    def _tensors(self, x: np.ndarray, t: np.ndarray, observed: np.ndarray | None = None):
        floor = self.state["floor"]
        xz, loc, in_scale, scale = _normalise(x, floor, self.config.get("target_scale", "value"))
        clip = float(self.config["clip"])
        xz = np.clip(xz, -clip, clip)
        rel = lambda v: np.clip((v - loc) / scale, -clip, clip)  # noqa: E731  (N, M)
        cols = [np.log(in_scale / floor[None]), np.log(scale / floor[None]), rel(x.mean(axis=1))]
        if self.config.get("level_features", False):
            mu, sd = self.state["level_mu"], self.state["level_sd"]
            cols += [np.clip((loc - mu) / sd, -clip, clip)]
            cols += [np.clip((x.mean(axis=1) - mu) / sd, -clip, clip)]
        stats = np.stack(cols, axis=-1)  # (N, M, n_stats)
        cal = calendar_features(t)
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        obs = None if observed is None else f(observed)
        return f(xz), f(stats), f(cal), loc, scale, obs

    def _sample(self, x, t, num_samples, rng, observed=None):
        assert self.nets, "predictor has no trained network"
        xz, ls, cal, loc, scale, obs = self._tensors(x, t, observed)
        k = len(self.nets)
        counts = [num_samples // k + (i < num_samples % k) for i in range(k)]
        zs = [
            self._member_sample(net, xz, ls, cal, n, int(rng.integers(2**31)), obs)
            for net, n in zip(self.nets, counts, strict=True)
            if n > 0
        ]
        z = np.concatenate(zs, axis=1) if len(zs) > 1 else zs[0]  # (B, S, H, M)
        if len(zs) > 1:  # members' paths interleaved, so any prefix is a fair mixture
            z = z[:, rng.permutation(num_samples)]
        return loc[:, None, None, :] + scale[:, None, None, :] * z

    def _member_sample(self, net, xz, ls, cal, n: int, seed: int, obs=None) -> np.ndarray:
        """``n`` sample paths of one member in normalised units, ``(B, n, H, M)``."""
        b, h, m = xz.shape[0], self.prediction_length, xz.shape[2]
        threads = torch_threads(int(self.config.get("num_threads", 1)))
        dev = self.device
        with threads, torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mu, ctx = net.encode(xz.to(dev), ls.to(dev), cal.to(dev),
                                 None if obs is None else obs.to(dev))  # (B, H, M), (B, H, C)
            # chunks keep a CPU's cache warm; on a GPU the batch goes at once (not measured)
            chunk = SAMPLE_CHUNK_ROWS if dev.type == "cpu" else None
            r = net.head.sample(n, ctx.reshape(b * h, -1), chunk_rows=chunk)  # (B*H, n, M)
            mu = mu.cpu()
            r = r.cpu()
        r = r.reshape(b, h, n, m).permute(0, 2, 1, 3).double().numpy()  # (B, n, H, M)
        clip = float(self.config["clip"])
        r = np.clip(r, -2 * clip, 2 * clip)
        if self.config["recentre"] and n > 1:  # one draw stays a draw, not the mean
            r = r - r.mean(axis=1, keepdims=True)
        return mu.double().numpy()[:, None] + r


def simulate_gaps(
    x: np.ndarray, share: float, rng: np.random.Generator, max_missing: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Give a ``share`` of training windows the gaps production has, imputed as at prediction.

    Each chosen window loses, per indicator, one to three runs of rows (together at most
    ``max_missing`` of the context; the last row stays observed as often as not) that are
    then forward/backward filled exactly as :meth:`models.base.Predictor.predict_windows`
    fills a real gap.

    Args:
        x: ``(N, L, M)`` complete windows.
        share: fraction of windows to damage, in [0, 1).
        rng: the generator (seeded by the estimator).
        max_missing: the most of a window's context one indicator may lose.

    Returns:
        ``(x, observed)``: the windows (a copy where damaged) and ``(N, L, M)`` 1.0/0.0.

    """
    n, ell, m = x.shape
    observed = np.ones_like(x)
    if share <= 0 or ell < 4:
        return x, observed
    x = x.copy()
    chosen = np.where(rng.random(n) < share)[0]
    for i in chosen:
        for j in range(m):
            budget = int(rng.uniform(0.05, max_missing) * ell)
            for _ in range(int(rng.integers(1, 4))):
                run = int(rng.integers(1, max(2, budget + 1)))
                start = int(rng.integers(0, ell - run + 1))
                observed[i, start:start + run, j] = 0.0
                budget -= run
                if budget <= 0:
                    break
            if not observed[i, :, j].any():
                observed[i, -1, j] = 1.0
        win = np.where(observed[i] > 0, x[i], np.nan)
        x[i] = fill_gaps(win)
    return x, observed


def sample_crps(
    net: HarmonyNet,
    mu: torch.Tensor,
    ctx: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    k: int,
    recentre: bool = True,
) -> torch.Tensor:
    """Mean fair CRPS of ``k`` reparameterised head samples, in the data's scale.

    Samples are reparameterised (the flow in the inverse-autoregressive direction, the
    default, draws them in one differentiable pass; ``maf`` takes M passes), so a proper
    scoring rule of the forecast itself can be trained next to the NLL:
    ``E|X - y| - E|X - X'| / 2`` per indicator (the unbiased "fair" form over ``k``
    samples), each window and indicator weighted by ``weight`` (its target unit in units
    of the indicator's training std). NLL in normalised units weighs a calm window as
    much as a volatile one; the evaluation's CRPS, in the data's scale, is dominated by
    the volatile ones, and this term says so to the network.

    Args:
        net: the network (its head samples).
        mu: ``(B, H, M)`` point forecast (normalised units).
        ctx: ``(B*H, C)`` head context.
        y: ``(B, H, M)`` targets (normalised units).
        weight: ``(B, M)`` scale of each window's normalised unit / training std.
        k: samples per forecast (>= 2).
        recentre: centre the samples on ``mu``, as forecasts are with ``recentre=True``.

    """
    b, h, m = y.shape
    r = net.head.sample(k, ctx)  # (B*H, k, M)
    if recentre:
        # Centring k draws shrinks each one's variance by (k - 1) / k; scaling back by
        # sqrt(k / (k - 1)) keeps the accuracy term unbiased (for a Gaussian, exactly),
        # so the minimum of the loss stays at the true spread, not ~23 % wider at k = 8.
        r = (r - r.mean(dim=1, keepdim=True)) * math.sqrt(k / (k - 1))
    x = mu.reshape(b * h, 1, m) + r
    yy = y.reshape(b * h, 1, m)
    acc = (x - yy).abs().mean(dim=1)  # (B*H, M)
    spread = (r[:, :, None] - r[:, None]).abs().sum(dim=(1, 2)) / (k * (k - 1))
    if recentre:
        spread = spread / math.sqrt(k / (k - 1))  # pairwise gaps are the raw draws' own
    crps = (acc - 0.5 * spread).reshape(b, h, m) * weight[:, None, :]
    return crps.mean()


@register_model
class HarmonyEstimator(Estimator):
    """Hierarchical multi-indicator transformer with a conditional flow head (deep ensemble).

    Trains :class:`HarmonyNet` members (see the module doc for the design).

    Params (units in brackets):
        d_model, n_heads, n_layers, d_ff, dropout: transformer size.
        context_dim: size of the head's context vector.
        head: ``"flow"`` or ``"gaussian"``.
        flow_layers, flow_hidden, flow_transform, flow_bins, flow_direction, tail_bound:
            flow head (``tail_bound`` in normalised units; see :class:`models.heads.FlowHead`).
        hierarchy: ``"mask"`` or ``"none"``; levels: {indicator: level} or None.
        mse_weight: weight of the point head's MSE next to the NLL.
        jitter: std of the training noise on targets [normalised units].
        clip: targets and inputs clipped to ±clip [normalised units].
        scale_floor: floor of the scale, times the training std of one-row changes.
        recentre: shift samples so their mean is the point head.
        target_scale: targets in units of the window's std of one-row changes (``"diff"``)
            or of its values (``"value"``).
        level_features: give each token the indicator's last value and window mean in
            units of its training mean and std (instance normalisation drops them).
        crps_weight: weight of the sample CRPS term next to the NLL (0 = NLL only).
        crps_samples: reparameterised samples per forecast for that term.
        members: networks in the deep ensemble (each its own seed; the forecast is the
            equal mixture of their samples). The wall-clock cap covers all of them.
        anchor: ``"gate"`` (point = learned mix of last value and window mean + correction),
            ``"gate-only"`` (the mix alone) or ``"last"`` (point = last value + correction).
        lr, weight_decay, batch_size, max_epochs, patience: optimisation.
        max_train_cpu_seconds: training budget of each member in CPU time of this process [s].
        max_train_seconds: wall-clock cap on the training loops of all members, checked
            after each epoch [s].
        max_windows: training windows kept per epoch (random subset) to bound time.
        num_threads: torch intra-op threads for training and sampling.
        mask_feature: each indicator token also reads which context rows were observed
            (1) and which imputed (0): missed scrapes are normal in production, and a held
            value is not a flat series.
        mask_augment: share of training windows given simulated gaps (runs of missing rows,
            imputed as at prediction) so the network learns what the mask means [0, 1).
        device: where training and sampling run: ``cpu`` (default), ``cuda``, ``cuda:N`` or
            ``auto`` (a GPU when present). Nothing requires a GPU; a saved model loads on the
            CPU where none is present.
    """

    name = "harmony"
    predictor_cls = HarmonyPredictor
    defaults = {
        "d_model": 64,
        "n_heads": 4,
        "n_layers": 2,
        "d_ff": 128,
        "dropout": 0.1,
        "context_dim": 64,
        "head": "flow",
        "flow_layers": 2,
        "flow_hidden": 64,
        "flow_transform": "spline",
        "flow_bins": 8,
        "flow_direction": "iaf",
        "tail_bound": 5.0,
        "hierarchy": "mask",
        "levels": None,
        "mse_weight": 1.0,
        "jitter": 0.05,
        "clip": 25.0,
        "scale_floor": 0.1,
        "recentre": True,
        "anchor": "gate-only",
        "level_features": True,
        "crps_weight": 5.0,
        "crps_samples": 8,
        "members": 3,
        "target_scale": "diff",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "max_epochs": 30,
        "patience": 5,
        "max_train_cpu_seconds": 150.0,
        "max_train_seconds": 270.0,
        "max_windows": 20000,
        "num_threads": 1,
        "mask_feature": True,
        "mask_augment": 0.3,
        "device": "cpu",
    }

    def _config(self, train: list[Series]) -> dict[str, Any]:
        ind = train[0].indicators
        cfg = self.base_config(ind, train[0].step)
        lv = cfg["levels"]
        if lv is None:
            cfg["levels"] = default_levels(ind)
        elif isinstance(lv, dict):
            cfg["levels"] = [int(lv.get(n, 2)) for n in ind]
        if cfg["head"] not in HEADS:
            raise ConfigError(f"head must be one of {sorted(HEADS)}, got {cfg['head']!r}")
        if int(cfg["members"]) < 1:
            raise ConfigError(f"members must be >= 1, got {cfg['members']}")
        if cfg["crps_weight"] > 0 and int(cfg["crps_samples"]) < 2:
            raise ConfigError(
                f"crps_samples must be >= 2 when crps_weight > 0, got {cfg['crps_samples']}"
            )
        return cfg

    def _train(self, train: list[Series], validation: list[Series]) -> HarmonyPredictor:
        with torch_threads(int(self.params["num_threads"])):
            return self._train_inner(train, validation)

    def _train_inner(self, train: list[Series], validation: list[Series]) -> HarmonyPredictor:
        cfg = self._config(train)
        p = cfg
        m = len(cfg["indicators"])

        d = np.concatenate([np.diff(s.values, axis=0) for s in train if len(s) > 1])
        floor = p["scale_floor"] * d.std(axis=0)
        allv = np.concatenate([s.values for s in train])
        floor = np.maximum(floor, 1e-6 * (np.abs(allv).mean(axis=0) + 1.0))

        pred = HarmonyPredictor(cfg)
        pred.state = {
            "floor": floor,
            "level_mu": allv.mean(axis=0),
            "level_sd": allv.std(axis=0) + floor,
        }

        gap_rng = np.random.default_rng(self.seed + 7919)

        def prep(series, augment: float):
            x, y, t = make_windows(series, self.context_length, self.prediction_length)
            observed = None
            if p.get("mask_feature", False):
                x, observed = simulate_gaps(x, augment, gap_rng)
            xz, ls, cal, loc, scale, obs = pred._tensors(x, t, observed)
            yz = (y - loc[:, None]) / scale[:, None]
            yz = torch.as_tensor(np.clip(yz, -p["clip"], p["clip"]), dtype=torch.float32)
            # Weight of each window's CRPS term: its target unit in units of the
            # indicator's training std, so the term is a CRPS in the data's own scale.
            wt = torch.as_tensor(scale / pred.state["level_sd"][None], dtype=torch.float32)
            return xz, ls, cal, yz, wt, obs

        dev = resolve_device(p.get("device", "cpu"), strict=True)
        pred.device = dev
        to_dev = lambda b: tuple(None if a is None else a.to(dev) for a in b)  # noqa: E731
        tr = to_dev(prep(train, float(p.get("mask_augment", 0.0))))
        va = to_dev(prep(validation, 0.0)) if validation else None
        # Each indicator's MSE is divided by its training second moment of the target, so
        # an indicator with rare large normalised jumps cannot dominate the shared weights.
        mse_norm = (tr[3] ** 2).mean(dim=(0, 1)).clamp_min(1e-4)  # (M,)
        members = int(p["members"])
        t_start = time.perf_counter()
        infos = []
        for i in range(members):
            # Each member: its own seed (initialisation, window order, jitter), the same
            # data; the wall-clock cap is shared, what is left split over those to come.
            left = p["max_train_seconds"] - (time.perf_counter() - t_start)
            if i > 0 and left <= 0:
                break  # out of wall-clock time: a smaller ensemble, said in the config
            net, info = self._fit_member(
                m, cfg, tr, va, mse_norm, self.seed + i, max(left, 0.0) / (members - i),
                member=f"member {i + 1}/{members}" if members > 1 else "",
            )
            pred.nets.append(net)
            pre = HarmonyPredictor.member_prefix(i)
            pred.state.update({f"{pre}{k}": v.detach().cpu().numpy().copy()
                               for k, v in net.state_dict().items()})
            infos.append(info)
            if members > 1:
                self._report("member", i + 1, members)
        pred.config["members"] = len(pred.nets)
        if members == 1:
            pred.fit_info.update(infos[0])
        else:
            pred.fit_info.update(
                {
                    "epochs": [f["epochs"] for f in infos],
                    "best_loss": [f["best_loss"] for f in infos],
                    "loss_history": [f["loss_history"] for f in infos],
                }
            )
        return pred

    def _fit_member(self, m, cfg, tr, va, mse_norm, seed: int, wall_s: float,
                    member: str = ""):
        """Train one network on prepared tensors; return it (best epoch) and its fit info.

        ``wall_s`` caps this member's wall-clock time; ``max_train_cpu_seconds`` its CPU time.
        ``member`` (``"member 2/3"``) goes with each epoch's progress event.
        """
        p = self.params
        torch.manual_seed(seed)
        dev = tr[0].device
        net = HarmonyNet(m, cfg).to(dev)
        rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])

        k_crps = int(p["crps_samples"])

        def loss_of(batch, noise: bool):
            xz, ls, cal, yz, wt, obs = batch
            mu, ctx = net.encode(xz, ls, cal, obs)  # (B, H, M), (B, H, C)
            target = yz + p["jitter"] * torch.randn_like(yz) if noise else yz
            resid = (target - mu.detach()).reshape(-1, m)  # (B*H, M)
            flat_ctx = ctx.reshape(resid.shape[0], -1)
            nll = -net.head.log_prob(resid, flat_ctx).mean() / m
            mse = (((mu - yz) ** 2) / mse_norm).mean()
            loss = nll + p["mse_weight"] * mse
            if p["crps_weight"] > 0:
                loss = loss + p["crps_weight"] * sample_crps(
                    net, mu, flat_ctx, yz, wt, k_crps, bool(p["recentre"])
                )
            return loss, nll.item(), mse.item()

        def val_loss() -> float:
            net.eval()
            tot, n = 0.0, 0
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(12345)
                for i in range(0, va[0].shape[0], 1024):
                    b = tuple(None if a is None else a[i : i + 1024] for a in va)
                    loss, _, _ = loss_of(b, noise=True)
                    tot += loss.item() * b[0].shape[0]
                    n += b[0].shape[0]
            net.train()
            return tot / n

        n_tr = tr[0].shape[0]
        best, best_state, bad, epochs = math.inf, None, 0, 0
        history = []
        t0, c0 = time.perf_counter(), time.process_time()
        net.train()
        self._report("epoch", 0, int(p["max_epochs"]), member)  # the member starts
        for epoch in range(int(p["max_epochs"])):
            order = rng.permutation(n_tr)[: int(p["max_windows"])]
            run = 0.0
            for i in range(0, order.size, int(p["batch_size"])):
                idx = torch.as_tensor(order[i : i + int(p["batch_size"])], device=dev)
                loss, _, _ = loss_of(tuple(None if a is None else a[idx] for a in tr),
                                     noise=True)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                run += loss.item() * idx.numel()
            epochs = epoch + 1
            vl = val_loss() if va is not None else run / order.size
            history.append(round(vl, 5))
            self._report("epoch", epochs, int(p["max_epochs"]), member)
            if vl < best - 1e-4:
                best, bad = vl, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
            out_of_time = (
                time.perf_counter() - t0 > wall_s
                or time.process_time() - c0 > p["max_train_cpu_seconds"]
            )
            if bad >= int(p["patience"]) or out_of_time:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net, {"epochs": epochs, "best_loss": round(best, 5), "loss_history": history}

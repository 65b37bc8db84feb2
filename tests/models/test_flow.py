"""Flow head: forward/inverse consistency (nflows TransformTest style), heads, hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.harmony import (
    HarmonyEstimator,
    HarmonyNet,
    HarmonyPredictor,
    default_levels,
    hierarchy_mask,
    n_stats,
    sample_crps,
)
from models.heads import HEADS, FlowHead
from tests.models.conftest import TINY


@pytest.mark.parametrize("transform", ["spline", "affine"])
@pytest.mark.parametrize("direction", ["iaf", "maf"])
@pytest.mark.parametrize("m", [1, 4])
def test_flow_forward_inverse_consistency(transform, direction, m):
    torch.manual_seed(0)
    head = FlowHead(
        m,
        6,
        num_layers=2,
        hidden_features=8,
        transform=transform,
        num_bins=4,
        tail_bound=3.0,
        direction=direction,
    )
    x = torch.randn(16, m) * 2.0  # some values beyond the tail bound
    c = torch.randn(16, 6)
    tr = head.flow._transform
    with torch.no_grad():
        u, ld = tr(x, context=c)
        back, ld_inv = tr.inverse(u, context=c)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ld + ld_inv, torch.zeros(16), atol=1e-4, rtol=0)
    lp = head.log_prob(x, c)
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    s = head.sample(7, c)
    assert s.shape == (16, 7, m) and torch.isfinite(s).all()


def test_flow_density_integrates_to_one_in_1d():
    torch.manual_seed(1)
    head = FlowHead(1, 3, num_layers=2, hidden_features=8, num_bins=4, tail_bound=3.0)
    c = torch.randn(1, 3).repeat(4001, 1)
    grid = torch.linspace(-15, 15, 4001)[:, None]
    with torch.no_grad():
        p = head.log_prob(grid, c).exp()
    assert float(torch.trapezoid(p, grid[:, 0])) == pytest.approx(1.0, abs=1e-2)


def test_gaussian_head_is_swappable():
    g = HEADS["gaussian"](3, 5)
    x, c = torch.randn(4, 3), torch.randn(4, 5)
    assert g.log_prob(x, c).shape == (4,)
    assert g.sample(6, c).shape == (4, 6, 3)


def test_default_levels_and_mask():
    names = ("load", "cpu.busy", "mem.memused", "blkio.read", "net.if.in.bytes")
    assert default_levels(names) == [0, 1, 1, 2, 2]
    mask = hierarchy_mask([0, 1, 2], 1, "mask")
    allowed = torch.isfinite(mask)
    # row = query: level-2 sees everything; level-0 sees itself and the calendar only
    assert allowed[2].tolist() == [True, True, True, True]
    assert allowed[0].tolist() == [True, False, False, True]
    assert allowed[3].all()  # calendar token attends to all
    assert torch.isfinite(hierarchy_mask([0, 1, 2], 1, "none")).all()


def test_top_level_forecast_ignores_lower_levels_under_the_mask():
    est = HarmonyEstimator(8, 2, **TINY["harmony"])
    cfg = est.base_config(("load", "cpu", "net"), 600.0)
    cfg["levels"] = [0, 1, 2]
    torch.manual_seed(0)
    net = HarmonyNet(3, cfg).eval()
    xz, ls, cal = torch.randn(2, 8, 3), torch.randn(2, 3, n_stats(cfg)), torch.randn(2, 10, 4)
    xz2 = xz.clone()
    xz2[:, :, 2] += 5.0  # change only the level-2 indicator
    with torch.no_grad():
        mu1, _ = net.encode(xz, ls, cal)
        mu2, _ = net.encode(xz2, ls, cal)
    torch.testing.assert_close(mu1[..., 0], mu2[..., 0])  # load (top) unaffected
    assert not torch.allclose(mu1[..., 2], mu2[..., 2])
    cfg["hierarchy"] = "none"
    net = HarmonyNet(3, cfg).eval()
    with torch.no_grad():
        assert not torch.allclose(
            net.encode(xz, ls, cal)[0][..., 0], net.encode(xz2, ls, cal)[0][..., 0]
        )


def test_harmony_learns_a_bimodal_indicator():
    """A two-level switching series: the flow's samples should put mass near both levels."""
    from models.data import Series

    rng = np.random.default_rng(0)
    n = 1500
    v = np.where(rng.random(n) < 0.5, 1.0, 0.0)[:, None] + 0.001 * rng.normal(size=(n, 1))
    s = Series(v, 600.0 * np.arange(n), ("blkio",))
    est = HarmonyEstimator(
        16,
        1,
        num_samples=200,
        calibrate=False,
        **{**TINY["harmony"], "max_epochs": 6, "flow_bins": 8},
    )
    pred = est.fit(s)
    (f,) = pred.predict(Series(v[-50:], s.ts[-50:], ("blkio",)))
    x = f.samples[:, 0, 0]
    near = (np.abs(x) < 0.25).mean() + (np.abs(x - 1) < 0.25).mean()
    assert near > 0.6, np.quantile(x, [0.1, 0.3, 0.5, 0.7, 0.9])
    assert 0.2 < f.mean[0, 0] < 0.8


def test_harmony_with_gaussian_head_fits_saves_and_predicts(tmp_path):
    from models.base import Predictor
    from tests.models.conftest import make_series

    est = HarmonyEstimator(
        12,
        2,
        num_samples=100,
        head="gaussian",
        **{k: v for k, v in TINY["harmony"].items() if k != "flow_bins"},
    )
    pred = est.fit(make_series(150, seed=1), make_series(60, seed=2))
    back = Predictor.load(pred.save(tmp_path / "g"))
    assert back == pred and back.config["head"] == "gaussian"
    (f,) = back.predict(make_series(40, seed=3))
    assert f.samples.shape == (100, 2, 3) and np.isfinite(f.samples).all()


def test_sample_crps_is_the_fair_crps_of_the_head_samples_and_trains_the_flow():
    est = HarmonyEstimator(8, 2, **TINY["harmony"])
    cfg = est.base_config(("load", "cpu"), 600.0)
    cfg["levels"] = [0, 1]
    torch.manual_seed(0)
    net = HarmonyNet(2, cfg)
    b, h, m, k = 3, 2, 2, 6
    mu = torch.randn(b, h, m)
    ctx = torch.randn(b * h, cfg["context_dim"])
    y = torch.randn(b, h, m)
    w = torch.rand(b, m) + 0.5
    torch.manual_seed(7)
    got = sample_crps(net, mu, ctx, y, w, k, recentre=False)
    torch.manual_seed(7)
    with torch.no_grad():
        x = mu.reshape(b * h, 1, m) + net.head.sample(k, ctx)  # same draws
    x, yy = x.numpy(), y.reshape(b * h, m).numpy()
    acc = np.abs(x - yy[:, None]).mean(axis=1)
    pairs = np.abs(x[:, :, None] - x[:, None]).sum(axis=(1, 2)) / (k * (k - 1))
    want = ((acc - 0.5 * pairs).reshape(b, h, m) * w.numpy()[:, None]).mean()
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-5)
    got.backward()  # reparameterised: the flow's own weights get a gradient
    grads = [p.grad for p in net.head.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_level_features_let_the_network_see_the_absolute_level():
    """Two windows of the same shape at different levels: identical forecasts after instance
    normalisation alone, different ones once the level is a token feature."""
    from tests.models.conftest import make_series

    train = make_series(200, seed=1)
    x = make_series(40, seed=3).values[-12:][None]  # (1, L, M)
    x2 = np.concatenate([x, x + 0.5 * np.abs(x).max()])
    t = 600.0 * np.arange(13)[None].repeat(2, axis=0)
    means = {}
    for level in (False, True):
        est = HarmonyEstimator(
            12, 1, calibrate=False, level_features=level, **{**TINY["harmony"], "max_epochs": 1}
        )
        pred = est.fit(train)
        xz, stats, cal, loc, scale, _ = pred._tensors(x2, t)
        assert stats.shape[-1] == n_stats(pred.config)
        with torch.no_grad():
            mu, _ = pred.net.encode(xz, stats, cal)
        means[level] = mu
    torch.testing.assert_close(means[False][0], means[False][1])
    assert not torch.allclose(means[True][0], means[True][1])


def test_ensemble_mixes_its_members_and_round_trips(tmp_path):
    from models.base import Predictor
    from tests.models.conftest import make_series

    est = HarmonyEstimator(12, 2, num_samples=101, **{**TINY["harmony"], "members": 2})
    pred = est.fit(make_series(150, seed=1), make_series(60, seed=2))
    assert len(pred.nets) == 2 and len(pred.fit_info["epochs"]) == 2
    assert any(k.startswith("net1.") for k in pred.state)
    p0, p1 = (dict(n.named_parameters()) for n in pred.nets)
    assert not torch.equal(p0["ind_embed"], p1["ind_embed"])  # different seeds
    back = Predictor.load(pred.save(tmp_path / "ens"))
    assert back == pred and len(back.nets) == 2
    s = make_series(40, seed=3)
    (f,) = back.predict(s)
    assert f.samples.shape == (101, 2, 3) and np.isfinite(f.samples).all()
    # the mixture: member 0 alone (a one-member predictor with the same weights) differs
    solo = HarmonyPredictor({**back.config, "members": 1}, dict(back.state))
    (g,) = solo.predict(s)
    assert not np.allclose(f.mean, g.mean)


def test_ensemble_members_must_be_positive():
    from common.errors import ConfigError
    from tests.models.conftest import make_series

    est = HarmonyEstimator(12, 1, **{**TINY["harmony"], "members": 0})
    with pytest.raises(ConfigError, match="members"):
        est.fit(make_series(150, seed=1))


class _GaussianDraws:
    """Stand-in for a network whose head draws N(0, sigma^2) for every forecast."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.head = self

    def sample(self, k: int, ctx: torch.Tensor) -> torch.Tensor:
        return self.sigma * torch.randn(ctx.shape[0], k, 1)


@pytest.mark.parametrize("recentre", [True, False])
def test_sample_crps_is_smallest_at_the_true_spread(recentre):
    """y ~ N(0, 1) and forecasts mu = 0 + sigma * draws: the expected loss must be least at
    sigma = 1 (a proper score). Centring k = 8 draws without the k/(k-1) correction would
    put the minimum near sigma = 1.23."""
    n, k = 200_000, 8
    torch.manual_seed(3)
    y = torch.randn(n, 1, 1)
    mu, w = torch.zeros(n, 1, 1), torch.ones(n, 1)
    losses = {}
    for sigma in (0.8, 1.0, 1.25):
        torch.manual_seed(4)
        ctx = torch.zeros(n, 1)
        losses[sigma] = float(sample_crps(_GaussianDraws(sigma), mu, ctx, y, w, k, recentre))
    assert min(losses, key=losses.get) == 1.0, losses


def test_crps_term_needs_two_samples():
    from common.errors import ConfigError
    from tests.models.conftest import make_series

    est = HarmonyEstimator(12, 1, **{**TINY["harmony"], "crps_samples": 1})
    with pytest.raises(ConfigError, match="crps_samples"):
        est.fit(make_series(150, seed=1))


def test_a_model_saved_before_level_features_and_ensembles_still_loads(tmp_path):
    """Artifacts written before these knobs existed have neither the config keys nor the
    level state; they must load as the single instance-normalised network they were."""
    from models.base import Predictor
    from tests.models.conftest import make_series

    est = HarmonyEstimator(
        12, 1, calibrate=False, **{**TINY["harmony"], "level_features": False, "crps_weight": 0}
    )
    pred = est.fit(make_series(150, seed=1))
    s = make_series(40, seed=3)
    (want,) = pred.predict(s)
    old_cfg = {
        k: v
        for k, v in pred.config.items()
        if k not in ("level_features", "members", "crps_weight", "crps_samples")
    }
    old_state = {k: v for k, v in pred.state.items() if not k.startswith("level_")}
    old = HarmonyPredictor(old_cfg, old_state)
    back = Predictor.load(old.save(tmp_path / "old"))
    assert len(back.nets) == 1
    (got,) = back.predict(s)
    np.testing.assert_allclose(got.samples, want.samples)


def test_missing_rows_are_imputed_and_the_mask_reaches_the_network():
    """Missed scrapes: harmony forecasts from a context with gaps (no fallback), and the mask
    of imputed rows is an input, so the same imputed values read differently when the
    network knows they were held."""
    from models.data import make_windows
    from models.harmony import simulate_gaps
    from tests.models.conftest import make_series

    s = make_series(300)
    est = HarmonyEstimator(16, 4, **{**TINY["harmony"], "max_epochs": 1})
    pred = est.fit([s])
    assert pred.reads_mask and pred.config["mask_feature"] is True
    x, _, t = make_windows([s], 16, 4)
    x, t = x[-1:].copy(), t[-1:]
    gappy = x.copy()
    gappy[0, [3, 4, 5, 11], :] = np.nan  # 25 % missing: imputed, not a fallback
    out = pred.predict_windows(gappy, t, num_samples=20, seed=1)[0]
    assert not out.model.startswith("fallback") and np.isfinite(out.samples).all()
    # the same filled values, told they were observed, give another forecast
    from models.base import fill_gaps

    told = pred.predict_windows(fill_gaps(gappy[0])[None], t, num_samples=20, seed=1)[0]
    assert not np.allclose(out.samples, told.samples)
    # the network's token input depends on the mask
    xz, ls, cal, *_ = pred._tensors(fill_gaps(gappy[0])[None], t)
    ones = torch.ones_like(xz)
    holes = ones.clone()
    holes[0, [3, 4, 5, 11], :] = 0.0
    with torch.no_grad():
        assert not torch.allclose(pred.net.encode(xz, ls, cal, ones)[0],
                                  pred.net.encode(xz, ls, cal, holes)[0])
    # training augmentation: gaps in about the asked share of windows, imputed, last row kept
    rng = np.random.default_rng(0)
    xs, _, _ = make_windows([s], 16, 4)
    filled, obs = simulate_gaps(xs, 0.3, rng)
    damaged = (obs == 0).any(axis=(1, 2))
    assert 0.2 < damaged.mean() < 0.4 and np.isfinite(filled).all()
    assert np.array_equal(filled[~damaged], xs[~damaged])
    assert (obs == 0).mean(axis=1).max() <= 0.4 + 1e-9


def test_a_model_saved_without_the_mask_feature_still_loads_and_forecasts(tmp_path):
    from tests.models.conftest import make_series

    s = make_series(200)
    pred = HarmonyEstimator(16, 4, **{**TINY["harmony"], "max_epochs": 1,
                                      "mask_feature": False}).fit([s])
    assert not pred.reads_mask
    pred.save(tmp_path / "m")
    back = HarmonyPredictor.load(tmp_path / "m")
    assert not back.reads_mask
    assert np.isfinite(back.predict([s], num_samples=10)[0].samples).all()


def test_device_setting_cpu_by_default_and_a_missing_gpu_is_a_clear_error(tmp_path):
    from common.errors import ConfigError
    from models.harmony import resolve_device
    from tests.models.conftest import make_series

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N or auto"):
        resolve_device("tpu")
    if torch.cuda.is_available():  # pragma: no cover - no GPU on the CI machine
        pytest.skip("a GPU is present: the refusal below cannot be shown")
    with pytest.raises(ConfigError, match="no usable GPU"):
        resolve_device("cuda")
    # training asks strictly; a saved model that names a GPU loads on the CPU
    s = make_series(150)
    with pytest.raises(ConfigError, match="no usable GPU"):
        HarmonyEstimator(16, 4, **{**TINY["harmony"], "max_epochs": 1, "device": "cuda"}).fit([s])
    pred = HarmonyEstimator(16, 4, **{**TINY["harmony"], "max_epochs": 1}).fit([s])
    assert pred.config["device"] == "cpu"
    import json

    pred.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    doc["config"]["device"] = "cuda"  # trained on a GPU machine
    (tmp_path / "m" / "config.json").write_text(json.dumps(doc))
    back = HarmonyPredictor.load(tmp_path / "m")
    assert back.device.type == "cpu"
    assert np.isfinite(back.predict([s], num_samples=5)[0].samples).all()


@pytest.mark.parametrize("chunk_rows", [1, 7, 40, 64, 10_000])
def test_flow_samples_in_chunks_are_the_draws_of_one_pass(chunk_rows):
    # chunking only splits the transform's work: the base noise is drawn once, so the
    # draws match the unchunked call's up to float32 rounding in the transforms
    torch.manual_seed(0)
    head = FlowHead(3, 6, num_layers=2, hidden_features=8, num_bins=4, tail_bound=3.0)
    c = torch.randn(11, 6)
    with torch.no_grad():
        torch.manual_seed(5)
        whole = head.sample(9, c)  # (11, 9, 3)
        torch.manual_seed(5)
        parts = head.sample(9, c, chunk_rows=chunk_rows)
    assert parts.shape == whole.shape == (11, 9, 3)
    assert torch.allclose(parts, whole, rtol=0, atol=1e-5)
    # and a different seed really draws differently (the comparison can fail)
    with torch.no_grad():
        torch.manual_seed(6)
        other = head.sample(9, c, chunk_rows=chunk_rows)
    assert not torch.allclose(other, whole, rtol=0, atol=1e-3)


def test_harmony_batch_equals_per_series_and_chunking_changes_no_draw(monkeypatch):
    import models.harmony as harmony
    from tests.models.conftest import make_series

    est = HarmonyEstimator(12, 3, num_samples=50, **{**TINY["harmony"], "members": 2})
    pred = est.fit(make_series(150, seed=1), make_series(60, seed=2))
    many = [make_series(40 + i, seed=10 + i, entity=f"e{i}") for i in range(6)]
    batch = pred.predict_batch(many)
    # the batched path gives each series its per-series forecast: the point forecast
    # (the samples' mean, recentred) exactly up to float32 batch rounding; the draws
    # themselves come from the batch's noise stream
    for s, b in zip(many, batch, strict=True):
        (alone,) = pred.predict_outcomes(s)
        assert b.samples.shape == alone.samples.shape == (50, 3, 3)
        np.testing.assert_allclose(b.mean, alone.mean, rtol=1e-5, atol=1e-6)
        assert b.start == alone.start and b.step == alone.step
    # sampling the flow in small chunks gives the draws of one pass over the batch
    monkeypatch.setattr(harmony, "SAMPLE_CHUNK_ROWS", 7)
    chunked = pred.predict_batch(many)
    monkeypatch.setattr(harmony, "SAMPLE_CHUNK_ROWS", None)
    whole = pred.predict_batch(many)
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(a.samples, b.samples, rtol=1e-5, atol=1e-5)
    assert not np.allclose(whole[0].samples, whole[1].samples)

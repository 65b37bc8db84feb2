"""Distribution heads: the network emits a context vector, the head owns the distribution.

Each head models a joint vector ``z (B, M)`` (all indicators of one horizon step) given
a context ``c (B, C)``; it provides ``log_prob(z, c) -> (B,)`` (the training loss is its
negative mean) and ``sample(n, c) -> (B, n, M)``. Swapping heads changes no model code.

* ``gaussian``: a conditional diagonal Gaussian (nflows ``ConditionalDiagonalNormal``
  whose mean and log-std are a linear projection of the context): HARMONY's Gaussian
  projection on its own.
* ``flow``: that Gaussian projection as the base of a conditional normalizing flow
  (nflows ``Flow``): ``num_layers`` masked autoregressive transforms, piecewise
  rational-quadratic splines (``transform="spline"``, linear tails beyond
  ``±tail_bound``) or affine (``transform="affine"``), used in the inverse-autoregressive
  direction by default (one pass to sample), each followed by a reversal of the
  indicator order, all conditioned on the context. It turns the Gaussian into a skewed,
  heavy-tailed or multi-modal joint distribution across indicators.
"""

from __future__ import annotations

import torch
from nflows.distributions.normal import ConditionalDiagonalNormal
from nflows.flows.base import Flow
from nflows.transforms.autoregressive import (
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
)
from nflows.transforms.base import CompositeTransform, InverseTransform
from nflows.transforms.permutations import ReversePermutation
from torch import nn


class GaussianHead(nn.Module):
    """Conditional diagonal Gaussian over the M indicators."""

    def __init__(self, features: int, context_features: int, **_: object) -> None:
        super().__init__()
        self.dist = ConditionalDiagonalNormal(
            shape=[features], context_encoder=nn.Linear(context_features, 2 * features)
        )

    def log_prob(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Log density of ``z (B, M)`` given ``context (B, C)``, ``(B,)``."""
        return self.dist.log_prob(z, context=context)

    def sample(self, num_samples: int, context: torch.Tensor,
               chunk_rows: int | None = None) -> torch.Tensor:
        """``(B, n, M)`` samples given ``context (B, C)`` (``chunk_rows``: see FlowHead)."""
        return self.dist.sample(num_samples, context=context)


class FlowHead(nn.Module):
    """Conditional normalizing flow on a conditional Gaussian base (see module doc).

    Args:
        features: M, the indicators of one step.
        context_features: C, the size of the context vector.
        num_layers: autoregressive transforms.
        hidden_features: width of each transform's MADE network.
        transform: ``"spline"`` (rational-quadratic) or ``"affine"``.
        num_bins: spline bins.
        tail_bound: the spline acts on ``[-tail_bound, tail_bound]`` (normalised units);
            identity (linear tails) outside.
        direction: ``"iaf"`` (fast sampling, the default) or ``"maf"`` (fast density).

    """

    def __init__(
        self,
        features: int,
        context_features: int,
        num_layers: int = 2,
        hidden_features: int = 64,
        transform: str = "spline",
        num_bins: int = 8,
        tail_bound: float = 5.0,
        direction: str = "iaf",
        **_: object,
    ) -> None:
        super().__init__()
        if direction not in ("iaf", "maf"):
            raise ValueError(f"flow direction must be 'iaf' or 'maf', got {direction!r}")
        layers = []
        for _i in range(num_layers):
            if transform == "spline":
                layers.append(
                    MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                        features=features,
                        hidden_features=hidden_features,
                        context_features=context_features,
                        num_bins=num_bins,
                        tails="linear",
                        tail_bound=tail_bound,
                        num_blocks=2,
                    )
                )
            elif transform == "affine":
                layers.append(
                    MaskedAffineAutoregressiveTransform(
                        features=features,
                        hidden_features=hidden_features,
                        context_features=context_features,
                        num_blocks=2,
                    )
                )
            else:
                raise ValueError(f"unknown flow transform {transform!r} (spline or affine)")
            if direction == "iaf":
                # Sampling runs the autoregressive net forward once; the density (training)
                # takes M sequential passes. Forecasting draws S >= 100 samples per window,
                # so this is the cheaper direction overall (MAF is the reverse trade-off).
                layers[-1] = InverseTransform(layers[-1])
            if features > 1:
                layers.append(ReversePermutation(features))
        base = ConditionalDiagonalNormal(
            shape=[features], context_encoder=nn.Linear(context_features, 2 * features)
        )
        self.flow = Flow(CompositeTransform(layers), base)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Log density of ``z (B, M)`` given ``context (B, C)``, ``(B,)``."""
        return self.flow.log_prob(z, context=context)

    def sample(self, num_samples: int, context: torch.Tensor,
               chunk_rows: int | None = None) -> torch.Tensor:
        """``(B, n, M)`` samples given ``context (B, C)``.

        ``chunk_rows``: push the ``B * n`` draws through the flow about this many rows at a
        time (whole contexts per chunk; None: all at once). The base noise is drawn for the
        whole batch first, in one call, so the random stream, and so the draws, are those
        of the unchunked call; only float32 rounding in the transforms may differ. Why: the
        daemon samples 400 windows x 20 steps x ~34 draws = 272,000 rows per member, and
        the spline transforms' intermediates (tens of MB each) then live in fresh pages
        rather than the cache; chunks of ~4,096 rows halved the head's CPU time at that size
        (``docs/daemon-bench.md``, "Sampling the flow in chunks").
        """
        if chunk_rows is None or context.shape[0] * num_samples <= chunk_rows:
            return self.flow.sample(num_samples, context=context)
        flow = self.flow
        emb = flow._embedding_net(context)  # (B, C)
        noise = flow._distribution.sample(num_samples, context=emb)  # (B, n, M)
        step = max(1, chunk_rows // num_samples)  # contexts per chunk
        parts = []
        for i in range(0, emb.shape[0], step):
            z = noise[i:i + step]  # (b, n, M)
            ctx = emb[i:i + step].repeat_interleave(num_samples, dim=0)  # (b * n, C)
            out, _ = flow._transform.inverse(z.reshape(-1, z.shape[-1]), context=ctx)
            parts.append(out.reshape(z.shape))
        return torch.cat(parts)  # (B, n, M)


HEADS: dict[str, type[nn.Module]] = {"flow": FlowHead, "gaussian": GaussianHead}

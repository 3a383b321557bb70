"""GNIME training (Phase I, Algorithm 1) and deployment (Phase II), following the release.

Per step (a batch drawn without replacement, drawn independently between steps):

    e~     = (e - mu) / sigma                      mu, sigma: global mean and std of the target-half maps
    n      = NG(e~, y_hat)                         the NG outputs the whole map, not a residual
    L_dist = mean((n - e~)^2)                      standardised units, before clipping
    e_hat  = clip(sigma * n + mu, 0, 1)            the released map
    L_adv  = mean((INV(e_hat, y_hat) - x)^2)       variant 'paper'; 'one-scale': INV((e_hat - mu)/sigma, y_hat)
    L_INV  = L_adv + mean((INV(e~, y_hat) - x)^2)
    L_NG   = L_dist - lambda * L_adv

Both gradients come from ONE forward pass (one NG forward, two INV forwards) and ONE backward:
a gradient-scaling function between e_hat and INV multiplies the gradient reaching the NG
through L_adv by -lambda, so backpropagating L_adv + L_clean + L_dist gives INV exactly
grad L_INV and NG exactly grad L_NG. INV steps first, then NG (the gradients were both taken
before either step: simultaneous updates). Two Adam optimisers, lr 1e-4, default betas, eps 1e-7,
with Keras' placement of epsilon (gnime_ray/optim.py).
y_hat is the target's raw logit vector.

Variants (``GnimeConfig.variant``), compared with the release on identical weights by
benchmarks/check_release.py:
- ``paper`` (the default): INV exactly as the release feeds it, the clean map standardised and the
  noisy map e_hat in [0, 1] (the scales differ: a bug of the release's ``GNIME.loss``, but what
  produced the paper's numbers, so the paper's operating point is reproduced with it);
- ``one-scale``: INV sees both on the standardised scale, INV((e_hat - mu)/sigma) (the release with
  that one line changed; gnime_ray's default before, kept to measure the difference).
OND attacks GNIME's INV with the noisy input on the scale INV was trained on (``inv_noisy_input``).

An epoch (``GnimeConfig.steps_per_epoch``): the release's training scripts run N // batch steps
per epoch (``steps_per_epoch = number_of_samples // batch_size``; MNIST: 35,000 // 1024 = 34 steps,
17,000 in 500 epochs; CelebA: 117 steps), each a batch drawn without replacement; None here means
that (at least one step); an integer gives that many steps per epoch (1 = one batch per epoch, the
reading of the paper's Algorithm 1 gnime_ray used before). Losses in the history are each epoch's
means over its steps, as the release prints them.

Deviation: sigma is the sample standard deviation (ddof 1; the release's ``np.std``: ddof 0): a
relative difference of 1/(2n), below 1e-7 for any real training set.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .. import TrainingDiverged, echo, time_left
from ..config import positive_finite
from ..data.host_rows import HostRows, rows_of, to_device
from ..models import UNet
from ..optim import KerasAdam
from ..models.training_format import Speed

Log = Callable[[str], None]


GNIME_VARIANTS = ("paper", "one-scale")  # module docstring


@dataclass(frozen=True)
class GnimeConfig:
    """GNIME training knobs. ``ng_width`` is the NG capacity (1 = the release); ``inv_width``
    scales INV (1 = the release). ``epochs`` of ``steps_per_epoch`` sampled batches each (None: N //
    batch_size, the release); ``variant``: how INV is fed (module docstring)."""

    lam: float = 100.0
    ng_width: float = 1.0
    inv_width: float = 1.0
    epochs: int = 500
    batch_size: int = 1024
    lr: float = 1e-4
    seed: int = 0
    bf16: bool = False
    steps_per_epoch: Optional[int] = None
    variant: str = "paper"

    def __post_init__(self) -> None:
        if self.variant not in GNIME_VARIANTS:
            raise ValueError(f"GNIME variant must be one of {', '.join(GNIME_VARIANTS)}, got {self.variant!r}")
        if self.steps_per_epoch is not None and not (isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1):
            raise ValueError(f"steps_per_epoch must be None or an integer >= 1, got {self.steps_per_epoch!r}")
        for name in ("lam", "ng_width", "inv_width", "lr"):
            v = getattr(self, name)
            if not positive_finite(v):
                raise ValueError(f"{'lambda' if name == 'lam' else name} must be a finite number > 0, got {v!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


@dataclass
class GnimeModel:
    """A trained (or training) GNIME: NG, INV and the standardisation constants."""

    ng: UNet
    inv: UNet
    mu: float
    sigma: float
    config: GnimeConfig
    history: dict[str, list[float]] = field(default_factory=dict)

    def standardise(self, e: torch.Tensor) -> torch.Tensor:
        return (e - self.mu) / self.sigma

    def inv_noisy_input(self, e_hat: torch.Tensor) -> torch.Tensor:
        """What INV takes for a noisy map e_hat in [0, 1]: e_hat itself (variant 'paper', as the
        release) or standardised (variant 'one-scale')."""
        return e_hat if self.config.variant == "paper" else self.standardise(e_hat)

    @torch.no_grad()
    def release(self, e: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Phase II. e: (N, C', H', W') clean maps in [0, 1]; y: (N, K) logits -> e_hat, float32,
        same shape, in [0, 1], on e's device (computed batch by batch on the NG's device)."""
        self.ng.eval()
        dev = next(self.ng.parameters()).device
        out = []
        for i in range(0, e.shape[0], batch_size):
            eb, yb = to_device(e[i:i + batch_size].float(), dev), to_device(y[i:i + batch_size].float(), dev)
            n = self.ng(self.standardise(eb), yb)
            out.append((self.sigma * n + self.mu).clamp(0, 1).to(e.device))
        return torch.cat(out)

    def state(self) -> dict[str, Any]:
        """A checkpoint of tensors and plain types (loadable with weights_only=True)."""
        return {"ng": {k: v.detach().cpu().clone() for k, v in self.ng.state_dict().items()},
                "inv": {k: v.detach().cpu().clone() for k, v in self.inv.state_dict().items()},
                "mu": float(self.mu), "sigma": float(self.sigma), "config": asdict(self.config),
                "history": {k: list(map(float, v)) for k, v in self.history.items()},
                "map_shape": list(self.ng.in_shape), "image_shape": list(self.inv.out_shape),
                "num_classes": self.ng.num_classes}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> "GnimeModel":
        # states written before these fields existed were trained one batch per epoch, on one scale
        cfg = GnimeConfig(**{"steps_per_epoch": 1, "variant": "one-scale", **state["config"]})
        ng, inv = build_networks(tuple(state["map_shape"]), tuple(state["image_shape"]), state["num_classes"], cfg)
        ng.load_state_dict(state["ng"])
        inv.load_state_dict(state["inv"])
        return cls(ng.to(device).eval(), inv.to(device).eval(), state["mu"], state["sigma"], cfg,
                   {k: list(v) for k, v in state["history"].items()})


def build_networks(map_shape: tuple[int, int, int], image_shape: tuple[int, int, int], num_classes: int,
                   cfg: GnimeConfig) -> tuple[UNet, UNet]:
    """NG = builder(map -> map) at ``ng_width``; INV = builder(map -> image) at ``inv_width``; both
    initialised, NG first, from one generator seeded with ``cfg.seed`` (models/initialisation.py)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return (UNet(map_shape, map_shape, num_classes, width=cfg.ng_width, generator=gen),
            UNet(map_shape, image_shape, num_classes, width=cfg.inv_width, generator=gen))


def gnime_step(model: GnimeModel, opt_ng: torch.optim.Optimizer, opt_inv: torch.optim.Optimizer,
               e_std: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """One simultaneous GNIME update on a batch. e_std: standardised clean maps (B, C', H', W');
    y: logits (B, K); x: images (B, C, H, W) in [0, 1]. Returns the batch's losses."""
    cfg = model.config
    dev_type = x.device.type
    amp = torch.autocast(dev_type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    with amp:
        n = model.ng(e_std, y)
        l_dist = F.mse_loss(n.float(), e_std)
        e_hat = (model.sigma * n.float() + model.mu).clamp(0, 1)
        x_adv = model.inv(_ScaleGrad.apply(model.inv_noisy_input(e_hat), -cfg.lam), y)
        x_clean = model.inv(e_std, y)
        l_adv = F.mse_loss(x_adv.float(), x)
        l_clean = F.mse_loss(x_clean.float(), x)
    opt_inv.zero_grad(set_to_none=True)
    opt_ng.zero_grad(set_to_none=True)
    (l_adv + l_clean + l_dist).backward()
    opt_inv.step()
    opt_ng.step()
    l_adv_v, l_dist_v = l_adv.item(), l_dist.item()
    return {"l_adv": l_adv_v, "l_clean": l_clean.item(), "l_dist": l_dist_v,
            "l_inv": l_adv_v + l_clean.item(), "l_ng": l_dist_v - cfg.lam * l_adv_v}


def make_optimisers(model: GnimeModel) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(opt_ng, opt_inv): Keras' Adam (optim.py), lr from the config, default betas, eps 1e-7."""
    lr = model.config.lr
    return KerasAdam(model.ng.parameters(), lr=lr), KerasAdam(model.inv.parameters(), lr=lr)


def map_stats(maps: HostRows, chunk: int = 4096) -> tuple[float, float]:
    """(mean, standard deviation with ddof 1) of every value of the maps: the release's global mu
    and sigma of the target-half explanations. Read in chunks and accumulated in float64 (two
    passes), so the whole array is never in memory; a float32 reduction over the whole array gives
    the same numbers up to float32 rounding (and ddof 1 vs 0 differs by a relative 1/(2n))."""
    n, total = 0, 0.0
    for pos in maps.chunks(chunk):
        block = maps.take(pos).double()
        total += block.sum().item()
        n += block.numel()
    mu = total / n
    ss = sum(((maps.take(pos).double() - mu) ** 2).sum().item() for pos in maps.chunks(chunk))
    return mu, math.sqrt(ss / (n - 1))


def train_gnime(maps: torch.Tensor | HostRows, logits: torch.Tensor | HostRows, images: torch.Tensor | HostRows,
                cfg: GnimeConfig, device: torch.device | str = "cpu", log: Log = echo, log_every: int = 10,
                on_epoch: Optional[Callable[[int, dict[str, float], Callable[[], dict]], None]] = None,
                resume: Optional[dict[str, Any]] = None, speed: Optional[Speed] = None) -> GnimeModel:
    """Phase I on the target half.

    maps: (N, C', H', W') clean maps in [0, 1] (float16 or float32) of the target model; logits:
    (N, K) float32; images: (N, C, H, W) uint8 (or float32 in [0, 1]); each a tensor or HostRows
    (rows of a memory-mapped array). Only one batch at a time is read and moved to ``device``:
    the device holds the networks and a batch, whatever N. Returns the trained GnimeModel with
    per-epoch losses in ``history``. ``on_epoch(epoch, losses, training_state)`` is called after
    every epoch; ``training_state()`` returns everything needed to continue (weights, both
    optimisers, the batch sampler, the history), which ``resume`` accepts: a resumed run ends
    exactly where an uninterrupted one would. An epoch is ``cfg.steps_per_epoch`` steps (None: N //
    batch size, the release; module docstring). ``speed``: the memory format of the networks and
    batches (gnime_ray/models/training_format.py; default contiguous). Raises TrainingDiverged as soon as a loss is
    not finite (the weights are then meaningless: nothing is returned or cached)."""
    device = torch.device(device)
    maps, logits, images = rows_of(maps), rows_of(logits), rows_of(images)
    mu, sigma = map_stats(maps)
    if not sigma > 0:
        raise ValueError("the maps are constant: GNIME needs maps with a non-zero standard deviation")
    speed = speed or Speed(False, cfg.bf16, "default")
    ng, inv = build_networks(maps.row_shape, images.row_shape, logits.row_shape[0], cfg)
    model = GnimeModel(speed.model(ng.to(device)).train(), speed.model(inv.to(device)).train(), mu, sigma, cfg,
                       {k: [] for k in ("l_adv", "l_clean", "l_dist", "l_inv", "l_ng")})
    opt_ng, opt_inv = make_optimisers(model)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    start = 1
    if resume is not None:
        if resume["config"] != asdict(cfg):
            raise ValueError("the resume state was made with another GNIME configuration")
        model.ng.load_state_dict(resume["ng"])
        model.inv.load_state_dict(resume["inv"])
        opt_ng.load_state_dict(resume["opt_ng"])
        opt_inv.load_state_dict(resume["opt_inv"])
        gen.set_state(resume["sampler"])
        model.history = {k: list(v) for k, v in resume["history"].items()}
        start = int(resume["epoch"]) + 1

    def training_state(epoch: int) -> dict[str, Any]:
        return {**model.state(), "epoch": epoch, "sampler": gen.get_state(),
                "opt_ng": copy.deepcopy(opt_ng.state_dict()), "opt_inv": copy.deepcopy(opt_inv.state_dict())}

    n = len(maps)
    b = min(cfg.batch_size, n)
    steps = cfg.steps_per_epoch or max(1, n // b)
    # the step runs NG and INV compiled when the speed says so; ``model`` keeps the modules themselves
    stepper = replace(model, ng=speed.compile(model.ng), inv=speed.compile(model.inv)) if speed.compiled else model
    t0 = time.perf_counter()
    for epoch in range(start, cfg.epochs + 1):
        totals = dict.fromkeys(model.history, 0.0)
        for _ in range(steps):
            idx = torch.randperm(n, generator=gen)[:b]
            losses = gnime_step(stepper, opt_ng, opt_inv, speed.batch(model.standardise(maps.to(device, idx))),
                                logits.to(device, idx), speed.batch(images.to(device, idx)))
            if not all(math.isfinite(v) for v in losses.values()):
                raise TrainingDiverged(f"GNIME diverged at epoch {epoch}/{cfg.epochs} (lambda {cfg.lam!r}, NG width "
                                       f"{cfg.ng_width:g}): " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items()))
            for k, v in losses.items():
                totals[k] += v / steps
        for k, v in totals.items():
            model.history[k].append(v)
        if on_epoch is not None:
            on_epoch(epoch, totals, lambda: training_state(epoch))
        if epoch % log_every == 0 or epoch in (start, cfg.epochs):
            log(f"  gnime epoch {epoch}/{cfg.epochs} ({steps} steps of {b}): L_adv {totals['l_adv']:.4f} "
                f"L_clean {totals['l_clean']:.4f} L_dist {totals['l_dist']:.4f} ({time.perf_counter() - t0:.0f}s"
                f"{time_left(time.perf_counter() - t0, epoch - start + 1, cfg.epochs - start + 1)})")
    speed.trained(model.ng).eval()
    speed.trained(model.inv).eval()
    return model

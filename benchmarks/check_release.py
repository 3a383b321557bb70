#!/usr/bin/env python
"""Fidelity against the authors' own code: gnime_ray's networks, explainers, GNIME losses and
optimiser step next to the release's (WSP-LAB/GNIME ``scripts/models.py`` and ``scripts/xai.py``,
imported unmodified from a local checkout) on IDENTICAL weights and the same digits images.

    python benchmarks/check_release.py --release /path/to/GNIME [--images 32]

It builds gnime_ray's target classifier (the release's MNIST net, trained two epochs on digits so
the maps look like maps), the NG and INV U-Nets, copies every weight into the release's Keras
networks (PyTorch conv (out, in, kh, kw) -> Keras (kh, kw, in, out); a Dense after a Flatten gets
its input rows reordered from NCHW to NHWC order), and prints one markdown row per quantity: the
max and mean absolute difference, the quantity's own scale (max |value|) and how many values
differ by more than 1e-4 of that scale. Rows:
- logits of the classifier; Grad; Grad-CAM (the release's batch-pooled weights);
- LRP ``paper`` against the release AS ITS SCRIPTS RUN IT (``prepare_mnist_lrp.py``: eager
  execution disabled, the target loaded from its saved file, ``LRP(model, pool_type='avg')``, in a
  subprocess here): the target was built after the evaluation model in one process, so its first
  convolution is named ``conv2d_2`` and ``relprop_conv``'s flat rule never fires (explain/lrp.py);
  and ``paper-flat`` against a model whose first convolution is named ``conv2d`` (the code as
  written);
- NG and INV forward passes; for each GNIME variant (defenses/gnime.py), the losses L_dist, L_adv,
  L_clean, the gradients of both networks and both networks' parameters after one simultaneous step
  of the release's ``train_step`` with ``tf.keras.optimizers.Adam(1e-4)`` (Keras' epsilon placement)
  against gnime_ray's ``gnime_step`` with KerasAdam: the ``paper`` variant against the release's
  ``GNIME`` exactly as released (INV sees the noisy map in [0, 1]), the ``one-scale`` variant
  against the release's ``GNIME.loss`` with that one line changed (INV sees it standardised); and,
  for contrast, the paper variant's step with PyTorch's own Adam at the same eps (optim.py); the
  parameter rows give the share of parameters that moved differently by more than 1% of the
  learning rate.

Needs TensorFlow and tf_keras (Keras 2, which the release's symbolic LRP graph needs), which are
not dependencies of gnime_ray: run it from an environment that has gnime_ray, torch and them, e.g.
``python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu tf_keras torch==2.14.1
torchvision==0.29.1 -e . && /tmp/tf/bin/python benchmarks/check_release.py --release ../GNIME``.
Numbers only, no pass/fail; docs/fidelity.md keeps the table of the last run.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tensorflow.keras -> tf_keras (Keras 2), as the release needs
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import torch
import torch._dynamo  # noqa: F401  before TensorFlow: torch's optimisers import triton, which crashes once TF is loaded


def nhwc_rows(c: int, h: int, w: int) -> np.ndarray:
    """For a Flatten over (h, w, c) in Keras: at Keras row j, the torch (c, h, w) flat index."""
    cc, hh, ww = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    torch_index = (cc * h * w + hh * w + ww)  # indexed [c, h, w]
    return torch_index.transpose(1, 2, 0).reshape(-1)


def conv_to_keras(w: torch.Tensor) -> np.ndarray:
    return w.detach().permute(2, 3, 1, 0).numpy()


def dense_to_keras(w: torch.Tensor, rows: np.ndarray | None = None) -> np.ndarray:
    k = w.detach().t().numpy()  # (in, out)
    return k if rows is None else k[rows]


def keras_layers(model, kind: str) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


def classifier_pairs(clf, model) -> list[tuple[torch.Tensor, object, callable]]:
    """(torch parameter, Keras variable, torch -> Keras converter) for the small net."""
    convs = [m for m in clf.layers if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in clf.layers if isinstance(m, torch.nn.Linear)]
    k_convs, k_dense = keras_layers(model, "Conv2D"), keras_layers(model, "Dense")
    c = convs[-1].out_channels
    side = clf.in_shape[1] >> len(convs)
    rows = nhwc_rows(c, side, side)
    pairs = []
    for t, k in zip(convs, k_convs):
        pairs += [(t.weight, k.kernel, conv_to_keras), (t.bias, k.bias, lambda b: b.detach().numpy())]
    for i, (t, k) in enumerate(zip(linears, k_dense)):
        pairs += [(t.weight, k.kernel, (lambda w, r=rows if i == 0 else None: dense_to_keras(w, r))),
                  (t.bias, k.bias, lambda b: b.detach().numpy())]
    return pairs


def unet_pairs(unet, model) -> list[tuple[torch.Tensor, object, callable]]:
    """The same for gnime_ray's UNet and the release's ExpMI builder."""
    convs = [*unet.enc, *unet.dec, unet.out]
    k_convs, k_dense = keras_layers(model, "Conv2D"), keras_layers(model, "Dense")
    assert len(convs) == len(k_convs) and len(k_dense) == 2, (len(convs), len(k_convs), len(k_dense))
    c_last = unet.enc[-1].out_channels
    c_in, h_in, w_in = unet.in_shape
    bottleneck_rows = nhwc_rows(c_last, 2, 2)
    n_b = unet.fc_bottleneck.out_features
    mix_rows = np.concatenate([np.arange(n_b), n_b + nhwc_rows(c_in, h_in, w_in),
                               n_b + c_in * h_in * w_in + np.arange(unet.num_classes)])
    pairs = []
    for t, k in zip(convs, k_convs):
        pairs += [(t.weight, k.kernel, conv_to_keras), (t.bias, k.bias, lambda b: b.detach().numpy())]
    for t, k, rows in ((unet.fc_bottleneck, k_dense[0], bottleneck_rows), (unet.fc_mix, k_dense[1], mix_rows)):
        pairs += [(t.weight, k.kernel, (lambda w, r=rows: dense_to_keras(w, r))),
                  (t.bias, k.bias, lambda b: b.detach().numpy())]
    return pairs


def copy_weights(pairs) -> None:
    for t, k, convert in pairs:
        value = convert(t)
        assert tuple(k.shape) == value.shape, (k.name, tuple(k.shape), value.shape)
        k.assign(value)


def nchw(a) -> np.ndarray:
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy().copy()


ROWS: list[list[str]] = []


def row(name: str, ours, theirs, note: str = "") -> None:
    a = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, (name, a.shape, b.shape)
    d = np.abs(a.astype(np.float64) - b)
    off = int((d > 1e-4 * max(1.0, float(np.abs(b).max()))).sum())
    if d.ndim == 4 and off:  # maps: how many of them hold those values
        maps_off = int((d.reshape(len(d), -1).max(1) > 1e-4).sum())
        note = f"{maps_off} of {len(d)} maps" + (f"; {note}" if note else "")
    ROWS.append([name, f"{d.max():.2e}", f"{d.mean():.2e}", f"{np.abs(b).max():.3g}", f"{off} of {d.size}", note])
    print(f"  {name}: max {d.max():.2e}, mean {d.mean():.2e}", flush=True)


def moved_differently(pairs_after, reference, lr: float) -> float:
    """Share of parameters whose values differ by more than 1% of the learning rate."""
    n = bad = 0
    for (t, k, convert), ref in zip(pairs_after, reference):
        d = np.abs(convert(t) - ref)
        n += d.size
        bad += int((d > 0.01 * lr).sum())
    return bad / n


def lrp_worker(release: Path, model_file: str, images_file: str, out_file: str) -> int:
    """The release's LRP as its prepare scripts run it: eager execution disabled, the target
    loaded from its saved file (layer names as saved), ``LRP(model, pool_type='avg')``, batch 256."""
    import tensorflow as tf
    from tensorflow.python.framework.ops import disable_eager_execution

    sys.path.insert(0, str(release))
    from scripts import xai as rxai

    disable_eager_execution()
    model = tf.keras.models.load_model(model_file, compile=False)
    np.save(out_file, rxai.LRP(model, pool_type="avg").generate_batched(np.load(images_file), batch_size=256,
                                                                        return_as_ds=False))
    return 0


def release_lrp(release: Path, model, x_k: np.ndarray) -> np.ndarray:
    """``lrp_worker`` in a subprocess (graph mode cannot be left once entered)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        paths = [str(Path(d) / n) for n in ("target.h5", "images.npy", "lrp.npy")]
        model.save(paths[0])
        np.save(paths[1], x_k)
        subprocess.run([sys.executable, __file__, "--release", str(release), "--lrp-worker", *paths], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return np.load(paths[2])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--release", required=True, help="a local checkout of https://github.com/WSP-LAB/GNIME")
    p.add_argument("--images", type=int, default=32, help="digits images to compare on (default: 32)")
    p.add_argument("--lam", type=float, default=100.0, help="GNIME's lambda in the step (default: 100)")
    p.add_argument("--lrp-worker", nargs=3, metavar=("MODEL", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    release = Path(args.release).expanduser().resolve()
    for f in ("scripts/models.py", "scripts/xai.py"):
        if not (release / f).is_file():
            print(f"error: --release {release}: {f} not found (a checkout of WSP-LAB/GNIME expected)", file=sys.stderr)
            return 2
    try:
        import tensorflow as tf
        import tf_keras  # noqa: F401  (Keras 2: the release's symbolic LRP graph)
    except ImportError as exc:
        print(f"error: {exc.name} is not installed here; see this script's docstring", file=sys.stderr)
        return 2
    if args.lrp_worker:
        return lrp_worker(release, *args.lrp_worker)
    sys.path.insert(0, str(release))
    from scripts import models as rmodels  # the release, unmodified
    from scripts import xai as rxai

    from gnime_ray.data import load_dataset
    from gnime_ray.data.registry import to_float
    from gnime_ray.defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers
    from gnime_ray.explain import get_explainer
    from gnime_ray.models import build_classifier
    from gnime_ray.pipeline.fit import train_classifier

    torch.manual_seed(0)
    tf.random.set_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = load_dataset("digits", progress=False, log=lambda _: None)
    n = args.images
    x = to_float(data.images[:n])
    print(f"tensorflow {tf.__version__}, torch {torch.__version__}; {n} digits images; release {release}")

    clf = build_classifier("small", (1, 32, 32), 10)
    train_classifier(clf, data.images[n:], data.labels[n:], data.images[:n], data.labels[:n], epochs=2,
                     batch_size=64, patience=2, lr=1e-4, seed=0, device=torch.device("cpu"), log=lambda _: None)
    clf.eval()

    # the release's scripts: the evaluation model is built first, the target second, in one process
    tf.keras.backend.clear_session()
    flat_target = rmodels.mnist_cnn((32, 32, 1), 10)  # first conv named 'conv2d': the flat rule fires
    target = rmodels.mnist_cnn((32, 32, 1), 10)       # first conv 'conv2d_2', as the target of the scripts
    for model in (target, flat_target):
        copy_weights(classifier_pairs(clf, model))
    print(f"release target's first conv: {keras_layers(target, 'Conv2D')[0].name}; "
          f"code-as-written model's: {keras_layers(flat_target, 'Conv2D')[0].name}")
    x_k = nhwc(x)

    with torch.no_grad():
        logits = clf(x)
    row("classifier logits", logits, target(x_k).numpy())
    maps = {}
    maps["grad"] = get_explainer("grad", "paper")(clf, x)
    row("Grad", maps["grad"], nchw(rxai.generate_grad_batched(target, x_k, return_as_ds=False)))
    maps["gradcam"] = get_explainer("gradcam", "paper")(clf, x)
    row("Grad-CAM", maps["gradcam"],
        nchw(rxai.GradCAM(target).generate_gradcam_batched(x_k, batch_size=256, return_as_ds=False)))
    maps["lrp"] = get_explainer("lrp", "paper")(clf, x)
    lrp_scripts, lrp_flat = release_lrp(release, target, x_k), release_lrp(release, flat_target, x_k)
    row("LRP paper vs release as its scripts run it (z+ at the input)", maps["lrp"], nchw(lrp_scripts))
    row("LRP paper-flat vs release's code as written (flat rule)", get_explainer("lrp", "paper-flat")(clf, x),
        nchw(lrp_flat))
    row("LRP paper vs release's code as written", maps["lrp"], nchw(lrp_flat),
        "the difference the first layer's name makes")

    # GNIME on the LRP maps: NG and INV at the release's width, identical weights, each variant against its release
    e = maps["lrp"]
    mu, sigma = e.mean().item(), e.std().item()
    torch.manual_seed(1)
    ng0, inv0 = build_networks((1, 32, 32), (1, 32, 32), 10, GnimeConfig(lam=args.lam, epochs=1, batch_size=n))

    class OneScaleGNIME(rmodels.GNIME):
        """The release's GNIME.loss with one change: INV sees the noisy map standardised."""

        def loss(self, xai, x, pred):
            xai = self.standardize(xai, self.mean, self.stddev)
            xai2 = self.noiser((xai, pred))
            N_loss1 = tf.math.reduce_mean((xai2 - xai) ** 2)
            xai2 = tf.clip_by_value(self.destandardize(xai2, self.mean, self.stddev), 0, 1)
            x_inv1 = self.inverter((xai, pred))
            x_inv2 = self.inverter((self.standardize(xai2, self.mean, self.stddev), pred))
            N_loss2 = I_loss = tf.math.reduce_mean((x_inv2 - x) ** 2)
            I_loss += tf.math.reduce_mean((x_inv1 - x) ** 2)
            return N_loss1, N_loss2, I_loss

    e_k, y_k = tf.constant(nhwc(e)), tf.constant(logits.numpy())
    releases = (("paper", rmodels.GNIME, "the release as released (INV sees the noisy map in [0, 1])"),
                ("one-scale", OneScaleGNIME, "the release with that one line changed (INV sees it standardised)"))
    for variant, release_class, against in releases:
        cfg = GnimeConfig(lam=args.lam, epochs=1, batch_size=n, variant=variant)
        model = GnimeModel(copy.deepcopy(ng0), copy.deepcopy(inv0), mu, sigma, cfg)
        r_gnime = release_class(target, xai_shape=(32, 32, 1), x_shape=(32, 32, 1), num_of_classes=10,
                                mean=np.float32(mu), stddev=np.float32(sigma))
        ng_pairs, inv_pairs = unet_pairs(model.ng, r_gnime.noiser), unet_pairs(model.inv, r_gnime.inverter)
        copy_weights(ng_pairs + inv_pairs)
        e_std = model.standardise(e)
        if variant == "paper":
            with torch.no_grad():
                row("U-Net forward (NG)", model.ng(e_std, logits), nchw(r_gnime.noiser((nhwc(e_std), y_k)).numpy()))
                row("U-Net forward (INV)", model.inv(e_std, logits),
                    nchw(r_gnime.inverter((nhwc(e_std), y_k)).numpy()))
        with tf.GradientTape(persistent=True) as tape:
            l_dist_r, l_adv_r, l_inv_r = r_gnime.loss(e_k, tf.constant(x_k), y_k)
            l_ng_r = l_dist_r - args.lam * l_adv_r
        g_ng_r = tape.gradient(l_ng_r, r_gnime.noiser.trainable_variables)
        g_inv_r = tape.gradient(l_inv_r, r_gnime.inverter.trainable_variables)

        before = {id(t): t.detach().clone() for t, _, _ in ng_pairs + inv_pairs}
        losses = gnime_step(model, *make_optimisers(model), e_std, logits, x)
        row(f"GNIME {variant}: L_dist", np.float64(losses["l_dist"]), l_dist_r.numpy(), f"against {against}")
        row(f"GNIME {variant}: L_adv", np.float64(losses["l_adv"]), l_adv_r.numpy())
        row(f"GNIME {variant}: L_clean", np.float64(losses["l_clean"]), (l_inv_r - l_adv_r).numpy())
        for name, pairs, grads, variables in (("NG", ng_pairs, g_ng_r, r_gnime.noiser.trainable_variables),
                                              ("INV", inv_pairs, g_inv_r, r_gnime.inverter.trainable_variables)):
            index = {v.ref(): i for i, v in enumerate(variables)}
            row(f"GNIME {variant}: {name} gradients", np.concatenate([conv(t.grad).ravel() for t, k, conv in pairs]),
                np.concatenate([grads[index[k.ref()]].numpy().ravel() for t, k, conv in pairs]))

        def parameter_rows(optimiser: str) -> None:
            """Each network's parameters after one step against the release's after its step."""
            for name, pairs in (("NG", ng_pairs), ("INV", inv_pairs)):
                ref = [k.numpy() for _, k, _ in pairs]
                share = moved_differently(pairs, ref, 1e-4)
                row(f"GNIME {variant}: {name} parameters after one step ({optimiser})",
                    np.concatenate([c(t).ravel() for t, _, c in pairs]), np.concatenate([r.ravel() for r in ref]),
                    f"{share:.2%} moved differently by > 1% of lr")

        # one simultaneous step: the release's train_step with Keras' Adam, and gnime_ray's KerasAdam
        r_gnime.train_step(e_k, tf.constant(x_k), y_k, tf.keras.optimizers.Adam(learning_rate=1e-4),
                           tf.keras.optimizers.Adam(learning_rate=1e-4), a=args.lam)
        parameter_rows("KerasAdam")
        if variant != "paper":
            continue
        # the same step with PyTorch's own Adam (eps after the bias correction), from the same start
        for t, _, _ in ng_pairs + inv_pairs:
            t.data.copy_(before[id(t)])
        torch_adam = (torch.optim.Adam(model.ng.parameters(), lr=1e-4, eps=1e-7),
                      torch.optim.Adam(model.inv.parameters(), lr=1e-4, eps=1e-7))
        gnime_step(model, *torch_adam, e_std, logits, x)
        parameter_rows("torch.optim.Adam, eps 1e-7")

    print()
    print("| quantity | max abs diff | mean abs diff | scale (max abs) | values off by > 1e-4 x scale | note |")
    print("|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The release's GNIME training step in TensorFlow/Keras, timed on this machine, so that
``python -m gnime_ray.bench`` can be read against it on the SAME hardware (numbers, no pass/fail).

It rebuilds the authors' networks (the release's code, docs/fidelity.md: the U-Net builder with B = 2048,
glorot-uniform weights, 5,341,825 parameters for 32x32x1 -> 32x32x1 with 10 classes; the count is
checked) and their step: one NG forward, two INV forwards (noisy and clean map), L_INV and L_NG
from the same forward pass, two Adam optimisers (lr 1e-4, eps 1e-7), INV stepped then NG, inside
``tf.function``, NHWC float32 as Keras runs it. The release's scale bug is kept (INV sees the
clean map standardised and the noisy map in [0, 1]); it changes no FLOPs.

Needs TensorFlow, which is not a dependency of gnime_ray: run it from its own environment, e.g.
``python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu && /tmp/tf/bin/python
benchmarks/bench_release_tf.py``.
"""

import argparse
import time


def build_unet(tf, in_hw: int, c_in: int, c_out: int, num_classes: int):
    layers = tf.keras.layers
    e = layers.Input((in_hw, in_hw, c_in))
    y = layers.Input((num_classes,))
    skips, h, r = {}, e, in_hw
    while r > 2:
        h = layers.Conv2D(2048 // r, 3, padding="same", activation="relu")(h)
        skips[r] = h
        h = layers.MaxPool2D(2)(h)
        r //= 2
    b = layers.Dense(64, activation="relu")(layers.Flatten()(h))
    z = layers.Dense(512, activation="relu")(layers.Concatenate()([b, layers.Flatten()(e), y]))
    h = layers.UpSampling2D(4)(layers.Reshape((1, 1, 512))(z))
    r = 4
    while r < in_hw:
        if r in skips:
            h = layers.Concatenate()([h, skips[r]])
        h = layers.UpSampling2D(2)(layers.Conv2D(1024 // r, 3, padding="same", activation="relu")(h))
        r *= 2
    if r in skips:
        h = layers.Concatenate()([h, skips[r]])
    out = layers.Conv2D(c_out, 3, padding="same")(h)
    return tf.keras.Model([e, y], out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lam", type=float, default=100.0)
    args = p.parse_args()
    import tensorflow as tf

    tf.random.set_seed(0)
    ng, inv = build_unet(tf, 32, 1, 1, 10), build_unet(tf, 32, 1, 1, 10)
    assert ng.count_params() == 5_341_825, ng.count_params()
    opt_ng = tf.keras.optimizers.Adam(1e-4, epsilon=1e-7)
    opt_inv = tf.keras.optimizers.Adam(1e-4, epsilon=1e-7)
    b = args.batch
    e = tf.random.uniform((b, 32, 32, 1))
    x = tf.random.uniform((b, 32, 32, 1))
    yh = tf.random.normal((b, 10))
    mu, sigma = 0.3, 0.2

    @tf.function
    def step(e, x, yh):
        with tf.GradientTape() as ng_tape, tf.GradientTape() as inv_tape:
            et = (e - mu) / sigma
            n = ng([et, yh], training=True)
            l_dist = tf.reduce_mean(tf.square(n - et))
            e_hat = tf.clip_by_value(sigma * n + mu, 0.0, 1.0)
            l_adv = tf.reduce_mean(tf.square(inv([e_hat, yh], training=True) - x))
            l_inv = l_adv + tf.reduce_mean(tf.square(inv([et, yh], training=True) - x))
            l_ng = l_dist - args.lam * l_adv
        g_inv = inv_tape.gradient(l_inv, inv.trainable_variables)
        g_ng = ng_tape.gradient(l_ng, ng.trainable_variables)
        opt_inv.apply_gradients(zip(g_inv, inv.trainable_variables))
        opt_ng.apply_gradients(zip(g_ng, ng.trainable_variables))
        return l_adv

    for _ in range(2):
        step(e, x, yh).numpy()
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        step(e, x, yh).numpy()
    sec = (time.perf_counter() - t0) / args.repeats
    print(f"release GNIME step (TensorFlow {tf.__version__}, Keras, tf.function, fp32 NHWC), batch {b}: "
          f"{b / sec:.1f} images/s ({sec * 1000:.0f} ms/step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

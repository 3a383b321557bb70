"""GNIME's step, the gamma bound, RND and OND magnitudes, checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from gnime_ray.defenses import GnimeConfig, GnimeModel, apply_gamma_bound, gnime_step, ond_release, rnd_release
from gnime_ray.defenses.gnime import build_networks, make_optimisers, train_gnime
from gnime_ray.pipeline.cache import load_tensors, save_tensors


def _tiny(lam=10.0, lr=1e-4, seed=0, n=8, size=8, variant="paper"):
    torch.manual_seed(seed)
    cfg = GnimeConfig(lam=lam, ng_width=0.05, inv_width=0.05, epochs=1, batch_size=n, lr=lr, seed=seed, variant=variant)
    ng, inv = build_networks((1, size, size), (1, size, size), 3, cfg)
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(n, 1, size, size, generator=g)
    model = GnimeModel(ng, inv, e.mean().item(), e.std().item(), cfg)
    y = torch.randn(n, 3, generator=g)
    x = torch.rand(n, 1, size, size, generator=g)
    return model, model.standardise(e), y, x


@pytest.mark.parametrize("variant", ["paper", "one-scale"])
def test_step_one_forward_and_exact_gradients(variant):
    """One forward and one backward give each network exactly its own loss's gradient: INV sees the
    noisy map in [0, 1] (variant 'paper', the release) or standardised ('one-scale')."""
    model, e_std, y, x = _tiny(lam=7.0, variant=variant)
    calls = {"ng": 0, "inv": 0}
    h1 = model.ng.register_forward_hook(lambda *a: calls.__setitem__("ng", calls["ng"] + 1))
    h2 = model.inv.register_forward_hook(lambda *a: calls.__setitem__("inv", calls["inv"] + 1))
    # lr 0: the step leaves the weights as they are and the gradients stay in .grad
    opt_ng, opt_inv = torch.optim.Adam(model.ng.parameters(), lr=0.0), torch.optim.Adam(model.inv.parameters(), lr=0.0)
    gnime_step(model, opt_ng, opt_inv, e_std, y, x)
    h1.remove(); h2.remove()
    assert calls == {"ng": 1, "inv": 2}
    got_ng = [p.grad.clone() for p in model.ng.parameters()]
    got_inv = [p.grad.clone() for p in model.inv.parameters()]
    # reference: the two losses of the paper, each differentiated on its own
    n = model.ng(e_std, y)
    e_hat = (model.sigma * n + model.mu).clamp(0, 1)
    l_adv = F.mse_loss(model.inv(e_hat if variant == "paper" else model.standardise(e_hat), y), x)
    l_inv = l_adv + F.mse_loss(model.inv(e_std, y), x)
    l_ng = F.mse_loss(n, e_std) - 7.0 * l_adv
    ref_inv = torch.autograd.grad(l_inv, list(model.inv.parameters()), retain_graph=True)
    ref_ng = torch.autograd.grad(l_ng, list(model.ng.parameters()))
    for a, b in zip(got_ng + got_inv, list(ref_ng) + list(ref_inv)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in got_ng[-2:] + got_inv[-2:])


def test_step_updates_both_networks_and_raises_adversarial_loss():
    model, e_std, y, x = _tiny(lam=1000.0, lr=1e-3, seed=1)
    before_ng = [p.detach().clone() for p in model.ng.parameters()]
    before_inv = [p.detach().clone() for p in model.inv.parameters()]
    opt_ng, opt_inv = make_optimisers(model)
    gnime_step(model, opt_ng, opt_inv, e_std, y, x)
    assert all(not torch.equal(a, p) for a, p in zip(before_ng, model.ng.parameters()))
    assert all(not torch.equal(a, p) for a, p in zip(before_inv, model.inv.parameters()))
    # the NG's own steps (INV held still) push the inversion loss up: the sign of -lambda * L_adv
    opt_inv_still = torch.optim.Adam(model.inv.parameters(), lr=0.0)
    l_adv = [gnime_step(model, opt_ng, opt_inv_still, e_std, y, x)["l_adv"] for _ in range(10)]
    assert l_adv[-1] > 1.2 * l_adv[0] and l_adv[-1] == max(l_adv)
    # and the INV's own steps (NG held still) bring it down
    opt_ng_still = torch.optim.Adam(model.ng.parameters(), lr=0.0)
    l_adv = [gnime_step(model, opt_ng_still, opt_inv, e_std, y, x)["l_adv"] for _ in range(10)]
    assert l_adv[-1] < l_adv[0]


def test_train_gnime_history_and_checkpoint_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    maps, logits, images = torch.rand(12, 1, 8, 8, generator=g), torch.randn(12, 3, generator=g), torch.rand(12, 1, 8, 8, generator=g)
    cfg = GnimeConfig(lam=5.0, ng_width=0.05, inv_width=0.05, epochs=3, batch_size=4, seed=3)
    model = train_gnime(maps, logits, images, cfg, log=lambda _: None)
    assert len(model.history["l_adv"]) == 3 and model.mu == pytest.approx(maps.mean().item())
    save_tensors(tmp_path / "g.pt", model.state())
    again = GnimeModel.from_state(load_tensors(tmp_path / "g.pt"))  # weights_only=True
    assert again.config == cfg and again.history == model.history
    assert torch.equal(again.release(maps, logits), model.release(maps, logits))
    released = model.release(maps, logits)
    assert released.shape == maps.shape and released.min() >= 0 and released.max() <= 1


@pytest.mark.parametrize("gamma", [1e-4, 3e-3, 0.05])
def test_gamma_bound_gives_exact_variance(gamma):
    g = torch.Generator().manual_seed(0)
    e = torch.rand(5, 3, 16, 16, generator=g)
    e_hat = (e + 0.2 * torch.randn(e.shape, generator=g) + 0.05).clamp(0, 1)
    out = apply_gamma_bound(e, e_hat, gamma)
    var = (out - e).double().flatten(1).var(dim=1, unbiased=False)
    assert torch.allclose(var, torch.full((5,), gamma, dtype=torch.float64), rtol=1e-5)
    # the noise keeps its direction
    assert torch.allclose(torch.sign(out - e)[(e_hat - e).abs() > 1e-3], torch.sign(e_hat - e)[(e_hat - e).abs() > 1e-3])


def test_gamma_bound_with_clipping_never_increases_perturbation():
    g = torch.Generator().manual_seed(1)
    e = torch.rand(6, 1, 16, 16, generator=g)
    e_hat = (e + 0.3 * torch.randn(e.shape, generator=g)).clamp(0, 1)
    free = apply_gamma_bound(e, e_hat, 0.05)
    clipped = apply_gamma_bound(e, e_hat, 0.05, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1 and free.min() < 0  # clipping was active
    assert ((clipped - e).abs() <= (free - e).abs() + 1e-7).all()
    assert ((clipped - e) ** 2).flatten(1).mean(1).le(((free - e) ** 2).flatten(1).mean(1) + 1e-7).all()
    var = (clipped - e).flatten(1).var(dim=1, unbiased=False)
    assert not torch.allclose(var, torch.full_like(var, 0.05), rtol=1e-5)  # the exact variance is lost once clipped


def test_gamma_bound_edge_cases():
    e = torch.rand(2, 1, 8, 8)
    assert torch.equal(apply_gamma_bound(e, e.clone(), 0.01), e)  # no noise: unchanged
    with pytest.raises(ValueError, match="gamma must be > 0"):
        apply_gamma_bound(e, e, 0.0)


def test_rnd_noise_variance_matches_target():
    e = torch.rand(64, 1, 32, 32)
    out = rnd_release(e, 0.004, seed=1)
    assert ((out - e) ** 2).mean().item() == pytest.approx(0.004, rel=0.02)
    assert torch.equal(out, rnd_release(e, 0.004, seed=1))
    assert not torch.equal(out, rnd_release(e, 0.004, seed=2))  # drawn afresh per split


def test_ond_projection_matches_target_and_beats_random_noise():
    model, _, y, x = _tiny(seed=2, n=16, size=16)
    e = torch.rand(16, 1, 16, 16)
    target = 0.003
    out = ond_release(e, y, x, model.inv, model.inv_noisy_input, target, steps=5)
    per_map = ((out - e) ** 2).flatten(1).mean(1)
    assert torch.allclose(per_map, torch.full((16,), target), rtol=1e-4)
    loss = lambda m: F.mse_loss(model.inv(model.standardise(m), y), x).item()
    with torch.no_grad():
        assert loss(out) > loss(rnd_release(e, target, seed=0))


def test_resumed_training_ends_where_uninterrupted_training_does():
    g = torch.Generator().manual_seed(5)
    maps, logits, images = torch.rand(10, 1, 8, 8, generator=g), torch.randn(10, 3, generator=g), torch.rand(10, 1, 8, 8, generator=g)
    cfg = GnimeConfig(lam=5.0, ng_width=0.05, inv_width=0.05, epochs=6, batch_size=4, seed=1)
    full = train_gnime(maps, logits, images, cfg, log=lambda _: None)
    saved = {}

    def keep(epoch, losses, state):
        if epoch == 3:
            saved["state"] = state()
    train_gnime(maps, logits, images, cfg, log=lambda _: None, on_epoch=keep)
    resumed = train_gnime(maps, logits, images, cfg, log=lambda _: None, resume=saved["state"])
    assert resumed.history == full.history
    for a, b in zip(full.ng.state_dict().values(), resumed.ng.state_dict().values()):
        assert torch.equal(a, b)


def test_keras_adam_equals_the_closed_form_keras_update():
    """Keras' Adam (epsilon before the bias correction) against its closed form, step by step, in
    float64 numpy, on a small problem whose gradients change with the parameters; PyTorch's Adam
    with the same epsilon departs from it (most in the first steps)."""
    import numpy as np

    from gnime_ray.optim import KerasAdam

    rng = np.random.default_rng(0)
    target, w0 = rng.normal(size=6), rng.normal(size=6) * 1e-3
    lr, b1, b2, eps = 1e-2, 0.5, 0.999, 1e-7
    w = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
    keras_like = KerasAdam([w], lr=lr, betas=(b1, b2), eps=eps)
    plain = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
    torch_adam = torch.optim.Adam([plain], lr=lr, betas=(b1, b2), eps=eps)
    ref, m, v = w0.copy(), np.zeros(6), np.zeros(6)
    scale = np.array([1e-6, 1e-5, 1e-3, 1e-1, 1.0, 10.0])  # small gradients are where eps matters
    for t in range(1, 9):
        for p, opt in ((w, keras_like), (plain, torch_adam)):
            opt.zero_grad()
            (torch.tensor(scale, dtype=torch.float32) * (p - torch.tensor(target, dtype=torch.float32)) ** 2).sum().backward()
            opt.step()
        g = 2 * scale * (ref - target)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        ref = ref - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-5, atol=1e-7)
    assert not np.allclose(plain.detach().numpy(), ref, rtol=1e-5, atol=1e-7)
    # its state (the Keras epsilon included) survives a checkpoint, as GNIME's resume needs
    again = KerasAdam([w], lr=lr, betas=(b1, b2), eps=eps)
    again.load_state_dict(keras_like.state_dict())
    assert again.param_groups[0]["keras_eps"] == eps

"""Captum's attribution methods as explainers (explain/captum_methods.py): closed forms on a linear
model, completeness, Captum's own results, how Captum's Saliency and LayerGradCam relate to the
paper's Grad and standard Grad-CAM, and bad settings refused in one line naming the field."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from gnime_ray import GnimeRayError
from gnime_ray.cellspec import CAPTUM_EXPLAINERS, CellSpec
from gnime_ray.config import get_preset
from gnime_ray.explain import explainer_settings, get_explainer, map_shape
from gnime_ray.explain.captum_methods import NOISE_SEED, SETTINGS, attribute, check_settings
from gnime_ray.explain.normalize import minmax_per_channel

PAPER = get_preset("paper")


class Linear(nn.Module):
    """logits = W x + b on flattened (C, H, W) images: every gradient is a row of W."""

    def __init__(self, shape=(2, 4, 4), classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.shape = shape
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes)

    def forward(self, x):
        return self.fc(x.flatten(1))

    def row(self, target):  # d logit_target / d x, as images
        return self.fc.weight[target].detach().view(-1, *self.shape)


def _settings(name, **changes):
    return {**explainer_settings(name, PAPER), **changes}


def test_the_names_agree_and_every_method_keeps_the_image_shape():
    assert tuple(SETTINGS) == CAPTUM_EXPLAINERS
    for name in CAPTUM_EXPLAINERS:
        assert map_shape(name, "paper", (3, 32, 32)) == (3, 32, 32)
        assert set(explainer_settings(name, PAPER)) == set(SETTINGS[name])


def test_closed_forms_on_a_linear_model():
    """IG and DeepLIFT from a black baseline and gradient x input equal W_t * x; with a white
    baseline, W_t * (x - 1); SmoothGrad's mean gradient and Guided Backprop's are W_t."""
    model = Linear()
    x = torch.rand(5, 2, 4, 4)
    target = model(x).argmax(1)
    w = model.row(target)
    for name in ("ig", "deeplift", "gxi"):
        a = attribute(model, x, name, _settings(name))
        assert torch.allclose(a, w * x, atol=1e-5), name
    for name in ("ig", "deeplift"):
        a = attribute(model, x, name, _settings(name, attribution_baseline="white"))
        assert torch.allclose(a, w * (x - 1), atol=1e-5), name
    assert torch.allclose(attribute(model, x, "smoothgrad", _settings("smoothgrad")), w, atol=1e-5)
    assert torch.allclose(attribute(model, x, "guidedbp", {}), w, atol=1e-6)
    # the released maps: |a| min-max per image and channel
    maps = get_explainer("gxi")(model, x)
    assert torch.allclose(maps, minmax_per_channel((w * x).abs()), atol=1e-5)


def test_completeness_of_ig_and_deeplift_on_the_paper_classifier(tiny_classifier):
    """sum of attributions = f(x)_t - f(baseline)_t: IG within its convergence (many steps), DeepLIFT
    (the rescale rule, exact by construction)."""
    x = torch.rand(4, 1, 32, 32)
    target = tiny_classifier(x).argmax(1)
    with torch.no_grad():
        gap = (tiny_classifier(x) - tiny_classifier(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    ig = attribute(tiny_classifier, x, "ig", _settings("ig", ig_steps=256)).sum(dim=(1, 2, 3))
    assert torch.allclose(ig, gap, rtol=1e-2, atol=1e-3)
    dl = attribute(tiny_classifier, x, "deeplift", _settings("deeplift")).sum(dim=(1, 2, 3))
    assert torch.allclose(dl, gap, rtol=1e-3, atol=1e-4)
    # at the default 32 steps the gap closes to within a few per cent (the docstring's claim)
    ig32 = attribute(tiny_classifier, x, "ig", _settings("ig")).sum(dim=(1, 2, 3))
    assert ((ig32 - gap).abs() <= 0.05 * gap.abs() + 1e-3).all()


def test_the_random_methods_equal_captums_own_call_from_the_fixed_seed(tiny_classifier):
    from captum.attr import GradientShap, NoiseTunnel, Saliency

    x = torch.rand(3, 1, 32, 32)
    target = tiny_classifier(x).argmax(1)
    torch.manual_seed(NOISE_SEED)
    ref = NoiseTunnel(Saliency(tiny_classifier)).attribute(x.clone().requires_grad_(), nt_type="smoothgrad",
                                                            nt_samples=16, nt_samples_batch_size=3, stdevs=0.15,
                                                            target=target, abs=False)
    assert torch.allclose(get_explainer("smoothgrad")(tiny_classifier, x), minmax_per_channel(ref.abs()), atol=1e-6)
    torch.manual_seed(NOISE_SEED)
    np.random.seed(NOISE_SEED)  # Captum draws GradientSHAP's baselines and interpolation points with numpy
    base = torch.stack([torch.zeros(1, 32, 32), torch.ones(1, 32, 32)])
    ref = GradientShap(tiny_classifier).attribute(x.clone().requires_grad_(), baselines=base, n_samples=16,
                                                  stdevs=0.1, target=target)
    assert torch.allclose(get_explainer("gradshap")(tiny_classifier, x), minmax_per_channel(ref.abs()), atol=1e-6)
    # the same maps every call, and the caller's generators untouched
    torch.manual_seed(5)
    np.random.seed(5)
    before = (torch.rand(1), np.random.rand())
    torch.manual_seed(5)
    np.random.seed(5)
    first = get_explainer("gradshap")(tiny_classifier, x)
    assert (torch.rand(1), np.random.rand()) == before
    assert torch.equal(first, get_explainer("gradshap")(tiny_classifier, x))


def test_smoothgrad_without_noise_is_the_papers_grad(tiny_classifier):
    x = torch.rand(3, 1, 32, 32)
    smooth = get_explainer("smoothgrad", settings=_settings("smoothgrad", smoothgrad_noise=0.0))
    assert torch.allclose(smooth(tiny_classifier, x), get_explainer("grad")(tiny_classifier, x), atol=1e-6)


def test_how_captums_saliency_and_layergradcam_relate_to_grad_and_gradcam(tiny_classifier):
    """Captum's Saliency (|gradient|) min-maxed is the paper's Grad exactly; LayerGradCam on the
    last conv's activation with ReLU, bilinearly upsampled and min-maxed, is the standard Grad-CAM
    (the paper variant differs on purpose: batch-mean weights, channel mean, no ReLU, no upsampling)."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    m = tiny_classifier
    x = torch.rand(4, 1, 32, 32)
    target = m(x).argmax(1)
    sal = Saliency(m).attribute(x.clone().requires_grad_(), target=target, abs=True)
    assert torch.allclose(get_explainer("grad")(m, x), minmax_per_channel(sal), atol=1e-6)
    cam = LayerGradCam(m, m.layers[m.cam_index]).attribute(x.clone().requires_grad_(), target=target,
                                                          relu_attributions=True)
    up = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")
    assert torch.allclose(get_explainer("gradcam", "standard")(m, x), minmax_per_channel(up), atol=1e-5)


@pytest.mark.parametrize("name,changes,field", [
    ("ig", {"ig_steps": 0}, "ig_steps"), ("smoothgrad", {"smoothgrad_samples": 1.5}, "smoothgrad_samples"),
    ("gradshap", {"gradshap_noise": -0.1}, "gradshap_noise"),
    ("deeplift", {"attribution_baseline": "grey"}, "attribution_baseline")])
def test_bad_settings_name_the_field(name, changes, field):
    with pytest.raises(GnimeRayError, match=field):
        check_settings(name, _settings(name, **changes))
    with pytest.raises(GnimeRayError, match=field):
        get_preset("smoke", **changes)


def test_a_baseline_of_the_wrong_shape_and_an_unknown_method_are_refused(tiny_classifier):
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(GnimeRayError, match=r"baseline must have the images' shape \(1, 32, 32\)"):
        attribute(tiny_classifier, x, "ig", _settings("ig"), baseline=torch.zeros(3, 32, 32))
    image = torch.full((1, 32, 32), 0.5)  # an image baseline of the right shape is taken
    assert attribute(tiny_classifier, x, "ig", _settings("ig"), baseline=image).shape == x.shape
    with pytest.raises(GnimeRayError, match="unknown explainer 'occlusion'"):
        get_explainer("occlusion")
    with pytest.raises(ValueError, match="explainer must be one of"):
        CellSpec("digits", explainer="occlusion")


def test_a_bad_setting_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gnime_ray.cli", "matrix", "--dataset", "digits", "--preset", "smoke",
                        "--explainers", "ig", "--set", "ig_steps=0", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "ig_steps" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_smoke_matrix_over_every_captum_explainer(cache_dir, tmp_path):
    """Every defence and attack on every Captum method's maps: a row per cell with finite metrics,
    the settings in each row's config and in the maps' cache name, the paper's table left out."""
    import json

    from gnime_ray.pipeline.matrix import run_matrix

    lines = []
    preset = get_preset("smoke", ig_steps=8, smoothgrad_samples=4, gradshap_samples=4)
    rows = run_matrix("digits", preset, seeds=1, out=str(tmp_path / "out"), study="captum",
                      explainers=CAPTUM_EXPLAINERS, log=lines.append)
    cells = {(r["explainer"], r["attack"], r["defense"]) for r in rows}
    for name in CAPTUM_EXPLAINERS:
        assert {(name, "expmi", d) for d in ("none", "rnd", "ond", "gnime")} <= cells
    assert ("none", "predmi", "none") in cells
    for r in rows:
        assert all(r[m] == r[m] for m in ("ssim", "mse", "tca", "deepsim")), r["cell"]  # finite (not NaN)
        assert json.loads(r["config"])["preset"]["ig_steps"] == 8
    made = [line for line in lines if line.startswith("prepare: computed ig (paper) maps")]
    assert len(made) == 1 and "ms per image" in made[0] and "ig_steps 8" in made[0]
    names = sorted(p.name for p in cache_dir.rglob("maps-*.f16.npy"))
    assert any(n.startswith("maps-ig-paper-b64-") for n in names) and not any(n.startswith("maps-grad-") for n in names)


def test_a_study_recorded_before_the_captum_settings_existed_resumes(tmp_path):
    from gnime_ray.study.record import check_identity, record_study

    identity = {"dataset": "digits", "preset": get_preset("smoke").to_dict()}
    older = {**identity, "preset": {k: v for k, v in identity["preset"].items() if k not in SETTINGS["ig"] + SETTINGS[
        "smoothgrad"] + SETTINGS["gradshap"]}}
    record_study(str(tmp_path), "old", "matrix", older, {"memory_format": "contiguous"})
    assert check_identity(str(tmp_path), "old", identity) is not None  # the absent fields cannot have mattered
    with pytest.raises(GnimeRayError, match="ig_steps 32 -> 8"):  # a recorded value still binds
        record_study(str(tmp_path), "new", "matrix", identity, {"memory_format": "contiguous"})
        check_identity(str(tmp_path), "new", {**identity, "preset": {**identity["preset"], "ig_steps": 8}})
    with pytest.raises(GnimeRayError, match="gnime_epochs"):  # and so does every older field
        check_identity(str(tmp_path), "old", {**identity, "preset": {**identity["preset"], "gnime_epochs": 99}})

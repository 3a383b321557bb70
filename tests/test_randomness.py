"""Randomness without a global lock (models/initialisation.py): every network is initialised, and every
dropout mask drawn, from a generator its caller owns. The weights are those that gnime_ray drew
from torch's global generator before (recorded from commit 3a56a23), nothing draws from the
global generator, and each defence, attack and classifier fit computes in a thread, beside the
others and a thread that draws from the global generator all the while, exactly what it
computes alone."""

import hashlib
import threading

import pytest
import torch
import torch.nn.functional as F

from gnime_ray.attacks import build_attacker, train_attacker
from gnime_ray.defenses import GnimeConfig, ond_release, rnd_release
from gnime_ray.defenses.gnime import build_networks, train_gnime
from gnime_ray.models import OwnedDropout, PredMI, UNet, build_classifier, dropout_from
from gnime_ray.models.attribute_classifier import AttributeClassifier
from gnime_ray.pipeline.fit import train_classifier

# sha256 (first 16 hex digits) of every tensor of the state dict, in order, as commit 3a56a23 made
# them: torch.manual_seed(seed), then the constructor (and, for GNIME, NG then INV under one seed)
RECORDED = {
    ("classifier-small-0.5", 0): "479dcc8b233fde48",
    ("classifier-small-0.5", 12345): "e73ab643b0f917d4",
    ("classifier-celeba-1/16", 0): "12e5f26ece470792",
    ("classifier-celeba-1/16", 12345): "302a7b9068b1eef7",
    ("unet-32-32-0.125", 0): "111198067b0721c9",
    ("unet-32-32-0.125", 12345): "e652e4147129ca5c",
    ("unet-16-32-0.25", 0): "59580ea6fe901288",
    ("unet-16-32-0.25", 12345): "8db7c90ff9df1f14",
    ("predmi-32-0.125", 0): "e5e99eb6ba55d3c0",
    ("predmi-32-0.125", 12345): "a8fd0364db475920",
    ("gnime-ng-inv", 0): "a848632f26d48f90",
    ("gnime-ng-inv", 12345): "fab3bb829fd0a8f7",
}
NETWORKS = {
    "classifier-small-0.5": lambda g, s: (build_classifier("small", (1, 32, 32), 10, width=0.5, generator=g),),
    "classifier-celeba-1/16": lambda g, s: (build_classifier("celeba", (3, 64, 64), 20, width=0.0625, generator=g),),
    "unet-32-32-0.125": lambda g, s: (UNet((1, 32, 32), (1, 32, 32), 10, width=0.125, generator=g),),
    "unet-16-32-0.25": lambda g, s: (UNet((1, 16, 16), (1, 32, 32), 10, width=0.25, generator=g),),
    "predmi-32-0.125": lambda g, s: (PredMI((1, 32, 32), 10, width=0.125, generator=g),),
    "gnime-ng-inv": lambda g, s: build_networks((1, 32, 32), (1, 32, 32), 10,
                                                GnimeConfig(lam=1.0, ng_width=0.125, inv_width=0.25, seed=s)),
}


def _digest(*nets: torch.nn.Module) -> str:
    d = hashlib.sha256()
    for net in nets:
        for k, v in net.state_dict().items():
            d.update(k.encode())
            d.update(v.detach().contiguous().numpy().tobytes())
    return d.hexdigest()[:16]


@pytest.mark.parametrize("name,seed", sorted(RECORDED))
def test_weights_from_a_generator_are_those_recorded_from_the_global_generator(name, seed):
    assert _digest(*NETWORKS[name](torch.Generator().manual_seed(seed), seed)) == RECORDED[name, seed]


def test_building_networks_draws_nothing_from_the_global_generator():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    for name, build in NETWORKS.items():
        build(torch.Generator().manual_seed(1), 1)
    AttributeClassifier(generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)
    # and the generator decides: another seed, other weights; the same seed, the same weights
    a, b = (UNet((1, 8, 8), (1, 8, 8), 3, width=0.1, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    assert _digest(a) != _digest(b)
    assert _digest(a) == _digest(UNet((1, 8, 8), (1, 8, 8), 3, width=0.1, generator=torch.Generator().manual_seed(1)))


def test_attribute_classifier_is_initialised_as_torchvision_initialises_a_resnet():
    m = AttributeClassifier(generator=torch.Generator().manual_seed(3))
    conv = m.net.conv1.weight  # kaiming_normal, fan_out, relu: std sqrt(2 / (out * kh * kw))
    assert abs(conv.std().item() / (2 / (64 * 7 * 7)) ** 0.5 - 1) < 0.05
    assert torch.equal(m.net.bn1.weight, torch.ones(64)) and torch.equal(m.net.bn1.running_var, torch.ones(64))
    assert torch.equal(m.net.bn1.running_mean, torch.zeros(64)) and m.net.bn1.num_batches_tracked.item() == 0
    assert m.net.fc.weight.abs().max().item() <= 1 / 2048 ** 0.5
    assert torch.allclose(m.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_owned_dropout_draws_torch_dropouts_masks_from_its_own_generator():
    x = torch.rand(4, 64) + 0.5
    torch.manual_seed(11)
    reference = F.dropout(x, 0.5, training=True)  # torch's dropout on the global generator
    layer = OwnedDropout(0.5).train()
    with dropout_from(torch.nn.Sequential(layer), torch.Generator().manual_seed(11)):
        assert torch.equal(layer(x), reference)
    assert layer.generator is None  # the trainer's generator is not kept with the network
    with pytest.raises(RuntimeError, match="needs a generator"):
        layer(x)
    assert torch.equal(layer.eval()(x), x)


# --- every defence, attack and classifier fit, alone and as threads of one process --------------

def _data(n=24, size=8, classes=3):
    g = torch.Generator().manual_seed(5)
    return (torch.rand(n, 1, size, size, generator=g), torch.randn(n, classes, generator=g),
            torch.rand(n, 1, size, size, generator=g), torch.randint(0, classes, (n,), generator=g))


def _gnime():
    e, y, x, _ = _data()
    cfg = GnimeConfig(lam=5.0, ng_width=0.05, inv_width=0.05, epochs=2, batch_size=8, seed=3)
    model = train_gnime(e, y, x, cfg, log=lambda s: None)
    noisy = model.release(e, y)
    return {"ng": _digest(model.ng), "inv": _digest(model.inv), "release": noisy,
            "ond": ond_release(e, y, x, model.inv, model.inv_noisy_input, 0.01, steps=3)}


def _attacker(name):
    def run():
        e, y, x, _ = _data()
        net = build_attacker(name, (1, 8, 8), (1, 8, 8), 3, width=0.05, generator=torch.Generator().manual_seed(9))
        hist = train_attacker(name, net, e[:16], y[:16], x[:16], e[16:], y[16:], x[16:], epochs=2, batch_size=8,
                              patience=5, lr=1e-3, seed=9, device=torch.device("cpu"), log=lambda s: None)
        return {"weights": _digest(net), "val": hist["val_mse"]}
    return run


def _dropout_classifier():
    _, _, x, labels = _data(size=16, n=32)
    x = (x.expand(-1, 3, -1, -1) * 255).to(torch.uint8)
    net = build_classifier("celeba", (3, 16, 16), 3, width=1 / 32, generator=torch.Generator().manual_seed(4))
    hist = train_classifier(net, x[:24], labels[:24], x[24:], labels[24:], epochs=2, batch_size=8, patience=5,
                            lr=1e-3, seed=4, device=torch.device("cpu"), log=lambda s: None)
    return {"weights": _digest(net), "loss": hist.train_loss}


def _rnd():
    e, _, _, _ = _data()
    return {"release": rnd_release(e, 0.01, 21)}


JOBS = {"gnime+ond": _gnime, "expmi": _attacker("expmi"), "predmi": _attacker("predmi"),
        "classifier-with-dropout": _dropout_classifier, "rnd": _rnd}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


def test_threads_compute_what_each_computes_alone():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what an attack pool sets for each attacker
    try:
        alone = {name: job() for name, job in JOBS.items()}
        at_once: dict[str, dict] = {}
        errors: list[BaseException] = []
        done = threading.Event()

        def draw_from_the_global_generator():  # what any stray torch.rand would do meanwhile
            while not done.is_set():
                torch.rand(64)

        def run(name):
            try:
                at_once[name] = JOBS[name]()
            except BaseException as exc:  # re-raised below, in the test's thread
                errors.append(exc)

        noise = threading.Thread(target=draw_from_the_global_generator)
        noise.start()
        workers = [threading.Thread(target=run, args=(name,)) for name in JOBS]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        done.set()
        noise.join()
    finally:
        torch.set_num_threads(threads)
    if errors:
        raise errors[0]
    for name in JOBS:
        assert _same(alone[name], at_once[name]), name
    assert alone["expmi"]["weights"] != alone["predmi"]["weights"]


def test_one_threads_meta_device_does_not_reach_another():
    """Networks are made on the meta device (models/initialisation.py on_meta) while other threads train."""
    from gnime_ray.models.initialisation import on_meta

    entered, leave = threading.Event(), threading.Event()

    def build():
        with on_meta():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=build)
    t.start()
    entered.wait(10)
    try:
        assert torch.zeros(1).device.type == "cpu"
    finally:
        leave.set()
        t.join()

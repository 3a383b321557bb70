
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("GNIME_RAY_CACHE", str(d))
    return d


@pytest.fixture
def tiny_classifier():
    """A narrow paper-architecture classifier (random weights) on 32x32x1, eval mode."""
    from gnime_ray.models import build_classifier

    torch.manual_seed(1)
    return build_classifier("small", (1, 32, 32), 10, width=0.125).eval()


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray with a faked GPU for one test module."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    yield
    ray.shutdown()

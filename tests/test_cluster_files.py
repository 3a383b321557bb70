"""cluster.yaml and the on-prem example pass Ray's validation; broken copies are rejected clearly."""

from pathlib import Path

import pytest
import yaml

from gnime_ray.cli import main

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "cluster.yaml", ROOT / "cluster-onprem.yaml"]


def test_shipped_cluster_files_are_valid(capsys):
    assert main(["validate-cluster", *map(str, FILES)]) == 0
    out = capsys.readouterr().out
    assert out.count(": valid") == 2


def test_shipped_cluster_files_keep_the_dashboard_private():
    for f in FILES:
        cfg = yaml.safe_load(f.read_text())
        assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def _broken(tmp_path, mutate, name="broken.yaml"):
    cfg = yaml.safe_load(FILES[0].read_text())
    mutate(cfg)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.pop("provider"), "missing required field 'provider'"),
    (lambda c: c.__setitem__("max_workers", "many"), "max_workers"),
    (lambda c: c.__setitem__("head_node_type", "nope"), "head_node_type"),
    (lambda c: c.__setitem__("unknown_field", 1), "unknown_field"),
    (lambda c: c.__setitem__("head_start_ray_commands", ["ray start --head --dashboard-host=0.0.0.0"]), "0.0.0.0"),
])
def test_broken_copies_are_rejected(tmp_path, capsys, mutate, needle):
    p = _broken(tmp_path, mutate)
    assert main(["validate-cluster", str(p)]) == 1
    err = capsys.readouterr().err
    assert needle in err and str(p) in err and "Traceback" not in err


def test_not_yaml_and_missing_file(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("cluster_name: [unclosed\n")
    assert main(["validate-cluster", str(p)]) == 1
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["validate-cluster", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shipped_cluster_files_share_token_auth_and_give_every_node_storage_and_data():
    """Every node and every driver runs with the same RAY_AUTH_MODE and token; AWS nodes reach the
    bucket through an instance profile and sync the datasets from it; on-prem nodes mount the share."""
    for f in FILES:
        cfg = yaml.safe_load(f.read_text())
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            start = [c for c in cfg[key] if "ray start" in c]
            assert start and all("RAY_AUTH_MODE=token" in c for c in start), (f, key)
        assert any(v == "~/.ray/auth_token" for v in cfg["file_mounts"].values())
        setup = "\n".join(cfg["setup_commands"])
        assert "RAY_AUTH_MODE=token" in setup and "GNIME_RAY_DATA=" in setup  # ray submit's drivers
    aws = yaml.safe_load(FILES[0].read_text())
    for name, node in aws["available_node_types"].items():
        assert "IamInstanceProfile" in node["node_config"], name
    assert "aws s3 sync" in "\n".join(aws["setup_commands"])
    onprem = yaml.safe_load(FILES[1].read_text())
    assert "mount -t nfs" in "\n".join(onprem["setup_commands"])


def test_make_ci_and_the_clusters_install_the_versions_of_one_constraints_file():
    """One lock: the Makefile (and .ci/run through it) and both cluster files install with
    .ci/constraints.txt, whose torch is the one they name, and whose versions hold pyproject's bounds."""
    import re

    from packaging.requirements import Requirement

    pins = dict(line.split("==") for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "-c .ci/constraints.txt" in (ROOT / "Makefile").read_text()
    for f in FILES:
        setup = "\n".join(yaml.safe_load(f.read_text())["setup_commands"])
        installs = [line for line in setup.splitlines() if "pip install" in line and "--upgrade pip" not in line]
        assert installs and all("-c /home/ubuntu/gnime_ray/.ci/constraints.txt" in line for line in installs), f
        for name, version in re.findall(r'"(torch|torchvision)==([^"]+)"', setup):
            assert pins[name] == version, (f, name)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        pinned = {k.lower().replace("_", "-"): v for k, v in pins.items()}.get(req.name.lower().replace("_", "-"))
        assert pinned is not None and req.specifier.contains(pinned, prereleases=True), (spec, pinned)

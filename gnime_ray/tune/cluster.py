"""Cluster helpers: connect to a running cluster (else start local Ray) and validate cluster files
with Ray's own autoscaler validation (prepare_config + validate_config)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from .. import GnimeRayError


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> str:
    """Connect to ``address`` (or $RAY_ADDRESS, or a cluster started on this machine with
    ``ray start``/``ray up``); without one, start a local Ray. Returns a one-line description."""
    import ray

    if ray.is_initialized():
        return "ray: already initialised"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return f"ray: connected to {address}"
    try:
        ray.init(address="auto")
        return "ray: connected to the running cluster"
    except (ConnectionError, RuntimeError, ValueError):
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
        return f"ray: started locally ({ray.cluster_resources().get('CPU', 0):g} CPUs, " \
               f"{ray.cluster_resources().get('GPU', 0):g} GPUs)"


def validate_cluster_file(path: str) -> list[str]:
    """Problems of a cluster file, one line each (empty: valid)."""
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    p = Path(path)
    if not p.is_file():
        raise GnimeRayError(f"cluster file {p} does not exist")
    try:
        config = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        return [f"{p}: not valid YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(config, dict):
        return [f"{p}: expected a mapping at the top level, got {type(config).__name__}"]
    problems = []
    for key in ("cluster_name", "provider"):
        if key not in config:
            problems.append(f"{p}: missing required field '{key}'")
    if problems:
        return problems
    quiet = logging.getLogger("ray.autoscaler")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # prepare_config logs its defaults at INFO
    try:
        validate_config(prepare_config(config))
    except Exception as exc:  # jsonschema.ValidationError, ValueError, KeyError, ...
        message = getattr(exc, "message", None) or str(exc)
        where = "/".join(str(x) for x in getattr(exc, "absolute_path", []) or [])
        problems.append(f"{p}: {type(exc).__name__}{' at ' + where if where else ''}: {message.splitlines()[0]}")
    finally:
        quiet.setLevel(level)
    dashboard = " ".join(str(c) for c in config.get("head_start_ray_commands", []))
    if "--dashboard-host=0.0.0.0" in dashboard:
        problems.append(f"{p}: head_start_ray_commands expose the dashboard on 0.0.0.0; use 127.0.0.1 and "
                        f"`ray dashboard FILE`")
    return problems

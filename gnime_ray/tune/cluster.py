"""Cluster helpers: which Ray a script uses (``connect``), and cluster files validated with Ray's
own autoscaler validation (prepare_config + validate_config, ray_internals.py).

``connect`` leaves the choice to Ray's own address resolution, ``ray.init``'s: the address given
(``--address HOST:PORT`` or ``ray://...``), else ``$RAY_ADDRESS`` (as ``ray job submit`` sets it),
else the cluster this machine joined with ``ray start`` / ``ray up`` (recorded by Ray in
``/tmp/ray/ray_current_cluster``, which is how ``ray submit`` scripts on the head reach it), else a
new private local Ray that ends with the script (``--address local`` asks for one outright;
``--address auto`` requires the recorded cluster). It therefore never attaches to another
process's private ``ray.init()``, which records nothing. Whether the Ray it ended up with was
started here is read from the process tree (its GCS server is a child of this process). A recorded
cluster that is gone (killed without ``ray stop``) makes Ray wait for it, as ``ray.init`` does
everywhere, printing "Failed to connect to GCS"; ``ray stop`` forgets it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional

from .. import GnimeRayError, echo
from .ray_internals import cluster_config_validators


def _started_here() -> bool:
    """Whether the Ray this process is connected to was started by it: its GCS server is a child of
    this process (a private local Ray), not a process of a cluster this process joined."""
    import psutil  # a dependency of Ray

    return any(p.name().startswith("gcs_server") for p in psutil.Process().children(recursive=True))


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None,
            verbose: bool = False, log: Callable[[str], None] = echo) -> bool:
    """Join the cluster named by ``address`` / ``$RAY_ADDRESS`` / this machine's ``ray start``,
    else start a private local Ray (module docstring). Returns True when Ray was started here
    (a private instance), False when a cluster was joined. Worker output stays in Ray's log
    folder unless ``verbose``."""
    import ray

    if ray.is_initialized():
        log("ray: already initialised in this process")
        return False
    opts = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    local = dict(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    if address == "local":
        context = ray.init(address="local", **local, **opts)
    else:
        # Ray's own resolution: the address given, else $RAY_ADDRESS, else the cluster this machine
        # joined with `ray start` / `ray up`, else (address None only) a new private instance
        joining = address not in (None, "auto") or bool(os.environ.get("RAY_ADDRESS"))
        if (num_cpus is not None or num_gpus is not None) and joining:
            log("ray: --num-cpus applies to a private local Ray only; the cluster's own resources are used")
        target = None if address == "auto" else address
        try:
            try:
                context = ray.init(address=target, **({} if joining else local), **opts)
            except ValueError:  # Ray found this machine's `ray start` cluster: no local resources to give
                if joining:
                    raise
                joining = True
                if num_cpus is not None or num_gpus is not None:
                    log("ray: --num-cpus applies to a private local Ray only; the cluster's own resources are used")
                context = ray.init(address=target, **opts)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or os.environ.get("RAY_ADDRESS") or "this machine's `ray start` cluster"
            raise GnimeRayError(f"--address {where}: cannot connect to a Ray cluster there "
                                f"({str(exc).splitlines()[0]}); `ray stop` forgets a cluster that is gone, "
                                f"--address local starts a private Ray") from None
        if not _started_here():
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            log(f"ray: connected to the cluster at {ray.get_runtime_context().gcs_address} ({nodes} "
                f"node{'s' if nodes != 1 else ''}, {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                f"{ray.cluster_resources().get('GPU', 0):g} GPUs now)")
            return False
        if address == "auto":
            ray.shutdown()
            raise GnimeRayError("--address auto: this machine is not a node of a running Ray cluster (none started "
                                "with `ray start` / `ray up`); pass HOST:PORT, or leave --address out for a "
                                "private local Ray")
    logs = os.path.join(context.address_info["session_dir"], "logs")
    log(f"ray: started a private local Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
        f"{ray.cluster_resources().get('GPU', 0):g} GPUs; its logs under {logs})")
    return True


def validate_cluster_file(path: str) -> list[str]:
    """Problems of a cluster file, one line each (empty: valid)."""
    import yaml

    prepare_config, validate_config = cluster_config_validators()
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

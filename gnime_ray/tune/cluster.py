"""Cluster helpers: which Ray a script uses (``connect``), and cluster files validated with Ray's
own autoscaler validation (prepare_config + validate_config, ray_internals.py).

``connect`` never attaches to another process's private ``ray.init()``: it joins a cluster only
when told (``--address HOST:PORT`` or ``ray://...``, ``$RAY_ADDRESS`` as ``ray job submit`` sets
it, ``--address auto``) or when this machine is a node of a cluster started with ``ray start`` /
``ray up`` (recorded by Ray in ``/tmp/ray/ray_current_cluster``, which is how ``ray submit`` scripts
on the head reach it); otherwise, or with ``--address local``, it starts a private local Ray that
ends with the script. A recorded cluster is taken as current while ``ray start``'s raylet for it
still runs on this machine (a process whose command line names that GCS address; read from
/proc, so on Linux, where Ray clusters run; elsewhere the record is trusted as Ray trusts it): a
cluster killed without ``ray stop`` leaves its record behind, on which Ray's own ``ray.init`` waits
minutes before failing. No connection is timed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional

from .. import GnimeRayError, echo
from .ray_internals import cluster_config_validators, recorded_cluster_address


def _recorded_cluster() -> Optional[str]:
    """The address of the cluster this machine joined with ``ray start``, while its raylet runs here."""
    address = recorded_cluster_address()
    if not address or not _raylet_of(address):
        return None
    return address


def _raylet_of(address: str, proc: Path = Path("/proc")) -> bool:
    """Whether a raylet of the cluster whose GCS is at ``address`` runs on this machine (module
    docstring; True where there is no /proc to read)."""
    if not proc.is_dir():
        return True
    flag = f"--gcs-address={address}".encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        if argv[0].endswith(b"raylet") and flag in argv:
            return True
    return False


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
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "auto"):
        recorded = _recorded_cluster()
        if recorded is None and address == "auto":
            raise GnimeRayError("--address auto: this machine is not a node of a running Ray cluster (none started "
                                "with `ray start` / `ray up` answers); pass HOST:PORT, or leave --address out for a "
                                "private local Ray")
        address = recorded or "local"
    if address != "local":
        if num_cpus is not None or num_gpus is not None:
            log("ray: --num-cpus applies to a private local Ray only; the cluster's own resources are used")
        try:
            ray.init(address=address, **opts)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise GnimeRayError(f"--address {address}: cannot connect to a Ray cluster there "
                                f"({str(exc).splitlines()[0]})") from None
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        log(f"ray: connected to the cluster at {address} ({nodes} node{'s' if nodes != 1 else ''}, "
            f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs now)")
        return False
    context = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **opts)
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

"""What a worker process of a study holds, and the study's once-only tasks.

Nothing large travels through Ray's object store. Every process loads prepare's outputs (f, f_E,
logits, maps) and the trained GNIMEs from its node's cache, and a node whose cache lacks them
fetches them from the artifact store under the results root (store/artifacts.py), where the
process that produced them published them. The prepared inputs are kept per worker process
(Ray reuses workers), so a node loads them once per process, not once per task (``prepared``).
``prepare_task`` prepares once per study; ``speed_task`` makes the study's one speed decision on a
node where its trials run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from .. import echo
from ..data import IMAGE_SHAPES
from ..pipeline.prepare import Prepared, prepare, prepare_aux
from ..study.opening import decide_speed
from ..study.spec import StudySpec
from .nodes import NodeCheck, ensure_node, node_name
from .placement import Placement
from .resources import cap_gpu_memory, device_for, node_cpus

_prepared: dict[tuple, Prepared] = {}
_prepared_lock = threading.Lock()


def prepared(study: StudySpec, device: str, log: Callable[[str], None] = echo) -> Prepared:
    """This process's prepared inputs of ``study`` (loaded from the node's cache or the
    artifact store; kept for the next task of the same study in this worker); ``log``: where
    preparing reports its progress."""
    key = (study.dataset, study.preset, study.study_seed, study.explainers, study.variant, study.cache_dir,
           study.data_root, study.out, device)
    with _prepared_lock:  # an attack pool's threads load them once
        if key not in _prepared:
            _prepared.clear()
            _prepared[key] = prepare(study.dataset, study.preset, study.study_seed, explainers=study.explainers,
                                     variant=study.variant, cache_dir=study.cache_dir, data_root=study.data_root,
                                     device=device, out=study.out, log=log)
        return _prepared[key]


def prepare_task(study: StudySpec, placement: Placement, check: NodeCheck, progress: Optional[Any] = None) -> dict:
    """Prepare once per study, on every CPU of its node (everything else waits for it), and
    publish the results as artifacts; with an auxiliary attacker dataset, query f with it once.
    ``progress``: a ray.util.queue.Queue the driver reads prepare's progress lines from."""
    ensure_node(check)
    cap_gpu_memory(placement.gpu_trial)
    device = device_for(placement.gpu_trial)
    t0 = time.perf_counter()
    log = echo if progress is None else (lambda line: progress.put_nowait(line.strip()))
    with node_cpus():
        prep = prepared(study, device, log)
        if study.aux_dataset != "same":
            prepare_aux(prep, study.aux_dataset, study.preset, study.study_seed, explainers=study.explainers,
                        variant=study.variant, cache_dir=study.cache_dir, data_root=study.data_root, device=device)
    return {"node": node_name(), "seconds": time.perf_counter() - t0, "from_cache": prep.from_cache,
            "accuracies": prep.accuracies, "images": len(prep.dataset)}


def speed_task(study: StudySpec, check: NodeCheck) -> dict:
    """The study's one speed decision (study/opening.py ``decide_speed``), made on a node where its trials run,
    with the torch threads a trial's task has there, at the dataset's image shape and the networks'
    width; the driver records it and every process of the study follows it."""
    ensure_node(check)
    decision = decide_speed("cpu", study.preset, shape=IMAGE_SHAPES[study.dataset], cache_dir=study.cache_dir)
    return {**decision, "node": node_name()}

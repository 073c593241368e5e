"""Building a model directory on Ray: the steps of
:func:`~musicrec.recommender.pipeline.build_model_dir`, each placed where it runs best.

- **CF training** is one Ray task. When the cluster has a GPU and ``implicit`` was built
  with CUDA (``implicit.gpu.HAS_CUDA``), the task reserves a GPU and fits implicit's GPU
  ALS; otherwise it fits the CPU ALS of :class:`~musicrec.recommender.cf.CFModel`.
- **The content → CF mapping and the blend** (:meth:`HybridModel.fit`) are a second task.
- **The index build and the write** are a third task, pinned to the driver's node (the
  output folder is the driver's), which runs
  :func:`~musicrec.recommender.model_dir.write_hybrid_model_dir`: the same files and manifest
  as the local path.

Objects move between tasks through Ray's object store, never through files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data.logs import ListeningLog
from musicrec.embedding.distributed import cluster_gpus, import_ray, ray_runtime
from musicrec.errors import ParameterError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.model_dir import write_hybrid_model_dir
from musicrec.recommender.pipeline import BuildInputs

log = logging.getLogger(__name__)


def _fit_cf_task(model: CFModel, log_: ListeningLog, use_gpu: bool) -> CFModel:
    return model.set_params(use_gpu=use_gpu).fit(log_)


def _fit_hybrid_task(hybrid: HybridModel, cf: CFModel | None, content_ids: list[str] | None,
                     content: np.ndarray | None) -> HybridModel:
    return hybrid.blend(cf=cf, content_ids=content_ids, content=content)


def _write_task(out: str, hybrid: HybridModel, options: dict[str, Any]) -> str:
    return str(write_hybrid_model_dir(out, hybrid=hybrid, **options))


def build_with_ray(
    out: str | Path,
    inputs: BuildInputs | None = None,
    *,
    address: str | None = None,
    num_cpus: int = 2,
    use_gpu: bool | str = "auto",
    **keywords: Any,
) -> Path:
    """:func:`~musicrec.recommender.pipeline.build_model_dir` on Ray: the same
    :class:`~musicrec.recommender.pipeline.BuildInputs` (or its fields as keywords) and
    the same model directory.

    Parameters
    ----------
    out : str or Path
    inputs : BuildInputs, optional
    address : str or None
        A Ray cluster to join; ``None`` starts a local runtime of ``num_cpus`` CPUs.
    num_cpus : int
        CPUs of the local runtime.
    use_gpu : bool or "auto"
        Train CF on a GPU worker; ``"auto"``: when the cluster has a GPU.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> build_with_ray("model/", log=log, content_ids=ids, content=vectors)  # doctest: +SKIP
    """
    import_ray()
    job = BuildInputs.of(inputs, keywords)
    if use_gpu not in (True, False, "auto"):
        raise ParameterError(f"use_gpu={use_gpu!r} must be True, False or 'auto'")
    options = job.write_options(job.fit_served())  # the choice runs here, on the driver
    with ray_runtime(address=address, num_cpus=num_cpus) as ray:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        gpu = bool(use_gpu) if use_gpu != "auto" else cluster_gpus(ray) >= 1
        cf_ref = None
        if job.log is not None:
            place = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
            logging.getLogger(__name__).info("training CF on Ray (%s)", "GPU" if gpu else "CPU")
            cf_ref = ray.remote(_fit_cf_task).options(**place).remote(
                job.cf_model or CFModel(), ray.put(job.log), gpu)
        hybrid_ref = ray.remote(_fit_hybrid_task).options(num_cpus=1).remote(
            job.hybrid or HybridModel(), cf_ref, job.content_ids, job.content)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                              soft=False)
        done = ray.remote(_write_task).options(num_cpus=1, scheduling_strategy=here).remote(
            str(out), hybrid_ref, options)
        return Path(ray.get(done))

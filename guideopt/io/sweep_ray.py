"""Sweep scenarios on a Ray cluster (``guideopt sweep --ray ADDRESS``); Ray is optional.

Ray is imported only here, only when asked for: ``pip install 'guideopt[ray]'``. The
address is Ray's: ``auto`` (the cluster this machine belongs to), ``local`` (a new
one-machine cluster for this sweep), ``ray://HOST:10001`` or ``HOST:6379``. When Ray is
already initialised in this process (a notebook, a test), that cluster is used as it is.
Every node needs guideopt installed, the same version as here. Each task plans a chunk of
scenarios with the same function a local worker runs, so the rows are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from guideopt.errors import InvalidRequestError
from guideopt.io.sweep_rows import Rows, Todo, chunks, plan_chunk

RAY_INSTALL = "pip install 'guideopt[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidRequestError(
            f"running on Ray needs Ray ({RAY_INSTALL}), or leave out --ray to run on local processes", field="ray"
        ) from None
    return ray


def ray_results(todo: Todo, address: str, workers: int | None, started: Callable[[], None]) -> Iterator[tuple[str, Rows]]:
    """(scenario id, rows) of each scenario, in the order Ray finishes them."""
    ray = import_ray()
    connected_here = _connect(ray, address)
    try:
        cpus = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1)(plan_chunk)
        pending = [task.remote(chunk) for chunk in chunks(todo, cpus)]
        started()
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield from ray.get(ref)
    finally:
        if connected_here:
            ray.shutdown()


def _connect(ray: Any, address: str) -> bool:
    """Join (or start) the cluster; False when this process was already connected."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidRequestError(
            f"cannot connect to Ray at {address!r} ({first}); start a cluster (ray start --head) or give --ray local", field="ray"
        ) from None
    return True

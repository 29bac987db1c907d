"""Where a benchmark's work runs: in this process, in local worker processes (the default), or on a
Dask distributed cluster (`--cluster ADDRESS`, or `--cluster local:N` for a LocalCluster here).

A job is a plain function and its picklable arguments; each worker opens its own PyBullet connection
and its own onnxruntime sessions (PyBullet clients do not survive being passed between processes, and
onnxruntime ignores OMP_NUM_THREADS, so every session is made with an explicit thread count). Results
come back in the order of the jobs, so a run's results do not depend on where it ran.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from perception.errors import PerceptError
from perception.installed import require


class Pool:
    """Runs jobs and yields their results in order, reporting each finished job to `progress`."""

    def __init__(self, description: str, submit: Callable[[Callable[..., Any], list[Any]], Iterator[Any]]):
        self.description = description
        self._submit = submit

    def map(
        self,
        function: Callable[[Any], Any],
        jobs: list[Any],
        progress: Callable[[int, int, float], None] | None = None,
    ) -> list[Any]:
        start, results = time.monotonic(), []
        for result in self._submit(function, jobs):
            results.append(result)
            if progress:
                progress(len(results), len(jobs), time.monotonic() - start)
        return results


def default_workers() -> int:
    return os.cpu_count() or 1


@contextmanager
def open_pool(workers: int, cluster: str | None = None, connect_timeout_s: float = 10.0) -> Iterator[Pool]:
    """A pool of `workers` local processes (1: this process), or the Dask cluster at `cluster`."""
    if cluster:
        with _dask_pool(cluster, connect_timeout_s) as pool:
            yield pool
        return
    if workers <= 1:
        yield Pool("this process", lambda function, jobs: (function(job) for job in jobs))
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as executor:
        yield Pool(f"{workers} local worker processes", lambda function, jobs: executor.map(function, jobs))


@contextmanager
def _dask_pool(cluster: str, connect_timeout_s: float) -> Iterator[Pool]:
    require("distributed", "--cluster")
    from distributed import Client, LocalCluster

    local: Any = None
    address: Any = cluster
    if cluster.startswith("local:"):
        count = cluster.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise PerceptError(f"--cluster: expected local:N with N >= 1 workers, found {cluster!r}")
        local = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None
        )
        address, description = local, f"a Dask LocalCluster of {count} workers"
    else:
        description = f"the Dask cluster at {cluster}"
    try:
        client = Client(address, timeout=f"{connect_timeout_s}s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        if local is not None:
            local.close()
        raise PerceptError(f"--cluster: cannot reach a Dask scheduler at {cluster} ({exc})") from None

    def submit(function: Callable[..., Any], jobs: list[Any]) -> Iterator[Any]:
        futures = client.map(function, jobs, pure=False)
        for future in futures:
            yield future.result()

    try:
        workers = len(client.scheduler_info().get("workers", {}))
        yield Pool(f"{description} ({workers} workers)", submit)
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if local is not None:
            local.close()

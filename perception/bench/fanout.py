"""Where a benchmark's work runs: in this process, in local worker processes (the default), or on a
Dask distributed cluster (`--cluster ADDRESS`, or `--cluster local:N` for a LocalCluster here).

A job is a plain function and its picklable arguments; each worker opens its own PyBullet connection
and its own onnxruntime sessions (PyBullet clients do not survive being passed between processes, and
onnxruntime ignores OMP_NUM_THREADS, so every session is made with an explicit thread count). Results
come back in the order of the jobs, so a run's results do not depend on where it ran.
"""

from __future__ import annotations

import importlib.util
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

    def __init__(
        self,
        description: str,
        submit: Callable[[Callable[..., Any], list[Any]], Iterator[Any]],
        start_s: float = 0.0,
    ):
        self.description = description
        self._submit = submit
        self.start_s = start_s  # starting the workers and importing the simulator and onnxruntime there

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


# Mesa's llvmpipe (PyBullet's EGL renderer on a CPU) rasterises with a thread per core of its own; with
# a worker process per core those threads only contend, so workers render on one thread each (measured,
# tabletop-standard on 2 cores: 2 workers 13.1 s with this, 13.9 s without; this process alone 22.6 s
# with Mesa's threads, 25.1 s without, so this process keeps them).
WORKER_ENVIRON = {"LP_NUM_THREADS": "0"}


def _set_worker_environ() -> None:
    os.environ.update(WORKER_ENVIRON)


def default_workers() -> int:
    return os.cpu_count() or 1


def warm_up(_: Any = None) -> int:
    """Import what the jobs need, so the first job's time is its own (run once on each worker). The
    simulator only where it is installed: scoring a labelled set or timing needs no sim extra."""
    import onnxruntime  # noqa: F401

    if importlib.util.find_spec("pybullet") is not None:
        import sim.dataset  # noqa: F401

    time.sleep(0.2)  # long enough that each worker of a pool takes one of these
    return os.getpid()


@contextmanager
def open_pool(
    workers: int, cluster: str | None = None, connect_timeout_s: float = 10.0, processes: bool = False
) -> Iterator[Pool]:
    """A pool of `workers` local processes (1: this process, unless `processes`), or the Dask cluster at
    `cluster`."""
    if cluster:
        with _dask_pool(cluster, connect_timeout_s) as pool:
            yield pool
        return
    if workers <= 1 and not processes:
        yield Pool("this process", lambda function, jobs: (function(job) for job in jobs))
        return
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_set_worker_environ
    ) as executor:
        started = time.monotonic()
        list(executor.map(warm_up, range(workers)))
        yield Pool(
            f"{workers} local worker process{'es' if workers > 1 else ''}",
            lambda function, jobs: executor.map(function, jobs),
            time.monotonic() - started,
        )


@contextmanager
def _dask_pool(cluster: str, connect_timeout_s: float) -> Iterator[Pool]:
    require("distributed", "--cluster")
    import dask
    from distributed import Client, LocalCluster

    started = time.monotonic()
    local: Any = None
    address: Any = cluster
    if cluster.startswith("local:"):
        count = cluster.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise PerceptError(f"--cluster: expected local:N with N >= 1 workers, found {cluster!r}")
        # Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536 so that memory goes back to the
        # system; glibc then unmaps every frame's buffers as they are freed, and rendering took about
        # 45% longer a job here (measured, 8 tabletop jobs: 1.8 s against 1.25 s). The workers this
        # starts go without it; a cluster of your own takes its own nanny settings.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        environ.update(WORKER_ENVIRON)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
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
        client.gather(client.map(warm_up, range(workers), pure=False))  # type: ignore[no-untyped-call]  # as jobs run: in a task thread
        yield Pool(f"{description} ({workers} workers)", submit, time.monotonic() - started)
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if local is not None:
            local.close()

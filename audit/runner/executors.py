"""Where the cells run: in-process, on N local worker processes, or on a Ray cluster.

A cell is computed by its task (`task.compute_cell(context, cell)`) with its own generator, so nothing depends
on which process runs it or in which order. Every cell also runs under the SAME thread settings in every
executor: BLAS/OpenMP pools (through threadpoolctl) and torch are limited to `THREADS_PER_CELL` threads while a
cell is computed, in the main process as in spawned workers and Ray workers. Floating-point reductions in BLAS
and torch depend on their thread count (and on the kernel OpenBLAS picks, e.g. with OPENBLAS_CORETYPE set), so
without this the last bit of a model's output could differ between executors. A cell that raises comes back as
an error record; the others go on.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
import warnings

__all__ = ["THREADS_PER_CELL", "compute_cell", "cell_threads", "run_local", "run_ray", "check_ray"]

# One thread per cell: parallelism comes from workers (--workers N), and results are identical at any N.
THREADS_PER_CELL = 1

_WORKER = None  # (task, context) of a worker process, set once by its initializer


@contextlib.contextmanager
def cell_threads(n: int = THREADS_PER_CELL):
    """Limit BLAS/OpenMP (threadpoolctl) and torch to `n` threads inside the block, restoring them afterwards."""
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # loaded by the task's setup_worker when its model needs it; never here
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None and before is not None:
                torch.set_num_threads(before)


def compute_cell(task, context, cell: dict) -> dict:
    """Compute one cell under the fixed thread settings. Never raises: an error comes back as its traceback, and
    the warnings libraries raised while computing it come back as text (reported once by the runner instead of
    leaking into the output of every worker)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # the task loads the libraries its model needs (e.g. torch) BEFORE the limits are set, so they apply
            task.setup_worker(context)
            with cell_threads():
                arrays = task.compute_cell(context, cell)
            error = None
        except Exception:  # a crashed cell is reported; the audit goes on with the others
            arrays, error = None, traceback.format_exc()
    seen = [f"{w.category.__name__}: {w.message}" for w in caught]
    return {"cell": cell["cell"], "arrays": arrays, "error": error, "seconds": time.perf_counter() - t0,
            "warnings": seen}


def _init_worker(task, context):
    global _WORKER
    _WORKER = (task, context)


def _worker_cell(cell):
    task, context = _WORKER
    return compute_cell(task, context, cell)


def run_local(task, context, cells, on_result, workers: int = 1):
    """Compute `cells` in this process (workers <= 1) or on `workers` spawned processes."""
    if workers <= 1:
        for cell in cells:
            on_result(compute_cell(task, context, cell))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: forking a process that holds torch/numba thread pools can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(task, context)) as pool:
        futures = [pool.submit(_worker_cell, c) for c in cells]
        for fut in as_completed(futures):
            on_result(fut.result())


def check_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("`--executor ray` needs Ray, which is not installed; install the optional extra: "
                         "pip install 'conformal-perception[ray]' (or pip install ray)") from None


def run_ray(task, context, cells, on_result, workers: int = 1, address: str | None = None):
    """Compute `cells` as Ray tasks (a private local Ray unless `address` or RAY_ADDRESS names a cluster)."""
    check_ray()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(compute_cell)
        task_ref, ctx_ref = ray.put(task), ray.put(context)
        pending = [remote.remote(task_ref, ctx_ref, c) for c in cells]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_result(ray.get(ref))
    finally:
        if started:
            ray.shutdown()

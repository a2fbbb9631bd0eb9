"""Where the cells run: in-process, on N local worker processes, or on a Ray cluster.

A cell (one corruption at one severity, or the clean inputs) is corrupted with its own generator
(`registry.cell_rng`) and run through the model; nothing depends on which process runs it or in which order,
so every executor returns identical outputs for the same seed. A cell that raises is returned as an error
record; the others go on.
"""
from __future__ import annotations

import os
import time
import traceback

import numpy as np

_CTX = None  # the worker's copy of the run context (set once per worker process)


def compute_cell(ctx: dict, task: dict) -> dict:
    """Corrupt the pool for one cell and run the model. Never raises: errors come back as text."""
    from conformal.audit import registry

    t0 = time.perf_counter()
    try:
        if ctx.get("task") == "detection":  # a simulated detector: the cell is its detections on the pool
            from conformal.audit.detection import compute_cell as detection_cell

            return dict(detection_cell(ctx, task), seconds=time.perf_counter() - t0)
        inputs = ctx["inputs"]
        if task["name"] != "clean":
            rng = registry.cell_rng(ctx["seed"], task["name"], task["severity"])
            inputs = registry.corrupt_inputs(ctx["modality"], inputs, task["name"], task["severity"],
                                             task["params"], rng)
        probs = np.asarray(ctx["predictor"].predict_proba(inputs), dtype=np.float64)
        n = len(ctx["inputs"])
        if probs.shape != (n, ctx["n_classes"]):
            raise ValueError(f"model outputs have shape {probs.shape}; expected ({n}, {ctx['n_classes']})")
        examples = [np.array(x) for x in inputs[: ctx["n_examples"]]]
        return {"cell": task["cell"], "probs": probs, "examples": examples, "error": None,
                "seconds": time.perf_counter() - t0}
    except Exception:  # a crashed cell is reported; the audit goes on with the others
        return {"cell": task["cell"], "probs": None, "arrays": None, "examples": [], "error": traceback.format_exc(),
                "seconds": time.perf_counter() - t0}


def _init_worker(ctx):
    global _CTX
    _CTX = ctx
    try:  # one thread per worker: N workers must not each spawn a full-size thread pool
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _worker_task(task):
    return compute_cell(_CTX, task)


def run_local(ctx, tasks, on_result, workers: int = 1):
    if workers <= 1:
        for task in tasks:
            on_result(compute_cell(ctx, task))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: forking a process that holds torch/numba thread pools can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(ctx,)) as pool:
        futures = [pool.submit(_worker_task, t) for t in tasks]
        for fut in as_completed(futures):
            on_result(fut.result())


def check_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("`--executor ray` needs Ray, which is not installed; install the optional extra: "
                         "pip install 'conformal-perception[ray]' (or pip install ray)") from None


def run_ray(ctx, tasks, on_result, workers: int = 1, address: str | None = None):
    check_ray()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:  # a private local Ray for this run
            ray.init(num_cpus=max(1, workers), include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_ray_cell)
        ctx_ref = ray.put(ctx)
        pending = [remote.remote(ctx_ref, t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_result(ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def _ray_cell(ctx, task):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    return compute_cell(ctx, task)

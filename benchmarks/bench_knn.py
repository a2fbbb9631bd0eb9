"""kNN feature distance (`conformal.KNNDistance`): per-frame and batch cost against NumPy brute force and faiss.

Data: SYNTHETIC Gaussian features, L2-normalised, a bank of 10,000 x 64 (float32), k = 10 (k-th distance).
Targets (issue 14): one frame <= 50 us; 10,000 queries <= 0.5 s on 2 cores. Peers measured in the same run on the
same data: a NumPy brute force (BLAS matrix product |q|^2 + |b|^2 - 2 q.b, then np.partition) and faiss
IndexFlatL2 (when faiss-cpu is installed). Threads: 2 for numba, faiss and BLAS (threadpoolctl when available).
Writes the `knn` section of docs/benchmarks.md.   Run: python benchmarks/bench_knn.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _report import machine_line, timeit, versions, write_section  # noqa: E402

from conformal import KNNDistance  # noqa: E402
from conformal._kernels import knn as _kk  # noqa: E402
from conformal.abstention.fitted import faiss_available  # noqa: E402

THREADS = 2


def numpy_knn(q, bank, k, chunk=1000):
    """Brute force with a BLAS product, chunked to bound memory: the k-th smallest L2 distance."""
    bb = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(q.shape[0])
    for lo in range(0, q.shape[0], chunk):
        qc = q[lo:lo + chunk]
        d2 = np.einsum("ij,ij->i", qc, qc)[:, None] + bb[None, :] - 2.0 * (qc @ bank.T)
        out[lo:lo + chunk] = np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, k - 1], 0.0))
    return out


def per_call_median(fn, calls, warmup=20):
    for _ in range(warmup):
        fn()
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return float(np.median(t))


def main(quick: bool = False):
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    m, d, k = 10_000, 64, 10
    n_batch = 2000 if quick else 10_000
    calls = 200 if quick else 1000
    bank = rng.normal(size=(m, d)).astype(np.float32)
    queries = (rng.normal(size=(n_batch, d)) + 0.2).astype(np.float32)
    knn = KNNDistance(k=k, backend="exact").fit(bank)
    bank_n = knn.bank_.astype(np.float32)
    q_n = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    rows = []

    acc, top = np.empty(_kk._BLOCK, np.float32), np.empty(k, np.float32)
    frame = q_n[0]
    rows.append(("one frame: kernel (knn_distance_one)",
                 per_call_median(lambda: _kk.knn_distance_one(frame, knn._bank_t, k, False, acc, top), calls)))
    one = queries[:1]
    rows.append(("one frame: KNNDistance.statistic (validation + normalisation + kernel)",
                 per_call_median(lambda: knn.statistic(one), calls)))
    rows.append(("peer, one frame: NumPy brute force", per_call_median(lambda: numpy_knn(q_n[:1], bank_n, k), calls)))
    rows.append((f"batch {n_batch}: KNNDistance.statistic (exact, {THREADS} threads)",
                 timeit(lambda: knn.statistic(queries), repeat=3)))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(THREADS):
            t_np = timeit(lambda: numpy_knn(q_n, bank_n, k), repeat=3)
    else:
        t_np = timeit(lambda: numpy_knn(q_n, bank_n, k), repeat=3)
    rows.append((f"peer, batch {n_batch}: NumPy brute force (BLAS)", t_np))
    check = {"numpy": float(np.abs(numpy_knn(q_n[:500], bank_n, k) - knn.statistic(queries[:500])).max())}
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(THREADS)
        fk = KNNDistance(k=k, backend="faiss").fit(bank)
        fk.statistic(queries[:10])  # builds the index once
        rows.append(("peer, one frame: faiss IndexFlatL2", per_call_median(lambda: fk.statistic(one), calls)))
        rows.append((f"peer, batch {n_batch}: faiss IndexFlatL2 ({THREADS} threads)",
                     timeit(lambda: fk.statistic(queries), repeat=3)))
        check["faiss"] = float(np.abs(fk.statistic(queries[:500]) - knn.statistic(queries[:500])).max())
    else:
        rows.append(("peer: faiss", float("nan")))

    def fmt(t):
        if not np.isfinite(t):
            return "not installed"
        return f"{t * 1e6:.1f} us" if t < 1e-3 else (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    md = ["### kNN feature distance (`KNNDistance`, `benchmarks/bench_knn.py`)", "",
          f"Machine: {machine_line()}. {versions('numpy', 'numba', 'faiss-cpu')}."
          + (" **--quick run (smaller sizes).**" if quick else ""), "",
          (f"**Shared, busy machine**: load average {load:.1f} on {os.cpu_count()} cores while this ran (other jobs "
           f"in parallel), so absolute times are pessimistic; " if load >= 1.0 else
           f"Load average {load:.1f} on {os.cpu_count()} cores while this ran (a quiet machine); ")
          + "the peers ran in the same process on the same data.", "",
          f"SYNTHETIC Gaussian features, L2-normalised bank of {m:,} x {d} float32, k = {k} (k-th distance). "
          f"One-frame rows: median of {calls} single calls after warm-up; batch rows: median of 3 runs. "
          f"Max |difference| to the exact kernel on 500 queries: "
          + ", ".join(f"{n} {v:.1e}" for n, v in check.items()) + ".", "",
          "| what | time |", "|---|---|"]
    md += [f"| {name} | {fmt(t)} |" for name, t in rows]
    md += ["", "Targets (issue 14): one frame <= 50 us; 10,000 queries <= 0.5 s on 2 cores."]
    text = "\n".join(md)
    print(text)
    write_section("knn", text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)

"""Compile (or load from Numba's cache) the kernels of the common paths ahead of the first real call.

Numba compiles a kernel on its first call with a new signature, and caches the machine code on disk
(`cache=True`). In a fresh environment the first `fit` + `predict` therefore pays seconds of compilation; later
processes only load the cached code, but even that costs tens of milliseconds per kernel and a one-off
initialisation of Numba itself (a few hundred ms). `warmup()` pays both up front:

- once after installing (``conformal-audit warmup``, or ``python -c "import conformal; conformal.warmup()"``
  in a container build) it fills the cache, so no user process compiles;
- at the start of a long-running process (a robot's perception node) it loads the cached code, so the first
  frame does not wait for it.

The cache lives in each package's ``__pycache__`` when it is writable; for a read-only install Numba falls back
to a per-user cache directory (``~/.cache/numba`` on Linux), or to ``$NUMBA_CACHE_DIR`` when that is set.
Measured times are in docs/benchmarks.md (section warm-up).
"""
from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["warmup"]


def _probs(rng, n: int, k: int, dtype) -> np.ndarray:
    p = rng.dirichlet(np.full(k, 0.3), size=n)
    return p.astype(dtype)


def warmup(*, dtypes=(np.float32, np.float64), detection: bool = True, verbose: bool = False) -> dict:
    """Run every score, calibrator, abstention statistic and (optionally) the conformal detector once on tiny
    inputs of each dtype, probabilities and logits, small and large inputs (serial and parallel kernels).

    Returns {step: seconds}. Takes no user data and changes no state; safe to call more than once.
    """
    from conformal.abstention import DualThresholdConformal
    from conformal.calibrators import ClassConditionalConformalClassifier, SplitConformalClassifier
    from conformal.scores import score_names

    rng = np.random.default_rng(0)
    times: dict = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        times[name] = time.perf_counter() - t0
        if verbose:
            print(f"[warmup] {name}: {times[name]:.3f} s")

    labels = rng.integers(0, 10, 600)
    for dtype in dtypes:
        small, big = _probs(rng, 600, 10, dtype), _probs(rng, 40, 1000, dtype)  # serial and parallel kernels
        logits = np.log(small.astype(np.float64) + 1e-12).astype(dtype)

        def scores(small=small, big=big, logits=logits):
            for name in score_names():
                for randomized in (False, True):
                    cp = SplitConformalClassifier(score=name, alpha=0.1, randomized=randomized,
                                                  random_state=0).fit(small, labels)
                    cp.predict_sets(small[:1])
                    cp.predict_sets(small)
                    cp.predict_pvalues(small[:2])
                SplitConformalClassifier(score=name, alpha=0.1, inputs="logits").fit(logits, labels).predict_sets(
                    logits[:3])
                big_labels = labels[: big.shape[0]] % big.shape[1]
                SplitConformalClassifier(score=name, alpha=0.2).fit(big, big_labels).predict_sets(big)
            ClassConditionalConformalClassifier(score="aps", alpha=0.2).fit(small, labels).predict_sets(small)
            # K <= 32 in parallel chunks (the small-K kernel; `small` alone runs serially)
            SplitConformalClassifier(score="aps", alpha=0.1).fit(small, labels).predict_sets(np.tile(small, (6, 1)))

        def abstention(small=small):
            from conformal.abstention import STATISTICS

            for stat in STATISTICS:
                score = "lac" if stat in ("top1_score", "credibility") else "raps"
                d = DualThresholdConformal(score=score, alpha=0.1, statistic=stat, rule="budget",
                                           rule_params={"max_abstain": 0.1}, random_state=0).fit(small, labels)
                d.predict(small[:1])
                d.predict(small)
            # the union rule with the kNN kernels (one-frame and batch paths)
            feats = np.log(small + 1e-6)
            u = DualThresholdConformal(score="lac", alpha=0.1, statistic=("entropy", "knn"), rule="budget",
                                       random_state=0).fit(small, labels, features=feats)
            u.predict(small[:1], features=feats[:1])
            u.predict(small, features=feats)

        def per_frame(small=small):
            _frames(small, labels)

        timed(f"scores and calibrators ({np.dtype(dtype).name})", scores)
        timed(f"abstention ({np.dtype(dtype).name})", abstention)
        timed(f"per-frame online path ({np.dtype(dtype).name})", per_frame)
    if detection:
        timed("conformal detection (2D and 3D)", _detection)
    return times


def _frames(probs: np.ndarray, labels: np.ndarray) -> None:
    """The per-frame kernels of `conformal.online` (what adapters.StreamingConformal runs): every score, every
    kernel statistic, with and without the shift monitor."""
    from conformal import online
    from conformal.calibrators import SplitConformalClassifier
    from conformal.scores import score_names

    k = probs.shape[1]
    for name in score_names():
        cal = SplitConformalClassifier(score=name, alpha=0.1, randomized=False).fit(probs, labels)
        for stat in list(online.STATISTIC_KINDS) + [None]:
            scorer = online.FrameScorer(cal, stat)
            buf, scores, order = np.empty((1, k)), np.empty((4, k)), np.empty(k, dtype=np.int64)
            scorer.bind(buf, scores, order)(probs[:1], cal.qhat_, 0)
            if stat is not None and stat != "set_size":
                mart = online.ShiftMartingale(np.sort(np.random.default_rng(0).random(50)))
                scorer.bind(buf, scores, order, mart)(probs[:1], cal.qhat_, 1, 0.5)
        for window in (None, 8):
            thr = online.OnlineThreshold(cal.calibration_scores_, alpha=0.1, window=window,
                                         q_calibrated=float(cal.qhat_))
            thr.reset(np.random.default_rng(0))
            thr.update(0.5, float(cal.qhat_))


def _detection() -> None:
    """Fit and predict ConformalDetector on a few hand-made frames (2D and 3D)."""
    from conformal.detection import ConformalDetector

    rng = np.random.default_rng(1)
    for dim in (2, 3):
        preds, gts = [], []
        for _ in range(40):
            m = 4
            if dim == 2:
                xy = rng.uniform(0, 400, (m, 2))
                wh = rng.uniform(20, 80, (m, 2))
                true = np.hstack([xy, xy + wh])
                key = "boxes"
            else:
                c = rng.uniform(-30, 30, (m, 3))
                size = rng.uniform(1, 4, (m, 3))
                true = np.hstack([c, size, rng.uniform(-3, 3, (m, 1))])
                key = "boxes3d"
            labels = rng.integers(0, 3, m)
            probs = rng.dirichlet(np.ones(3), m)
            probs[np.arange(m), labels] += 1.0
            probs /= probs.sum(1, keepdims=True)
            noisy = true + rng.normal(0, 0.5, true.shape)
            preds.append({key: noisy, "scores": rng.uniform(0.3, 1.0, m), "labels": probs.argmax(1),
                          "class_probs": probs})
            gts.append({key: true, "labels": labels})
        det = ConformalDetector(dim=dim, alpha=0.2, alpha_cls=0.2, recall_alpha=None,
                                score_threshold=0.0).fit(preds[:30], gts[:30])
        for f in preds[30:]:
            det.predict(f)

"""Shift-aware abstention on real Fashion-MNIST with the shipped CNN: the 18-cell protocol of issue 14.

Data (real Fashion-MNIST test split, never seen in training; one seeded permutation): calibration = 3000 images,
a kNN feature bank B (2000) and a clean fold F (1000: every tau, every p-value reference, the window rule's
clean fit); test T = 3000 other images, clean and under fog, contrast, rain, snow, gaussian_noise, motion_blur at
severities 1/3/5 (`perturbations.image.corrupt_batch`, seeded per cell). The window rule's regressor is fitted on
the fit pool G = train-split images 12000-12999, corrupted by the library's 14 corruptions that are never test
corruptions (S1-5), plus G clean (`adapters.shift`); the "held out" row also drops the test corruption's
ImageNet-C family from that suite. Nothing is fitted on T.

Rules (alpha 0.1 LAC sets, qhat on all 3000 calibration images, empty sets -> top-1; taus on F at a 10 % clean
budget, the union at 5 % + 5 %): entropy; kNN (k = 10-th nearest L2 distance of L2-normalised penultimate
features to B); union entropy OR kNN; window rule (ShiftAwareAbstention, estimator="regressor", trailing window
of 200, the cell's 3000 test images as one stream) + monitor (power-mixture martingale on kNN p-values against
F at level 0.01: after an alarm refuse until the window has 200 inputs from after it); the same with the test
family held out. safe = coverage among accepted >= 0.88 or abstention >= 0.95; harm = share of all inputs
accepted with a set that misses the label.

CNN outputs are cached under $BENCH_SHIFT_CACHE (default: a temp dir), so reruns take seconds.
Run: python benchmarks/bench_shift.py   (writes the `shift` section of docs/benchmarks.md)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._report import machine_line, versions, write_section  # noqa: E402

ALPHA, BUDGET, WINDOW = 0.1, 0.1, 200
TEST_CORRUPTIONS = ("fog", "contrast", "rain", "snow", "gaussian_noise", "motion_blur")
SEVERITIES = (1, 3, 5)
CACHE = Path(os.environ.get("BENCH_SHIFT_CACHE", Path(tempfile.gettempdir()) / "conformal_bench_shift"))
K_NN = 10


# --- model outputs, cached -------------------------------------------------------------------------------------
def _adapter():
    import torch

    from adapters import reference
    torch.set_num_threads(1)
    return reference.load("fashion_cnn")


def _outputs(adapter, images):
    """(probs, features) in one forward pass: features are the input of the last linear layer."""
    if hasattr(adapter, "predict_outputs"):
        out = adapter.predict_outputs(images)
        return np.asarray(out.probs, np.float64), np.asarray(out.features, np.float32)
    feats = []
    hook = adapter.model.head.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].detach().numpy()))
    try:
        logits = adapter.predict_logits(images)
    finally:
        hook.remove()
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True), np.concatenate(feats).astype(np.float32)


def _quality(images):
    """Per-image raw input-quality features of the library's `input_quality` statistic
    (`conformal.abstention.quality_features`: mean intensity, log RMS contrast, log Laplacian variance)."""
    from conformal.abstention import quality_features
    return quality_features(images, modality="camera")


def _cell(adapter, images, tag, corruption, severity, seed=0, quality=False):
    from perturbations import image as pim
    path = CACHE / f"{tag}_{corruption or 'clean'}_{severity}.npz"
    z = dict(np.load(path, allow_pickle=False)) if path.exists() else {}
    if "probs" not in z or (quality and "libquality" not in z):
        x = images
        if corruption is not None:
            rng = np.random.default_rng([seed, zlib.crc32(f"{tag}-{corruption}-{severity}".encode())])
            x = pim.corrupt_batch(images, corruption, severity, rng=rng)
        if "probs" not in z:
            z["probs"], z["features"] = _outputs(adapter, x)
        z["libquality"] = _quality(x)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, **z)
    return (z["probs"], z["features"]) + ((z["libquality"],) if quality else ())


class Quality:
    """`conformal.abstention.InputQuality` fitted on the clean bank images, applied to cached raw quality features
    (the same formula as its `statistic`, so the corrupted images need not be kept)."""

    def __init__(self, bank_images):
        from conformal.abstention import InputQuality
        self.iq = InputQuality(modality="camera").fit(bank_images)

    def __call__(self, feats):
        z = (feats - self.iq.center_) / self.iq.scale_
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, self.iq.precision_, z), 0.0))


class KNN:
    """k-th nearest-neighbour L2 distance of L2-normalised features to a bank (plain NumPy, for the benchmark;
    the library's fitted statistic replaces it once available)."""

    def __init__(self, bank, k=K_NN):
        self.bank = self._norm(bank)
        self.k = k

    @staticmethod
    def _norm(f):
        f = np.asarray(f, np.float64)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def __call__(self, feats):
        q = self._norm(feats)
        out = np.empty(q.shape[0])
        for lo in range(0, q.shape[0], 1000):
            d2 = np.maximum(2.0 - 2.0 * q[lo:lo + 1000] @ self.bank.T, 0.0)
            out[lo:lo + 1000] = np.sqrt(np.partition(d2, self.k - 1, axis=1)[:, self.k - 1])
        return out


def _knn_statistic():
    """The library's kNN statistic (`conformal.abstention.KNNDistance`) when it exists, else the NumPy helper."""
    try:
        from conformal.abstention import KNNDistance
    except ImportError:
        return KNN, "NumPy helper (k=10, L2-normalised)"

    def fitted(bank):
        return KNNDistance(k=K_NN, normalize=True, backend="exact").fit(np.asarray(bank, np.float32)).statistic
    return fitted, "conformal.abstention.KNNDistance(k=10, normalize=True), exact kernel"


# --- metrics ---------------------------------------------------------------------------------------------------
def _metrics(abstain, covered):
    acc = ~abstain
    ab = float(abstain.mean())
    cov = float(covered[acc].mean()) if acc.any() else float("nan")
    harm = float((acc & ~covered).mean())
    safe = (acc.any() and cov >= 0.88) or ab >= 0.95
    return {"abstain": ab, "acc_cov": cov, "harm": harm, "safe": bool(safe)}


def _monitored_window(est, probs, knn, mon_ref, rng, monitor=True):
    from conformal.online import ShiftMonitor
    dec = est.predict(probs, shift_statistic=knn)
    abstain = dec.abstain.copy()
    alarm = None
    if monitor:
        mon = ShiftMonitor(mon_ref, method="power_mixture", level=0.01)
        mon.run(knn, rng=rng)
        alarm = mon.alarm_step
        if alarm is not None:
            abstain[alarm - 1: alarm - 1 + WINDOW] = True
    return abstain, dec.sets, alarm


def main():
    from adapters.datasets import load_fashion_mnist
    from adapters.shift import family, training_cells, window_training_set
    from conformal import ShiftAwareAbstention, SplitConformalClassifier
    from conformal.abstention import STATISTICS
    from conformal.online import ShiftMonitor, UnionShiftMonitor, detection_delay
    from conformal.quantile import sorted_quantile

    t_start = time.perf_counter()
    adapter = _adapter()
    xt, yt = load_fashion_mnist("test")
    xtr, ytr = load_fashion_mnist("train")
    xt, xtr = xt[..., None], xtr[..., None]
    perm = np.random.default_rng(0).permutation(xt.shape[0])
    cal, test = perm[:3000], perm[3000:6000]
    bank_i, fold_i = cal[:2000], cal[2000:]
    g = np.arange(12000, 13000)
    entropy = STATISTICS["entropy"]

    p_bank, f_bank = _cell(adapter, xt[bank_i], "bank", None, 0)
    p_fold, f_fold, q_fold_raw = _cell(adapter, xt[fold_i], "fold", None, 0, quality=True)
    quality = Quality(xt[bank_i])
    assert np.allclose(quality(_quality(xt[fold_i][:50])), quality.iq.statistic(xt[fold_i][:50]))
    q_fold = np.sort(quality(q_fold_raw))
    knn_cls, knn_doc = _knn_statistic()
    knn_stat = knn_cls(f_bank)

    def knn(f):
        return knn_stat(np.asarray(f, np.float32))
    y_bank, y_fold, y_test, y_g = yt[bank_i], yt[fold_i], yt[test], ytr[g]
    cal_p, cal_y = np.concatenate([p_bank, p_fold]), np.concatenate([y_bank, y_fold])
    lac = SplitConformalClassifier(score="lac", alpha=ALPHA, allow_empty=False).fit(cal_p, cal_y)
    e_fold, k_fold = np.sort(entropy(p_fold)), np.sort(knn(f_fold))
    tau = {"entropy": sorted_quantile(e_fold, BUDGET), "knn": sorted_quantile(k_fold, BUDGET),
           "entropy5": sorted_quantile(e_fold, BUDGET / 2), "knn5": sorted_quantile(k_fold, BUDGET / 2)}

    # window rule: clean fit on F, regressor on G corrupted by the other 14 corruptions (or fewer)
    base = ShiftAwareAbstention(alpha=ALPHA, max_abstain=BUDGET, window=WINDOW, estimator="atc")
    base.fit(p_fold, y_fold, shift_statistic=knn(f_fold))

    def g_outputs(corruption, severity):
        p, f = _cell(adapter, xtr[g], "pool", corruption, severity)
        return p, knn(f)

    t0 = time.perf_counter()
    suite_all = training_cells(exclude=TEST_CORRUPTIONS)
    x_all, r_all, names_all = window_training_set(base, g_outputs, y_g, suite_all, n_windows=20, rng=0)
    fam_of = np.array(["clean" if n == "clean" else family(n.rsplit("-", 1)[0]) for n in names_all])
    t_suite = time.perf_counter() - t0

    def fitted(exclude_group=None, estimator="regressor"):
        keep = fam_of != exclude_group if exclude_group else np.ones(len(names_all), bool)
        return ShiftAwareAbstention(alpha=ALPHA, max_abstain=BUDGET, window=WINDOW, estimator=estimator).fit(
            p_fold, y_fold, shift_statistic=knn(f_fold), window_features=x_all[keep], required_abstention=r_all[keep])

    fams = {family(c) for c in TEST_CORRUPTIONS}
    variants = {"regressor": (fitted(estimator="regressor"), {f: fitted(f, "regressor") for f in fams}),
                "max": (fitted(estimator="max"), {f: fitted(f, "max") for f in fams})}
    from conformal import DualThresholdConformal
    lib_union = DualThresholdConformal(score="lac", alpha=ALPHA, statistic=("entropy", "knn"), rule="budget",
                                       rule_params={"max_abstain": BUDGET}, random_state=0)
    lib_union.fit(cal_p, cal_y, features=np.concatenate([f_bank, f_fold]).astype(np.float32))
    rows = {k: {} for k in ("entropy", "knn", "union", "union (library rule)", "window (regressor) + monitor",
                            "window (regressor), family held out, + monitor", "window (ATC) + monitor",
                            "window (ATC), no monitor", "window (max) + monitor",
                            "window (max), family held out, + monitor")}
    delays, cp_delays, accuracy = {}, {}, {}
    cells = [("clean", None, 0)] + [(f"{c}-{s}", c, s) for c in TEST_CORRUPTIONS for s in SEVERITIES]
    t0 = time.perf_counter()
    for name, corruption, severity in cells:
        p, f = _cell(adapter, xt[test], "test", corruption, severity)
        sets = lac.predict_sets(p)
        covered = sets[np.arange(3000), y_test]
        accuracy[name] = float((p.argmax(1) == y_test).mean())
        e, kd = entropy(p), knn(f)
        rows["entropy"][name] = _metrics(e > tau["entropy"], covered)
        rows["knn"][name] = _metrics(kd > tau["knn"], covered)
        rows["union"][name] = _metrics((e > tau["entropy5"]) | (kd > tau["knn5"]), covered)
        dl = lib_union.predict(p, features=np.asarray(f, np.float32))
        rows["union (library rule)"][name] = _metrics(np.asarray(dl.abstain), np.asarray(dl.sets)[np.arange(3000),
                                                                                                  y_test])
        for v, (est, held) in variants.items():
            for row, e in ((f"window ({v}) + monitor", est),
                           (f"window ({v}), family held out, + monitor", held[family(corruption)] if corruption
                            else est)):
                ab, wsets, _ = _monitored_window(e, p, kd, k_fold, rng=1)
                rows[row][name] = _metrics(ab, wsets[np.arange(3000), y_test])
        for row, mon in (("window (ATC) + monitor", True), ("window (ATC), no monitor", False)):
            ab, wsets, _ = _monitored_window(base, p, kd, k_fold, rng=1, monitor=mon)
            rows[row][name] = _metrics(ab, wsets[np.arange(3000), y_test])
        if corruption is not None:
            # stationary shifted streams: 200 streams of 200 inputs, monitor from the first input
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            qd = quality(_cell(adapter, xt[test], "test", corruption, severity, quality=True)[2])
            d, d2 = [], []
            for _ in range(200):
                idx = rng.choice(3000, 200, replace=False)
                mon = ShiftMonitor(k_fold, method="power_mixture", level=0.01)
                d.append(detection_delay(mon.run(kd[idx], rng=rng), 0.01))
                # the library's UnionShiftMonitor: one monitor each at level 0.005 (P(any false alarm) <= 0.01)
                both = UnionShiftMonitor({"knn": k_fold, "input_quality": q_fold}, level=0.01)
                d2.append(detection_delay(both.run({"knn": kd[idx], "input_quality": qd[idx]}, rng=rng).max(1),
                                          both.level_each))
            delays[name] = tuple(
                (float(np.median([x for x in v if x is not None])) if any(x is not None for x in v) else None,
                 float(np.mean([x is not None for x in v]))) for v in (d, d2))
            # change point: 200 clean inputs then 200 shifted, CUSUM at level 1e-4 and the power mixture
            p_clean, f_clean = _cell(adapter, xt[test], "test", None, 0)
            k_clean = knn(f_clean)
            cp = {"power_mixture": [], "cusum": []}
            for _ in range(100):
                stream = np.concatenate([k_clean[rng.choice(3000, 200, replace=False)],
                                         kd[rng.choice(3000, 200, replace=False)]])
                for method, level in (("power_mixture", 0.01), ("cusum", 1e-4)):
                    mon = ShiftMonitor(k_fold, method=method, level=level)
                    cp[method].append(detection_delay(mon.run(stream, rng=rng), level, start=200))
            cp_delays[name] = {m: (float(np.median([x for x in v if x])) if any(v) else None,
                                   float(np.mean([x is not None and x > 0 for x in v])),
                                   float(np.mean([x == 0 for x in v]))) for m, v in cp.items()}
    t_cells = time.perf_counter() - t0

    # false alarms over 2000 clean inputs (200 streams drawn from the 3000 clean test images), and with smaller
    # references (the reference's own sampling error, see conformal.online.ShiftMonitor)
    p_clean, f_clean = _cell(adapter, xt[test], "test", None, 0)
    k_clean = knn(f_clean)
    rng = np.random.default_rng(7)
    fa = {}
    for n_ref in (1000, 200, 50):
        for method, level in (("power_mixture", 0.01), ("cusum", 1e-4), ("jumper", 0.01)):
            if n_ref != 1000 and method != "power_mixture":
                continue
            alarms = 0
            for _ in range(200):
                ref = k_fold if n_ref == 1000 else rng.choice(k_fold, n_ref, replace=False)
                mon = ShiftMonitor(ref, method=method, level=level)
                mon.run(k_clean[rng.choice(3000, 2000, replace=False)], rng=rng)
                alarms += mon.alarm
            fa[(n_ref, method)] = alarms / 200
    q_clean = quality(_cell(adapter, xt[test], "test", None, 0, quality=True)[2])
    alarms = 0
    for _ in range(200):
        idx = rng.choice(3000, 2000, replace=False)
        both = UnionShiftMonitor({"knn": k_fold, "input_quality": q_fold}, level=0.01)
        both.run({"knn": k_clean[idx], "input_quality": q_clean[idx]}, rng=rng)
        alarms += both.alarm
    fa[(1000, "kNN + input quality, UnionShiftMonitor (2 x power_mixture at 0.005)")] = alarms / 200

    # per-frame streaming step cost with the monitor
    from adapters.streaming import StreamingConformal
    from conformal import DualThresholdConformal
    dual = DualThresholdConformal(score="lac", alpha=ALPHA, statistic="entropy", rule="budget",
                                  rule_params={"max_abstain": BUDGET}, random_state=0).fit(cal_p, cal_y)
    frames = p_clean[:2000]
    step_cost = {}
    for label, kw in (("jumper (default, fused)", {"martingale": "jumper"}),
                      ("power_mixture", {"martingale": "power_mixture"}),
                      ("cusum", {"martingale": "cusum", "monitor_level": 1e-4})):
        s = StreamingConformal(dual, reference=p_fold, **kw)
        for r in frames[:200]:
            s.step(r)
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for r in frames:
                s.step(r)
            runs.append((time.perf_counter() - t0) / frames.shape[0] * 1e6)
        step_cost[label] = float(np.median(runs))
    s = StreamingConformal(dual, reference_statistics=k_fold, martingale="power_mixture")
    for r, v in zip(frames[:200], k_clean[:200]):
        s.step(r, monitor_value=float(v))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for r, v in zip(frames, k_clean[:2000]):
            s.step(r, monitor_value=float(v))
        runs.append((time.perf_counter() - t0) / frames.shape[0] * 1e6)
    step_cost["power_mixture on kNN (monitor_value, kNN itself not timed)"] = float(np.median(runs))

    total = time.perf_counter() - t_start
    _write(rows, accuracy, delays, cp_delays, fa, step_cost, knn_doc, total, t_suite, t_cells, len(names_all),
           {fam: int(np.sum(fam_of != fam)) for fam in held})


def _fmt(v, nd=3):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _summary(cells):
    shifted = {k: v for k, v in cells.items() if k != "clean"}
    harms = [v["harm"] for v in shifted.values()]
    worst = max(shifted, key=lambda k: shifted[k]["harm"])
    return (sum(v["safe"] for v in shifted.values()), float(np.mean(harms)), float(np.max(harms)), worst,
            cells["clean"]["abstain"], cells["clean"]["acc_cov"])


def _write(rows, accuracy, delays, cp_delays, fa, step_cost, knn_doc, total, t_suite, t_cells, n_windows,
           n_windows_held):
    s = {k: _summary(v) for k, v in rows.items()}
    lines = ["## shift: shift-aware abstention on real Fashion-MNIST (issue 14)", "",
             f"{machine_line()}; {versions('numpy', 'numba', 'torch')}. Shipped `fashion_cnn`; 3,000 clean "
             f"calibration images (kNN bank 2,000 + clean fold 1,000) and 3,000 test images per cell; 6 corruptions "
             f"x severities 1/3/5 = 18 cells; LAC alpha 0.1; 10 % clean abstention budget. kNN: {knn_doc}. The "
             f"window rule's regressor: {n_windows} windows of 200 from 1,000 train-split images (clean + the 14 "
             f"non-test corruptions at S1-5), fitted on none of the test images; held out: "
             + ", ".join(f"{k} {v}" for k, v in sorted(n_windows_held.items())) + " windows left. "
             f"Run time {total:.0f} s (training windows {t_suite:.0f} s, cells {t_cells:.0f} s; cached CNN "
             f"outputs). Script: benchmarks/bench_shift.py (the protocol in its docstring).", "",
             "`union` splits the 10 % budget 5 % + 5 % with both taus on the 1,000-image fold (the prototype's "
             "protocol); `union (library rule)` is `DualThresholdConformal(statistic=(\"entropy\", \"knn\"), "
             "rule=\"budget\")` fitted on all 3,000 calibration images with its own folds (its kNN bank is its qhat "
             "fold, 1,500 images; its sets may be empty).", "",
             "Read with care: the window rows were all run and are all shown; which variant to recommend (ATC, or "
             "the max of ATC and the regressor) was decided after seeing these numbers, so their 'met' below is not "
             "an out-of-sample result. The window rows' sets come from LAC fitted on the 1,000-image fold (the "
             "per-input rows': on all 3,000 calibration images). 'safe' counts a cell with >= 95 % abstention as "
             "safe however poor the few accepted inputs are; harm is the continuous version. There is no guarantee "
             "under shift for any row; the clean row is the only exchangeable one. One corruption seed per cell.",
             "",
             "| rule | safe cells | mean harm | worst harm (cell) | clean abstention | clean coverage among accepted |",
             "|---|---|---|---|---|---|"]
    for k, (safe, mean, worst, wc, cab, ccov) in s.items():
        lines.append(f"| {k} | {safe}/18 | {mean:.3f} | {worst:.3f} ({wc}) | {cab:.3f} | {ccov:.3f} |")
    lines += ["", "Per cell: abstention / coverage among accepted / harm (top-1 accuracy in the first column).", "",
              "| cell | accuracy | " + " | ".join(rows) + " |", "|---|---|" + "---|" * len(rows)]
    for cell in rows["entropy"]:
        vals = [f"{rows[r][cell]['abstain']:.2f} / {_fmt(rows[r][cell]['acc_cov'], 2)} / {rows[r][cell]['harm']:.3f}"
                + ("" if rows[r][cell]["safe"] else " *") for r in rows]
        lines.append(f"| {cell} | {accuracy[cell]:.2f} | " + " | ".join(vals) + " |")
    lines += ["", "`*` = unsafe cell.", "",
              "Monitor (power-mixture martingale on kNN p-values against the 1,000-image clean fold, alarm at 100): "
              "median inputs to alarm over 200 streams of 200 shifted inputs (detection rate); change point: 200 "
              "clean inputs then 200 shifted, 100 streams, median delay after the change (detection rate, false "
              "alarms before the change), power mixture and CUSUM (level 1e-4).", "",
              "| cell | stationary: kNN | stationary: kNN + input_quality (UnionShiftMonitor, 2 x level/2) | "
              "change point: power mixture | change point: CUSUM |",
              "|---|---|---|---|---|"]
    for cell, ((med, rate), (med2, rate2)) in delays.items():
        cp = cp_delays[cell]
        lines.append(f"| {cell} | {_fmt(med, 0)} ({rate:.2f}) | {_fmt(med2, 0)} ({rate2:.2f}) | "
                     + " | ".join(f"{_fmt(cp[m][0], 0)} ({cp[m][1]:.2f}, fa {cp[m][2]:.2f})"
                                  for m in ("power_mixture", "cusum")) + " |")
    lines += ["", "False alarms over 2,000 clean inputs (200 streams): "
              + "; ".join(f"{m} with a {n}-input reference {v:.3f}" for (n, m), v in fa.items())
              + ". A smaller reference raises the power mixture's rate above its nominal level: the p-values are "
              "exchangeable with the reference only conditionally (conformal.online.ShiftMonitor's Notes).", "",
              "Per-frame `StreamingConformal.step` with the monitor (mean over 2,000 frames, median of 5 runs; "
              "a shared 2-core machine, so other jobs inflate these): "
              + "; ".join(f"{k} {v:.1f} us" for k, v in step_cost.items()) + ".", ""]
    # targets vs measured
    u = s["union"]

    def med(c, j=0):
        return delays[c][j][0] if delays[c][j][0] is not None else float("inf")
    fcs = max(med(c) for c in ("fog-5", "contrast-5", "snow-5"))
    blur = max(med(c) for c in ("motion_blur-3", "motion_blur-5"))
    blur2 = max(med(c, 1) for c in ("motion_blur-3", "motion_blur-5"))
    fcs2 = max(med(c, 1) for c in ("fog-5", "contrast-5", "snow-5"))
    lines += ["Targets (issue 14) against measured:", "",
              "| target | measured | met |", "|---|---|---|",
              f"| union >= 12/18 safe, worst harm <= 0.11, mean <= 0.06, clean abstention <= 0.10 | {u[0]}/18, "
              f"{u[2]:.3f}, {u[1]:.3f}, {u[4]:.3f} | "
              f"{'yes' if u[0] >= 12 and u[2] <= 0.11 and u[1] <= 0.06 and u[4] <= 0.10 else 'no'} |",
              *[f"| window ({v}) + monitor >= 17/18 safe, worst harm <= 0.075, mean <= 0.03 | {w[0]}/18, "
                f"{w[2]:.3f}, {w[1]:.4f} | {'yes' if w[0] >= 17 and w[2] <= 0.075 and w[1] <= 0.03 else 'no'} |"
                for v, w in (("regressor", s["window (regressor) + monitor"]), ("ATC", s["window (ATC) + monitor"]),
                             ("max", s["window (max) + monitor"]))],
              *[f"| >= 15/18 with the test family held out: {v} | {h[0]}/18 | {'yes' if h[0] >= 15 else 'no'} |"
                for v, h in (("regressor", s["window (regressor), family held out, + monitor"]),
                             ("ATC (fitted on clean data only)", s["window (ATC) + monitor"]),
                             ("max", s["window (max), family held out, + monitor"]))],
              f"| monitor <= 5 inputs for fog/contrast/snow 5 | worst median {_fmt(fcs, 0)} | "
              f"{'yes' if fcs <= 5 else 'no'} |",
              f"| monitor <= 10 for blur 3/5 | kNN: worst median {_fmt(blur, 0)}; kNN + input quality: "
              f"{_fmt(blur2, 0)} (fog/contrast/snow 5: {_fmt(fcs2, 0)}) | "
              f"{'yes' if blur <= 10 else ('with input quality' if blur2 <= 10 else 'no')} |",
              f"| monitor <= 35 for gaussian noise 5 | {_fmt(med('gaussian_noise-5'), 0)} | "
              f"{'yes' if med('gaussian_noise-5') <= 35 else 'no'} |",
              f"| <= 1 % false alarms over 2,000 clean inputs | {fa[(1000, 'power_mixture')]:.3f} | "
              f"{'yes' if fa[(1000, 'power_mixture')] <= 0.01 else 'no'} |",
              f"| per-frame streaming step with the monitor <= 30 us | {step_cost['power_mixture']:.1f} us | "
              f"{'yes' if step_cost['power_mixture'] <= 30 else 'no'} |", ""]
    text = "\n".join(lines)
    write_section("shift", text)
    print(text)


if __name__ == "__main__":
    main()

"""Exact binomial statistics against scipy, checksummed JSON state, and set metrics against direct counts."""
import json

import numpy as np
import pytest

from conformal import io, metrics, stats


def test_binomial_tails_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 3000))
        k = int(rng.integers(-1, n + 2))
        p = float(rng.random())
        assert stats.binom_cdf(k, n, p) == pytest.approx(scipy_stats.binom.cdf(k, n, p), abs=1e-10)
        assert stats.binom_sf(k, n, p) == pytest.approx(scipy_stats.binom.sf(k, n, p), abs=1e-10)


def test_clopper_pearson_matches_beta_quantiles_and_covers():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 10), (5, 10), (10, 10), (900, 1000), (3, 100000), (1, 1)]:
        lo, hi = stats.clopper_pearson(k, n, 0.95)
        want_lo = 0.0 if k == 0 else scipy_stats.beta.ppf(0.025, k, n - k + 1)
        want_hi = 1.0 if k == n else scipy_stats.beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(want_lo, abs=1e-9) and hi == pytest.approx(want_hi, abs=1e-9)
    # exact intervals are conservative: coverage >= 95% for a fixed p over 2,000 draws (binomial noise: 3 SE)
    rng = np.random.default_rng(1)
    hits = [lo <= 0.3 <= hi for lo, hi in (stats.clopper_pearson(int(k), 50) for k in rng.binomial(50, 0.3, 2000))]
    assert np.mean(hits) >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 2000)


def test_stats_bad_inputs():
    with pytest.raises(ValueError, match="`p` must be a probability"):
        stats.binom_cdf(1, 10, 1.5)
    with pytest.raises(TypeError, match="`n` must be an int"):
        stats.binom_cdf(1, 10.0, 0.5)
    with pytest.raises(ValueError, match="`k` must be in"):
        stats.clopper_pearson(11, 10)
    with pytest.raises(ValueError, match="`level`"):
        stats.clopper_pearson(1, 10, level=95)


def test_state_roundtrip_is_bit_exact_and_tamper_evident(tmp_path):
    payload = {"a": np.array([0.1, np.inf, -np.inf, 1 / 3]), "b": np.arange(6, dtype=np.int64).reshape(2, 3),
               "c": {"x": 1, "y": [1.5, "s", None], "z": True}, "f32": np.array([0.1], dtype=np.float32)}
    path = io.save_state(tmp_path / "s.json", "Thing", payload)
    back = io.load_state(path, "Thing")
    np.testing.assert_array_equal(back["a"], payload["a"])
    assert back["b"].dtype == np.int64 and back["b"].shape == (2, 3)
    assert back["f32"].dtype == np.float32 and back["f32"][0] == np.float32(0.1)
    assert back["c"] == payload["c"]
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == io.SCHEMA_VERSION and len(doc["sha256"]) == 64
    doc["payload"]["c"]["x"] = 2
    with pytest.raises(io.StateError, match="checksum"):
        io.loads_state(json.dumps(doc), "Thing")
    doc = json.loads(path.read_text())
    doc["schema_version"] = 99
    with pytest.raises(io.StateError, match="schema_version 99"):
        io.loads_state(json.dumps(doc), "Thing")
    with pytest.raises(io.StateError, match="holds a 'Thing'"):
        io.load_state(path, "Other")
    with pytest.raises(FileNotFoundError):
        io.load_state(tmp_path / "missing.json", "Thing")
    with pytest.raises(TypeError, match="cannot save"):
        io.dumps_state("Thing", {"obj": object()})
    with pytest.raises(TypeError, match="dtype complex128"):
        io.dumps_state("Thing", {"c": np.zeros(2, dtype=complex)})


def test_metrics_against_direct_counts():
    rng = np.random.default_rng(2)
    sets = rng.random((500, 6)) < 0.3
    labels = rng.integers(0, 6, 500)
    covered = np.array([sets[i, labels[i]] for i in range(500)])
    assert metrics.coverage(sets, labels) == covered.mean()
    cov, lo, hi = metrics.coverage_ci(sets, labels)
    assert cov == covered.mean() and lo < cov < hi
    assert metrics.mean_set_size(sets) == sets.sum() / 500
    assert metrics.empty_set_rate(sets) == np.mean(sets.sum(1) == 0)
    hist = metrics.set_size_histogram(sets)
    assert hist.shape == (7,) and hist.sum() == 500 and hist[2] == np.sum(sets.sum(1) == 2)
    strat = metrics.size_stratified_coverage(sets, labels)
    assert sum(c for c, _ in strat.values()) == 500
    assert strat[1][1] == covered[sets.sum(1) == 1].mean()
    ccc = metrics.class_conditional_coverage(sets, labels)
    for c in range(6):
        assert ccc[c] == covered[labels == c].mean()
    assert np.isnan(metrics.class_conditional_coverage(sets, np.zeros(500, dtype=int))[1])
    with pytest.raises(TypeError, match="`sets` must be a boolean"):
        metrics.coverage(sets.astype(int), labels)

"""Fitted label-free statistics (knn, mahalanobis, energy, input_quality): kernels against their NumPy twin,
faiss against the exact kernel, what each statistic measures, label-free signatures, clear errors and saved state.
"""
import inspect
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conformal
from conformal import Energy, InputQuality, KNNDistance, Mahalanobis
from conformal._kernels import knn as KK
from conformal.abstention import FITTED_STATISTICS
from conformal.abstention.fitted import faiss_available
from conformal.io import StateError
from tests.reference import knn as twin_knn

KN = "conformal._kernels.knn."


@pytest.mark.twin(KN + "knn_distances", KN + "_knn_row", KN + "_knn_rows4", KN + "knn_distance_one", KN + "_insert",
                  KN + "_finish", twin=twin_knn.knn_distances)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 1300), d=st.integers(1, 20), seed=st.integers(0, 2**31 - 1),
       mean=st.booleans(), ties=st.booleans(), data=st.data())
def test_knn_kernel_matches_numpy_twin(n, m, d, seed, mean, ties, data):
    rng = np.random.default_rng(seed)
    k = data.draw(st.integers(1, min(m, 12)))
    bank = rng.normal(size=(m, d)).astype(np.float32)
    q = rng.normal(size=(n, d)).astype(np.float32)
    if ties:  # repeated bank rows and queries on bank rows: equal distances, zeros
        bank = np.round(bank)
        q = np.concatenate([bank[: min(n, m)], np.round(q)])[:n]
    bank_t = np.ascontiguousarray(bank.T)
    q0 = q.copy()
    got = KK.knn_distances(q, bank_t, k, mean)
    want = twin_knn.knn_distances(q, bank_t, k, mean)
    np.testing.assert_array_equal(got, want)
    acc, top = np.empty(KK._BLOCK, np.float32), np.empty(k, np.float32)
    one = np.array([KK.knn_distance_one(q[i], bank_t, k, mean, acc, top) for i in range(n)])
    np.testing.assert_array_equal(one, want)
    np.testing.assert_array_equal(q, q0)
    # and the definition in float64 (up to float32 rounding)
    d64 = np.sqrt(((q[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1))
    ref = np.sort(d64, 1)[:, :k]
    np.testing.assert_allclose(got, ref.mean(1) if mean else ref[:, -1], rtol=1e-4, atol=1e-4)


@pytest.mark.twin(KN + "normalize_rows", KN + "_normalize_row", KN + "knn_distance_one_raw",
                  twin=twin_knn.normalize_rows)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), m=st.integers(1, 700), d=st.integers(1, 70), seed=st.integers(0, 2**31 - 1),
       f64=st.booleans(), zero=st.booleans(), normalize=st.booleans(), mean=st.booleans())
def test_normalize_and_one_frame_kernels_match_numpy_twins(n, m, d, seed, f64, zero, normalize, mean):
    """normalize_rows equals its twin bit for bit (float32 and float64 rows, zero rows); the fused one-frame
    kernel equals twin normalisation + the batch twin, so KNNDistance.statistic gives one frame exactly the value
    it gives that frame inside a batch."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * rng.uniform(0.01, 100)).astype(np.float64 if f64 else np.float32)
    if zero:
        x[0] = 0.0
    out = np.empty(x.shape, np.float32)
    KK.normalize_rows(x, out)
    np.testing.assert_array_equal(out, twin_knn.normalize_rows(x))
    k = int(rng.integers(1, min(m, 12) + 1))
    bank_t = np.ascontiguousarray(rng.normal(size=(d, m)).astype(np.float32))
    acc, top, qbuf = np.empty(KK._BLOCK, np.float32), np.empty(k, np.float32), np.empty(d, np.float32)
    q = twin_knn.normalize_rows(x) if normalize else x.astype(np.float32)
    want = twin_knn.knn_distances(q, bank_t, k, mean)
    got = [KK.knn_distance_one_raw(x[i:i + 1], normalize, bank_t, k, mean, acc, top, qbuf) for i in range(n)]
    np.testing.assert_array_equal(got, want)
    est = KNNDistance(k=k, normalize=normalize, aggregate="mean" if mean else "kth", backend="exact")
    est.fit(rng.normal(size=(m, d)))
    batch = est.statistic(x)
    np.testing.assert_array_equal([est.statistic(x[i:i + 1])[0] for i in range(n)], batch)


def _gauss(seed, n, d, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed (optional extra)")
@pytest.mark.parametrize("aggregate", ["kth", "mean"])
def test_faiss_backend_agrees_with_the_exact_kernel(aggregate):
    bank, q = _gauss(0, 3000, 24), _gauss(1, 500, 24, shift=0.3)
    exact = KNNDistance(k=10, aggregate=aggregate, backend="exact").fit(bank)
    fast = KNNDistance(k=10, aggregate=aggregate, backend="faiss").fit(bank)
    assert fast.resolved_backend() == "faiss" and exact.resolved_backend() == "exact"
    np.testing.assert_allclose(fast.statistic(q), exact.statistic(q), rtol=0, atol=2e-4)
    auto = KNNDistance(k=10, backend="auto").fit(bank)
    assert auto.resolved_backend() == "exact"  # below FAISS_MIN_BANK rows


def test_knn_measures_distance_to_the_bank():
    bank = _gauss(0, 2000, 16)
    knn = KNNDistance(k=10).fit(bank)
    near, far = knn.statistic(_gauss(1, 300, 16)), knn.statistic(_gauss(2, 300, 16, shift=1.5))
    assert np.median(far) > np.median(near)
    assert np.all(KNNDistance(k=1).fit(bank).statistic(bank[:50]) == 0.0)  # a bank row is its own neighbour
    raw = KNNDistance(k=3, normalize=False).fit(bank)
    assert np.all(raw.statistic(bank[:5] * 10) > raw.statistic(bank[:5]))  # scale matters without normalising
    mean = KNNDistance(k=3, aggregate="mean").fit(bank).statistic(near[:, None] * np.ones((1, 16)))
    kth = KNNDistance(k=3).fit(bank).statistic(near[:, None] * np.ones((1, 16)))
    assert np.all(mean <= kth)


def test_mahalanobis_uses_labels_in_fit_only_and_matches_the_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    centres = np.array([[0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]], float)
    x = centres[y] + rng.normal(size=(900, 4)) * [1, 2, 0.5, 1]
    m = Mahalanobis(shrinkage=0.0).fit(x, y)
    q = rng.normal(size=(20, 4)) * 3
    pooled = sum((x[y == c] - x[y == c].mean(0)).T @ (x[y == c] - x[y == c].mean(0)) for c in range(3)) / (900 - 3)
    prec = np.linalg.inv(pooled)
    ref = np.min([np.einsum("ij,jk,ik->i", q - x[y == c].mean(0), prec, q - x[y == c].mean(0)) for c in range(3)],
                 axis=0)
    np.testing.assert_allclose(m.statistic(q), np.sqrt(ref), rtol=1e-9)
    assert 0.0 <= Mahalanobis().fit(x, y).shrinkage_ <= 1.0
    with pytest.raises(ValueError, match="needs the calibration `labels`"):
        Mahalanobis().fit(x)
    assert list(inspect.signature(Mahalanobis.statistic).parameters) == ["self", "X"]


def test_energy_is_minus_t_logsumexp():
    z = np.random.default_rng(0).normal(size=(50, 7)) * 4
    e = Energy(temperature=2.0).fit(z)
    np.testing.assert_allclose(e.statistic(z), -2.0 * np.log(np.exp(z / 2.0).sum(1)), rtol=1e-12)
    with pytest.raises(ValueError, match="6 columns but the statistic was fitted with 7"):
        e.statistic(z[:, :6])


def test_input_quality_sees_fog_blur_and_point_dropout():
    from perturbations.image import corrupt_batch

    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(128, 50, size=(240, 32, 32)), 0, 255).astype(np.uint8)  # synthetic textures
    q = InputQuality().fit(clean[:160])
    assert q.modality_ == "camera" and q.feature_names == ("mean", "log_std", "log_lap")
    base = np.median(q.statistic(clean[160:]))
    for name in ("fog", "gaussian_blur"):
        bad = corrupt_batch(clean[160:, :, :, None], name, 5, rng=0)[..., 0]
        assert np.median(q.statistic(bad)) > 3 * base, name
    clouds = [rng.normal(size=(int(rng.integers(900, 1100)), 4)) * [5, 5, 1, 0.1] + [10, 0, 0, 0.5]
              for _ in range(120)]
    ql = InputQuality(modality="lidar").fit(clouds[:80])
    assert ql.n_columns_ == 4 and len(ql.feature_names) == 5
    sparse = [c[::5] for c in clouds[80:]]  # 80 % of the points dropped
    assert np.median(ql.statistic(sparse)) > 3 * np.median(ql.statistic(clouds[80:]))
    with pytest.raises(ValueError, match="camera data"):
        q.statistic(clouds[:3])


@pytest.mark.parametrize("cls", sorted(FITTED_STATISTICS.values(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_statistic_signatures_take_no_label(cls):
    params = inspect.signature(cls.statistic).parameters
    assert list(params) == ["self", "X"]
    assert cls.requires in ("features", "logits", "inputs")


def test_bad_inputs_are_named():
    knn = KNNDistance(k=3).fit(_gauss(0, 50, 4))
    with pytest.raises(ValueError, match="`features` has 5 columns but the statistic was fitted with 4"):
        knn.statistic(_gauss(0, 3, 5))
    with pytest.raises(TypeError, match="`features` must be a float32 or float64"):
        knn.statistic(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="NaN or inf"):
        knn.statistic(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="fewer than k=10"):
        KNNDistance().fit(_gauss(0, 5, 4))


@pytest.mark.parametrize("make,fit_args", [
    (lambda: KNNDistance(k=5, aggregate="mean"), lambda: (_gauss(0, 200, 6).astype(np.float32),)),
    (lambda: Mahalanobis(), lambda: (_gauss(0, 200, 6), np.arange(200) % 4)),
    (lambda: Energy(temperature=0.5), lambda: (_gauss(0, 200, 6),)),
    (lambda: InputQuality(), lambda: (np.random.default_rng(0).integers(0, 255, (60, 9, 9)).astype(np.uint8),)),
], ids=["knn", "mahalanobis", "energy", "input_quality"])
def test_save_load_round_trip_and_tampering(make, fit_args, tmp_path):
    args = fit_args()
    est = make().fit(*args)
    est.save(tmp_path / "s.json")
    back = conformal.load(tmp_path / "s.json")
    assert type(back) is type(est)
    np.testing.assert_array_equal(back.statistic(args[0]), est.statistic(args[0]))
    text = (tmp_path / "s.json").read_text()
    assert "pickle" not in text and json.loads(text)["sha256"]
    doc = json.loads(text)
    fitted = doc["payload"]["fitted"]
    key = sorted(fitted)[0]
    if isinstance(fitted[key], dict):
        fitted[key]["data"][0] = 1e300 if fitted[key]["data"][0] != 1e300 else 0.0
    else:
        fitted[key] = fitted[key] + 1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(StateError, match="checksum"):
        conformal.load(tmp_path / "bad.json")


def test_loaded_states_are_checked_for_sense():
    knn = KNNDistance(k=5).fit(_gauss(0, 40, 3))
    state = knn.to_dict()
    few = {**state, "fitted": {"bank": knn.bank_[:3], "n_features": 3}}  # fewer rows than k
    with pytest.raises(StateError, match="bank"):
        KNNDistance.from_dict(few)
    not32 = {**state, "fitted": {"bank": knn.bank_ + 1e-12, "n_features": 3}}
    with pytest.raises(StateError, match="float32"):
        KNNDistance.from_dict(not32)
    m = Mahalanobis().fit(_gauss(0, 60, 3), np.arange(60) % 2)
    st_ = m.to_dict()
    with pytest.raises(StateError, match="positive definite"):
        Mahalanobis.from_dict({**st_, "fitted": {**st_["fitted"], "precision": -np.eye(3)}})


def test_npz_layout_stores_a_large_bank_binary_and_checked(tmp_path):
    bank = _gauss(0, 5000, 32)
    knn = KNNDistance(k=10).fit(bank)
    q = _gauss(1, 20, 32)
    knn.save(tmp_path / "bank.npz")
    assert (tmp_path / "bank.npz").stat().st_size < 2 * bank.size * 8  # binary, not JSON text
    for back in (KNNDistance.load(tmp_path / "bank.npz"), conformal.load(tmp_path / "bank.npz")):
        np.testing.assert_array_equal(back.statistic(q), knn.statistic(q))
        np.testing.assert_array_equal(back.bank_, knn.bank_)
    with np.load(tmp_path / "bank.npz", allow_pickle=False) as z:
        files = dict(z.items())
    files["a0"] = files["a0"].copy()
    files["a0"][0, 0] += 1.0
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(StateError, match="checksum"):
        KNNDistance.load(tmp_path / "bad.npz")
    with pytest.raises(StateError, match="not a 'Mahalanobis'"):
        Mahalanobis.load(tmp_path / "bank.npz")
    # a whole union model too (nested estimators)
    from conformal import DualThresholdConformal

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=400)
    y = rng.integers(0, 4, 400)
    f = rng.normal(size=(400, 6))
    m = DualThresholdConformal(statistic=("entropy", "knn"), rule="budget", random_state=0).fit(p, y, features=f)
    m.save(tmp_path / "m.npz")
    back = conformal.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict(p, features=f).abstain, m.predict(p, features=f).abstain)


def test_input_quality_from_precomputed_features_equals_the_input_path():
    """fit_features / statistic_from_features on `quality_features` rows give fit / statistic's state and values
    (for a pipeline that keeps the 3-5 quality numbers, not the images or clouds)."""
    from conformal.abstention import quality_features

    rng = np.random.default_rng(1)
    clean = np.clip(rng.normal(128, 50, size=(120, 16, 16)), 0, 255).astype(np.uint8)  # synthetic textures
    a = InputQuality().fit(clean[:80])
    b = InputQuality(modality="camera").fit_features(quality_features(clean[:80], modality="camera"))
    for name in ("center_", "scale_", "precision_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(b.statistic_from_features(quality_features(clean[80:], modality="camera")),
                                  a.statistic(clean[80:]))
    clouds = [rng.normal(size=(200, 3)) * [5, 5, 1] for _ in range(40)]
    la, lb = InputQuality(modality="lidar").fit(clouds), InputQuality(modality="lidar").fit_features(
        quality_features(clouds, modality="lidar"))
    assert la.n_columns_ == lb.n_columns_ == 3
    np.testing.assert_array_equal(la.precision_, lb.precision_)
    with pytest.raises(ValueError, match="modality='camera' or 'lidar'"):
        InputQuality().fit_features(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="3 columns"):
        InputQuality(modality="camera").fit_features(np.zeros((10, 5)))
    with pytest.raises(ValueError, match="must have 3 columns"):
        b.statistic_from_features(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="feats"):
        b.statistic_from_features([[0.0, 0.0, 0.0]])

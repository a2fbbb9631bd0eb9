"""Scene-level LiDAR models on a small synthetic street scan (16 rings x 256 azimuths, ~4k points)."""
import numpy as np
import pytest

from perturbations import pointcloud as pc

pytest.importorskip("open3d")

SEEDS = range(3)


@pytest.fixture(scope="module")
def scan():
    from adapters.datasets import street_scan
    pts, ring, label = street_scan(16, 256, rng=0, return_labels=True)
    return pts, ring, label


def _mean(fn):
    return [float(np.mean([fn(s, seed) for seed in SEEDS])) for s in range(1, 6)]


def _decreasing(xs):
    return all(b < a for a, b in zip(xs, xs[1:]))


def test_synthetic_scan(scan):
    pts, ring, label = scan
    assert pts.dtype == np.float32 and pts.shape[1] == 4
    assert set(np.unique(label)) == {0, 1, 2} and set(np.unique(ring)) == set(range(16))
    assert 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1
    # ring estimate from elevation recovers the simulated rings
    from perturbations._pointcloud_scene import rings
    np.testing.assert_array_equal(rings(pts.astype(np.float64), n_rings=16), ring)
    from adapters.datasets import street_scan
    np.testing.assert_array_equal(street_scan(16, 256, rng=0), pts)


@pytest.mark.parametrize("name", ["fog", "rain", "snow"])
def test_weather_lowers_intensity_and_range(name, scan):
    pts = scan[0]
    clean_i, clean_r = pts[:, 3].mean(), np.linalg.norm(pts[:, :3], axis=1).mean()

    def kept_intensity(s, seed):
        # per returned point: rain / snow drop the returns under LISA's fixed threshold (the darkest), as
        # the reference does, so the plain output mean would rise; the survivors' own intensity must fall
        out, idx = pc.corrupt_with_index(pts, name, s, rng=seed)
        src = idx[idx >= 0]
        return clean_i * out[idx >= 0, 3].sum() / pts[src, 3].sum()

    inten = _mean(kept_intensity)
    rng_m = _mean(lambda s, seed: np.linalg.norm(pc.corrupt(pts, name, s, rng=seed)[:, :3], axis=1).mean())
    assert inten[0] < clean_i and _decreasing(inten), inten
    assert rng_m[0] < clean_r and rng_m[4] < rng_m[2] < rng_m[0], rng_m


def test_fog_physics(scan):
    pts = scan[0].astype(np.float64)
    r = np.linalg.norm(pts[:, :3], axis=1)
    for s in (1, 5):
        out, idx, ap = pc.corrupt_with_index(pts, "fog", s, rng=0, return_params=True)
        alpha = pc.parameters("fog", s)["alpha"]
        hard = idx >= 0
        # hard-target returns: same position, intensity x exp(-2 alpha R)
        np.testing.assert_allclose(out[hard, :3], pts[idx[hard], :3])
        np.testing.assert_allclose(out[hard, 3], pts[idx[hard], 3] * np.exp(-2 * alpha * r[idx[hard]]), rtol=1e-6)
        # fog returns are spurious near returns, all in front of the 8 m mark
        assert np.linalg.norm(out[~hard, :3], axis=1).max() < 8.0
    n_fog = [int((pc.corrupt_with_index(pts, "fog", s, rng=0)[1] < 0).sum()) for s in range(1, 6)]
    assert n_fog[0] < n_fog[2] < n_fog[4]


def test_precipitation_particle_returns_are_near(scan):
    out, idx = pc.corrupt_with_index(scan[0], "snow", 5, rng=0)
    d = np.linalg.norm(out[idx < 0, :3], axis=1)
    assert len(d) > 0 and d.min() >= 0.9  # LISA ignores particles closer than its R_min = 0.9 m


def test_wet_ground(scan):
    pts, _, label = scan
    ground = label == 0

    def ground_intensity(s, seed):
        out, idx = pc.corrupt_with_index(pts, "wet_ground", s, rng=seed, ground_mask=ground)
        return out[ground[idx], 3].mean()

    def ground_lost(s, seed):
        out, idx = pc.corrupt_with_index(pts, "wet_ground", s, rng=seed, ground_mask=ground)
        return ground.sum() - ground[idx].sum()

    gi = _mean(ground_intensity)
    assert gi[0] < pts[ground, 3].mean() and _decreasing(gi)
    lost = _mean(ground_lost)
    assert lost[0] > 0 and all(b >= a for a, b in zip(lost, lost[1:])) and lost[4] > lost[0]
    out, idx = pc.corrupt_with_index(pts, "wet_ground", 5, rng=0, ground_mask=ground)
    np.testing.assert_array_equal(out[~ground[idx]], pts[idx[~ground[idx]]])  # only the ground changes
    # lost ground returns are the grazing, far ones
    kept = np.zeros(len(pts), bool)
    kept[idx] = True
    r = np.linalg.norm(pts[:, :3], axis=1)
    assert r[ground & ~kept].min() > np.median(r[ground])
    with pytest.raises(ValueError, match="ground_mask"):
        pc.corrupt(pts, "wet_ground", 1, ground_mask=np.ones(3, bool))


def test_ring_corruptions(scan):
    pts, ring, _ = scan
    for name in ("beam_missing", "beam_reduction"):
        counts = []
        for s in range(1, 6):
            out, idx = pc.corrupt_with_index(pts, name, s, rng=0, ring=ring, n_rings=16)
            counts.append(len(np.unique(ring[idx])))
        assert _decreasing(counts), (name, counts)
    # beam_missing removes whole rings: every ring is either complete or absent
    out, idx = pc.corrupt_with_index(pts, "beam_missing", 3, rng=0, ring=ring, n_rings=16)
    for r in np.unique(ring):
        assert (ring[idx] == r).sum() in (0, (ring == r).sum())
    # beam_reduction also halves the returns along each kept ring
    out, idx = pc.corrupt_with_index(pts, "beam_reduction", 1, rng=0, ring=ring, n_rings=16)
    for r in np.unique(ring[idx]):
        assert abs(2 * (ring[idx] == r).sum() - (ring == r).sum()) <= 1
    with pytest.raises(ValueError, match="ring"):
        pc.corrupt(pts, "beam_missing", 1, ring=ring[:-1])


def test_crosstalk_incomplete_echo_motion(scan):
    pts, _, label = scan
    fr = [int((pc.corrupt_with_index(pts, "crosstalk", s, rng=0)[1] < 0).sum()) for s in range(1, 6)]
    assert fr == [round(f * len(pts)) for f in (0.004, 0.008, 0.012, 0.016, 0.020)]
    cars = label == 2
    lost = [cars.sum() - cars[pc.corrupt_with_index(pts, "incomplete_echo", s, rng=0, object_mask=cars)[1]].sum()
            for s in range(1, 6)]
    assert lost == [round(d * cars.sum()) for d in (0.55, 0.65, 0.75, 0.85, 0.95)]
    shift = _mean(lambda s, seed: np.linalg.norm(pc.corrupt(pts, "motion_distortion", s, rng=seed)[:, :3] - pts[:, :3],
                                                 axis=1).mean())
    assert all(b > a for a, b in zip(shift, shift[1:]))
    out = pc.corrupt(pts, "motion_distortion", 3, rng=0)
    np.testing.assert_array_equal(out[:, 2:], pts[:, 2:])  # height and intensity untouched


def test_intensity_scale_option(scan):
    """nuScenes-style 0..255 intensities give the same result scaled, when told the scale."""
    pts = scan[0].astype(np.float64)
    big = pts.copy()
    big[:, 3] *= 255.0
    for name in ("fog", "snow", "wet_ground"):
        a = pc.corrupt(pts, name, 4, rng=0)
        b = pc.corrupt(big, name, 4, rng=0, intensity_max=255.0)
        np.testing.assert_allclose(b[:, :3], a[:, :3], atol=1e-9)
        np.testing.assert_allclose(b[:, 3], a[:, 3] * 255.0, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="intensity_max"):
        pc.corrupt(pts, "fog", 1, intensity_max=0)

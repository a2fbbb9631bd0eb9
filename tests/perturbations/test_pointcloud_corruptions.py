"""The corrupt / corrupt_with_index contract over the whole registry, and each object-level model's effect."""
import numpy as np
import pytest

from perturbations import pointcloud as pc

pytest.importorskip("open3d")  # occlusion and lidar ray-cast; the scene fixture is ray-cast too


def sphere(n=1024, seed=0, extra=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if extra:  # a label column that must travel with its point
        x = np.c_[x, np.arange(n)]
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def scan():
    from adapters.datasets import street_scan
    return street_scan(16, 256, rng=0, return_labels=True)


def test_names_and_params():
    assert len(pc.names("object")) == 15 and len(pc.names("scene")) == 9
    assert pc.names("all") == pc.names("object") + pc.names("scene")
    with pytest.raises(ValueError, match="level"):
        pc.names("camera")
    assert set(pc.REGISTRY) == set(pc.names("all"))
    assert pc.REGISTRY["occlusion"].options == ("mesh", "up") and pc.REGISTRY["gaussian"].options == ()
    assert pc.REGISTRY["fog"].group == "scene" and len(pc.REGISTRY["fog"].table) == 5
    row = pc.parameters("gaussian", 2)
    row["sigma"] = 99.0  # a copy: the table is not changed
    assert pc.parameters("gaussian", 2)["sigma"] == 0.015


@pytest.mark.parametrize("name", pc.names("all"))
def test_contract(name, scan):
    """Shape/dtype/columns kept, input untouched, same seed same output, index rows carry their extras."""
    pts = sphere() if name in pc.OBJECT_CORRUPTIONS else np.c_[scan[0], scan[1]].astype(np.float64)
    before = pts.copy()
    out, idx, applied = pc.corrupt_with_index(pts, name, 3, rng=7, return_params=True)
    np.testing.assert_array_equal(pts, before)
    assert out.dtype == pts.dtype and out.ndim == 2 and out.shape[1] == pts.shape[1]
    assert idx.dtype == np.int64 and idx.shape == (len(out),)
    assert idx.min() >= -1 and idx.max() < len(pts)
    src = idx >= 0
    extra = 3 if name in pc.OBJECT_CORRUPTIONS else 4
    np.testing.assert_array_equal(out[src, extra:], pts[idx[src], extra:])
    assert np.isfinite(out[:, :3]).all()
    assert applied["name"] == name and applied["severity"] == 3
    again, idx2 = pc.corrupt_with_index(pts, name, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(idx2, idx)
    np.testing.assert_array_equal(pc.corrupt(pts, name, 3, rng=7), out)


@pytest.mark.parametrize("name", ["cutout", "density_dec", "beam_missing", "beam_reduction", "incomplete_echo"])
def test_removal_only_corruptions_keep_points_exactly(name, scan):
    pts = sphere() if name in pc.OBJECT_CORRUPTIONS else scan[0]
    out, idx = pc.corrupt_with_index(pts, name, 4, rng=1)
    assert (idx >= 0).all() and len(np.unique(idx)) == len(idx) < len(pts)
    np.testing.assert_array_equal(out, pts[idx])


@pytest.mark.parametrize("bad, exc", [
    (np.zeros(5), ValueError), (np.zeros((5, 2)), ValueError), (np.zeros((0, 3)), ValueError),
    (np.array([[0.0, 0.0, np.nan], [1, 1, 1]]), ValueError), (np.array([[0.0, np.inf, 0], [1, 1, 1]]), ValueError),
    (np.ones((5, 3), dtype=np.int64), TypeError), ([[0.0, 0.0, 0.0]], TypeError),
])
def test_bad_points(bad, exc):
    with pytest.raises(exc, match="points"):
        pc.corrupt(bad, "gaussian", 1, rng=0)


def test_bad_name_severity_options():
    pts = sphere(64)
    with pytest.raises(ValueError, match="valid names"):
        pc.corrupt(pts, "fogg", 1)
    for sev in (0, 6):
        with pytest.raises(ValueError, match="severity"):
            pc.corrupt(pts, "gaussian", sev)
    with pytest.raises(TypeError, match="severity"):
        pc.corrupt(pts, "gaussian", 2.0)
    with pytest.raises(ValueError, match="at least 4 columns"):
        pc.corrupt(pts[:, :3], "fog", 1)
    with pytest.raises(TypeError, match="unknown option"):
        pc.corrupt(pts, "gaussian", 1, mesh=None)
    with pytest.raises(TypeError, match="rng"):
        pc.corrupt(pts, "gaussian", 1, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="intensity"):
        pc.corrupt(np.array([[1.0, 2, 0, np.nan], [3, 1, 0, 0.5]]), "fog", 1)
    with pytest.raises(ValueError, match="zero extent"):
        pc.corrupt(np.ones((10, 3)), "gaussian", 1)


def _over_severities(fn, seeds=range(3)):
    return [np.mean([fn(s, seed) for seed in seeds]) for s in range(1, 6)]


def _strictly_increasing(xs):
    return all(b > a for a, b in zip(xs, xs[1:]))


def test_object_counts_grow_with_severity():
    pts = sphere()
    n_out = {name: [len(pc.corrupt(pts, name, s, rng=0)) for s in range(1, 6)]
             for name in ("cutout", "density_dec", "upsampling", "background")}
    assert n_out["cutout"] == [964, 934, 874, 814, 724]  # ModelNet40-C's counts for 1,024 points
    assert n_out["density_dec"] == [949, 874, 799, 724, 649]
    assert n_out["upsampling"] == [1024 + 204, 1024 + 256, 1024 + 341, 1024 + 512, 2048]
    assert n_out["background"] == [1024 + 22, 1024 + 25, 1024 + 29, 1024 + 34, 1024 + 51]
    moved = [len(pc.corrupt_with_index(pts, "impulse", s, rng=0, return_params=True)[2]["moved"]) for s in range(1, 6)]
    assert moved == [34, 40, 51, 68, 102]
    # density_inc: half the points, the patches kept at full density (distinct rows), the rest resampled
    for s in range(1, 6):
        out, idx, ap = pc.corrupt_with_index(sphere(2048), "density_inc", s, rng=0, return_params=True)
        assert len(out) == 1024 and len(ap["patches"]) == 100 * s


def test_noise_and_deformation_grow_with_severity():
    pts = sphere(extra=False).astype(np.float64)

    def rms(name):
        # scale-free: ModelNet40-C box-normalises after the noise, so the raw displacement of uniform noise
        # is dominated by the rescaling (1 / half-extent) and falls with severity, in the reference too
        def one(s, seed):
            return np.sqrt(((pc.normalize(pc.corrupt(pts, name, s, rng=seed)) - pc.normalize(pts)) ** 2).sum(1).mean())
        return _over_severities(one)

    for name in ("uniform", "gaussian", "ffd", "rbf", "inv_rbf", "shear"):
        assert _strictly_increasing(rms(name)), name
    g = pc.corrupt(pts, "gaussian", 5, rng=0) - pts
    assert 0.025 < g.std() < 0.032  # sigma 0.03 per axis, slightly reduced by clipping to [-1, 1]
    angles = [np.abs(pc.corrupt_with_index(pts, "rotation", s, rng=0, return_params=True)[2]["angles_deg"])
              for s in range(1, 6)]
    for s, a in enumerate(angles, start=1):
        c = pc.parameters("rotation", s)["angle_deg"]
        assert np.all((a >= c - 2.5) & (a <= c + 2.5))
    # the applied rotation is what moved the points: undo it and renormalise, get the input back
    out, idx, ap = pc.corrupt_with_index(pts, "rotation", 5, rng=3, return_params=True)
    from perturbations._pointcloud_object import rotation_matrix
    back = pc.normalize(out @ rotation_matrix(np.deg2rad(ap["angles_deg"])).T)
    np.testing.assert_allclose(back, pc.normalize(pts), atol=1e-9)


def test_object_corruptions_are_scale_invariant():
    """Acting in the cloud's normalised frame: a cloud scaled and shifted gets the same corruption, mapped back."""
    pts = sphere(extra=False).astype(np.float64)
    moved = pts * 7.0 + np.array([10.0, -3.0, 2.0])
    for name in ("gaussian", "cutout", "ffd"):
        np.testing.assert_allclose(pc.corrupt(moved, name, 3, rng=1), pc.corrupt(pts, name, 3, rng=1) * 7.0
                                   + np.array([10.0, -3.0, 2.0]), atol=1e-9)


def _facing(pts, eye):
    view = eye - pts
    return (view / np.linalg.norm(view, axis=1, keepdims=True) * pts).sum(1)  # sphere: normal = position


def test_occlusion_resamples_the_visible_surface():
    """On a sphere: N points (ModelNet40-C's depth-image resampling), from the side facing the camera."""
    pts = sphere().astype(np.float64)  # with a label column that must follow its source point
    for sev in (1, 3, 5):
        out, idx, ap = pc.corrupt_with_index(pts, "occlusion", sev, rng=sev, return_params=True)
        assert len(out) == len(pts) and (idx >= 0).all()
        np.testing.assert_array_equal(out[:, 3], pts[idx, 3])
        cos = _facing(pts[:, :3], ap["eye"])
        assert (cos[idx] < -0.1).mean() < 0.08  # splat gaps let a few back-facing samples through
        assert np.isin(np.flatnonzero(cos > 0.25), idx).mean() > 0.8  # the facing side is covered
        # renormalised as ModelNet40-C normalises the occluded cloud: box side 2 in the unit-sphere frame,
        # i.e. 2 x the input's radius (issue 19: the reference's output scale; was the input's box size)
        radius = np.linalg.norm(pts[:, :3] - pts[:, :3].mean(0), axis=1).max()
        np.testing.assert_allclose((out[:, :3].max(0) - out[:, :3].min(0)).max(), 2 * radius, rtol=1e-6)
        # the camera's azimuth lies in the severity's sector
        centre = pc.parameters("occlusion", sev)["azimuth_centre"]
        assert abs(ap["azimuth"] - centre) <= np.pi / 5


def test_occlusion_with_a_mesh():
    o3d = pytest.importorskip("open3d")
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=30)
    pts = np.asarray(mesh.vertices).copy()
    out, idx, ap = pc.corrupt_with_index(pts, "occlusion", 2, rng=0, mesh=mesh, return_params=True)
    assert len(out) == len(pts)
    cos = _facing(pts, ap["eye"])
    assert cos[idx].min() > -0.1  # a true mesh hides the back completely
    with pytest.raises(TypeError, match="mesh"):
        pc.corrupt(pts, "occlusion", 1, mesh="sphere.ply")


def test_occlusion_y_up_is_z_up_rotated():
    """up='y' (ModelNet40's h5 frame): the same corruption as on the cloud rotated to z-up, rotated back."""
    from perturbations._pointcloud_raycast import Y_UP_TO_Z_UP

    zup = sphere(extra=False).astype(np.float64) * [1.0, 0.6, 0.3]
    yup = zup @ Y_UP_TO_Z_UP.T
    for name in ("occlusion", "lidar"):
        a = pc.corrupt(zup, name, 2, rng=5)
        b = pc.corrupt(yup, name, 2, rng=5, up="y")
        np.testing.assert_allclose(b @ Y_UP_TO_Z_UP, a, atol=1e-6)
    with pytest.raises(ValueError, match="up"):
        pc.corrupt(zup, "occlusion", 2, up="x")


def test_lidar_bands():
    pts = sphere(extra=False).astype(np.float64)
    out, idx, ap = pc.corrupt_with_index(pts, "lidar", 2, rng=0, return_params=True)
    assert len(out) == 768 and (idx >= 0).all()
    rel = out - ap["eye"]
    theta = np.degrees(np.arccos(rel[:, 2] / np.linalg.norm(rel, axis=1)))
    np.testing.assert_allclose(theta - np.floor(theta), 0.5, atol=1e-6)  # snapped to 1-degree band centres
    # rows are depth-image samples near their source point (within a splat), drawn with replacement
    # from about 390 distinct samples as ModelNet40-C's (about 2 copies each, not 3.8)
    assert np.abs(np.linalg.norm(rel, axis=1) - np.linalg.norm(pts[idx] - ap["eye"], axis=1)).max() < 0.3
    assert 300 < len(np.unique(out, axis=0)) < 480

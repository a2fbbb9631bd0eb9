"""normalize, farthest-point sampling (vs a NumPy twin) and the file readers."""
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perturbations import _pointcloud_utils
from perturbations.pointcloud import farthest_point_sampling, normalize, read_points


def fps_reference(points, n_samples, start):
    """Plain NumPy farthest-point sampling: same distance formula, lowest index wins ties, no repeats."""
    xyz = np.asarray(points[:, :3], dtype=np.float64)
    min_d = np.full(len(xyz), np.inf)
    chosen = np.zeros(len(xyz), bool)
    out, cur = [], start
    for _ in range(n_samples):
        out.append(cur)
        chosen[cur] = True
        diff = xyz - xyz[cur]
        d = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] + diff[:, 2] * diff[:, 2]
        min_d = np.minimum(min_d, d)
        cand = np.where(chosen, -1.0, min_d)
        cur = int(np.argmax(cand))
    return np.array(out, dtype=np.int64)


@pytest.mark.twin("perturbations._kernels.pointcloud.farthest_point_sampling_kernel", twin=fps_reference)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), cols=st.integers(3, 5), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), dup=st.booleans())
def test_fps_matches_numpy_reference(n, cols, data, dtype, dup):
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, cols)).astype(dtype)
    if dup:  # duplicate points and integer-valued coordinates create exact ties
        pts = np.round(pts).astype(dtype)
    k = data.draw(st.integers(1, n))
    start = data.draw(st.integers(0, n - 1))
    before = pts.copy()
    idx = farthest_point_sampling(pts, k, start=start)
    np.testing.assert_array_equal(idx, fps_reference(pts, k, start))
    assert idx.dtype == np.int64 and idx.shape == (k,)
    assert len(np.unique(idx)) == k
    np.testing.assert_array_equal(pts, before)


def test_fps_start_and_rng():
    pts = np.random.default_rng(0).normal(size=(200, 3))
    assert farthest_point_sampling(pts, 5)[0] == 0
    a = farthest_point_sampling(pts, 20, rng=np.random.default_rng(3))
    b = farthest_point_sampling(pts, 20, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    starts = {int(farthest_point_sampling(pts, 1, rng=s)[0]) for s in range(20)}
    assert len(starts) > 5  # the start really is drawn from rng


def test_fps_covers_the_cloud_better_than_random():
    """FPS spreads points out: its max distance from any point to the sample is far below a random subset's."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, size=(2000, 3))
    idx = farthest_point_sampling(pts, 64)
    rand = rng.choice(2000, 64, replace=False)

    def covering_radius(sub):
        return np.sqrt(((pts[:, None, :] - pts[sub][None]) ** 2).sum(-1).min(1).max())

    assert covering_radius(idx) < 0.8 * covering_radius(rand)


@pytest.mark.parametrize("bad, exc, match", [
    (dict(n_samples=11), ValueError, "n_samples"), (dict(n_samples=0), ValueError, "n_samples"),
    (dict(n_samples=2.0), TypeError, "n_samples"), (dict(n_samples=2, start=10), ValueError, "start"),
    (dict(n_samples=2, start=1.5), TypeError, "start"),
])
def test_fps_bad_arguments(bad, exc, match):
    with pytest.raises(exc, match=match):
        farthest_point_sampling(np.zeros((10, 3)), **bad)


@pytest.mark.parametrize("pts, exc", [
    (np.zeros((5,)), ValueError), (np.zeros((5, 2)), ValueError), (np.zeros((0, 3)), ValueError),
    (np.array([[0, 0, np.nan]]), ValueError), (np.array([[0, np.inf, 0]]), ValueError),
    ([[0.0, 0.0, 0.0]], TypeError),
])
def test_bad_points_rejected(pts, exc):
    with pytest.raises(exc, match="points"):
        normalize(pts)
    with pytest.raises(exc, match="points"):
        farthest_point_sampling(pts, 1)


def test_normalize():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        pts = np.c_[rng.normal(3, [1, 5, 2], size=(300, 3)), rng.uniform(size=(300, 2))].astype(dtype)
        before = pts.copy()
        out = normalize(pts)
        np.testing.assert_array_equal(pts, before)
        assert out.dtype == dtype and out.shape == pts.shape and out is not pts
        lo, hi = out[:, :3].min(0), out[:, :3].max(0)
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
        np.testing.assert_allclose((hi - lo).max(), 2.0, rtol=1e-6)
        np.testing.assert_array_equal(out[:, 3:], pts[:, 3:])
        # scaling is uniform: the aspect ratios of the bounding box are kept
        ext_in = pts[:, :3].max(0) - pts[:, :3].min(0)
        np.testing.assert_allclose((hi - lo) / 2, ext_in / ext_in.max(), rtol=1e-5)
    with pytest.raises(ValueError, match="zero extent"):
        normalize(np.ones((4, 3)))
    with pytest.raises(TypeError, match="floating"):
        normalize(np.ones((4, 3), dtype=np.int32))


def test_doctests():
    from perturbations import pointcloud
    res = doctest.testmod(_pointcloud_utils, verbose=False)
    assert res.attempted >= 2 and res.failed == 0
    res = doctest.testmod(pointcloud, verbose=False)
    assert res.attempted >= 3 and res.failed == 0


def test_read_kitti_bin_and_npy(tmp_path):
    scan = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    scan.tofile(tmp_path / "000001.bin")
    np.testing.assert_array_equal(read_points(tmp_path / "000001.bin"), scan)
    np.save(tmp_path / "c.npy", scan.astype(np.float64))
    out = read_points(str(tmp_path / "c.npy"))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, scan)
    (tmp_path / "bad.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match="multiple of 16"):
        read_points(tmp_path / "bad.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_points(tmp_path / "empty.bin")
    np.save(tmp_path / "flat.npy", np.zeros(6))
    with pytest.raises(ValueError, match="2-D"):
        read_points(tmp_path / "flat.npy")
    with pytest.raises(FileNotFoundError):
        read_points(tmp_path / "missing.bin")
    (tmp_path / "x.xyz").write_text("0 0 0\n")
    with pytest.raises(ValueError, match="extension"):
        read_points(tmp_path / "x.xyz")


@pytest.mark.parametrize("ext", [".ply", ".pcd"])
def test_read_ply_pcd_with_intensity(tmp_path, ext):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    inten = rng.uniform(size=(50, 1)).astype(np.float32)
    pcd = o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz))
    pcd.point.intensity = o3d.core.Tensor(inten)
    o3d.t.io.write_point_cloud(str(tmp_path / f"c{ext}"), pcd)
    out = read_points(tmp_path / f"c{ext}")
    assert out.shape == (50, 4)
    np.testing.assert_allclose(out, np.c_[xyz, inten], rtol=1e-6)
    o3d.t.io.write_point_cloud(str(tmp_path / f"p{ext}"), o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz)))
    np.testing.assert_allclose(read_points(tmp_path / f"p{ext}"), xyz, rtol=1e-6)


def test_module_imports_without_open3d():
    import subprocess
    import sys
    code = ("import sys\nsys.modules['open3d'] = None\nimport numpy as np\n"
            "import perturbations.pointcloud as pc\n"
            "print(pc.normalize(np.eye(3)).shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

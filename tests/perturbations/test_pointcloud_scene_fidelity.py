"""Scene-level LiDAR weather side by side with the code Dong et al. (CVPR'23, thu-ml/3D_Corruptions_AD) run.

Restated here (no vendored code): Hahner et al.'s fog decision (`fog_simulation.py`: P_R_fog_hard rounds
i exp(-2 alpha R0) on its 0..255 scale; P_R_fog_soft's response F = I_fog(R0) i R0^2 beta / beta_0, capped
at 255, replaces the return when F is larger), called by Dong et al. as ParameterSet(alpha=c) so beta
keeps Hahner's default 0.046 / 50; and LISA (`utils/lisa.py`, `monte_carlo_lisa`, mode 'gunn'). Input:
the synthetic street scan (adapters.datasets.street_scan, synthetic).
"""
from __future__ import annotations

import numpy as np
import pytest

from perturbations import pointcloud as pc
from perturbations._pointcloud_scene import fog_table
from perturbations._pointcloud_tables import LIDAR

pytest.importorskip("open3d")


@pytest.fixture(scope="module")
def scan():
    from adapters.datasets import street_scan
    return street_scan(rng=0)


def hahner_fog_mask(pts, alpha, beta):
    """Which returns Hahner's simulate_fog turns into fog returns (intensity in 0..1, scaled to 0..255)."""
    i255 = pts[:, 3].astype(np.float64) * 255.0
    r0 = np.linalg.norm(pts[:, :3].astype(np.float64), axis=1)
    hard = np.round(np.exp(-2 * alpha * r0) * i255)
    grid, _, i_fog = fog_table(alpha)  # the integral table (its own twin / physics tests: test_pointcloud_kernels)
    key = np.minimum(np.rint(r0 / 0.1).astype(int), len(grid) - 1)
    response = np.minimum(i_fog[key] * i255 * r0**2 * beta / LIDAR["beta0"], 255)
    return response > hard


@pytest.mark.parametrize("preset", ["dong2023", "robo3d"])
def test_fog_returns_are_hahners(scan, preset):
    """Fog-return count within 2 % of the restated reference at every severity (issue target: 1.5x)."""
    counts = []
    for s in range(1, 6):
        p = pc.parameters("fog", s)
        beta = p["beta"] if preset == "dong2023" else p["robo3d_beta"]
        expected = int(hahner_fog_mask(scan, p["alpha"], beta).sum())
        ours = int((pc.corrupt_with_index(scan, "fog", s, rng=0, preset=preset)[1] < 0).sum())
        counts.append((ours, expected))
        assert abs(ours - expected) <= 0.02 * expected + 5, (preset, s, ours, expected)
    if preset == "dong2023":  # Hahner's own run (its pickled tables) gave 0.18 / 0.25 / 0.56 / 0.98 / 3.11 %
        np.testing.assert_allclose([100 * o / len(scan) for o, _ in counts], [0.18, 0.25, 0.56, 0.98, 3.11],
                                   rtol=0.1, atol=0.01)


def test_dong2023_is_the_default_and_dark_returns_never_fog(scan):
    dark = scan.copy()
    dark[:, 3] = 0.0
    for s in (1, 5):
        _, idx = pc.corrupt_with_index(dark, "fog", s, rng=0)
        assert (idx >= 0).all()  # F is proportional to the intensity: zero stays a (lost or kept) hard return
    a = pc.corrupt(scan, "fog", 3, rng=1)
    np.testing.assert_array_equal(a, pc.corrupt(scan, "fog", 3, rng=1, preset="dong2023"))
    with pytest.raises(ValueError, match="preset"):
        pc.corrupt(scan, "fog", 3, preset="hahner")


# ------------------------------------------------------------------------------------------ LISA snow
def lisa_gunn(pts, rate, rs, r_min=0.9, r_max=120.0, divergence=3e-3, d_min=0.05, accuracy=0.09):
    """monte_carlo_lisa (mode 'gunn', strongest return) per point; extinction with Q_ext = 2 (no Mie table).

    Returns (label 0 lost / 1 target / 2 particle, new range) per point.
    """
    n0, lam = 7.6e3 * rate**-0.87, 2.55 * rate**-0.48
    alpha = np.pi * n0 / lam**3 * 1e-6
    fresnel = ((1.3031 - 1) / (1.3031 + 1)) ** 2
    p_min = 0.9 * r_max**-2
    beam = lambda d: 1e3 * np.tan(divergence) * d  # noqa: E731 - the reference's lambda
    labels, ranges = np.zeros(len(pts), np.int8), np.zeros(len(pts))
    for k, (x, y, z, i) in enumerate(pts[:, :4].astype(np.float64)):
        r = np.sqrt(x * x + y * y + z * z)
        n = 0
        if r > r_min:
            nn = n0 * np.exp(-lam * d_min) / lam * (np.pi / 3) * r * (1e-3 * beam(r) / 2) ** 2
            n = int(np.floor(nn) + (rs.rand() < nn - int(nn)))
        pr = r * rs.rand(n) ** (1 / 3)
        pr = pr[pr > r_min]
        p_hard = i * np.exp(-2 * alpha * r) / r**2
        if len(pr):
            d = -np.log(1 - rs.rand(len(pr))) / lam + d_min
            pp = fresnel * np.exp(-2 * alpha * pr) * np.minimum((d / beam(pr)) ** 2, 1) / pr**2
            j = np.argmax(pp)
            if p_hard < p_min and pp[j] < p_min:
                continue
            if p_hard < pp[j]:
                labels[k], ranges[k] = 2, pr[j]
                continue
        elif p_hard < p_min:
            continue
        labels[k], ranges[k] = 1, r + rs.normal(0, accuracy / np.sqrt(2 * p_hard / p_min))
    return labels, ranges


def test_snow_matches_lisa(scan):
    """Particle returns and lost returns within 1.5x of LISA's at every severity, range noise within 1.5x."""
    sub = scan[::5]
    r = np.linalg.norm(sub[:, :3].astype(np.float64), axis=1)
    for s in range(1, 6):
        rate = pc.parameters("snow", s)["rate"]
        lab, new_r = lisa_gunn(sub, rate, np.random.RandomState(s))
        ref_particles, ref_lost = (lab == 2).mean(), (lab == 0).mean()
        ref_noise = np.std(new_r[lab == 1] - r[lab == 1])
        parts, lost, noise = [], [], []
        for seed in range(3):
            out, idx = pc.corrupt_with_index(sub, "snow", s, rng=seed)
            parts.append((idx < 0).mean() * len(out) / len(sub))
            lost.append(1 - len(out) / len(sub))
            kept = idx >= 0
            noise.append(np.std(np.linalg.norm(out[kept, :3], axis=1) - r[idx[kept]]))
        assert 1 / 1.5 < np.mean(parts) / ref_particles < 1.5, (s, np.mean(parts), ref_particles)
        assert 1 / 1.5 < np.mean(lost) / ref_lost < 1.5, (s, np.mean(lost), ref_lost)
        assert 1 / 1.5 < np.mean(noise) / ref_noise < 1.5, (s, np.mean(noise), ref_noise)

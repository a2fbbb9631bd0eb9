"""Scene-level LiDAR corruptions for driving scans (N x C: x, y, z, intensity, ...; sensor at the origin).

Physics re-derived from the papers' formulas (docs/pointcloud_corruptions.md); no Robo3D / Hahner code
(non-commercial licences) was ported. Each function takes (pts, rng, p, **options) with pts a float64
(N, C) copy it may modify and returns (out, index, applied) as in `_pointcloud_object`; the scalar draws
that come first (failed rings, sweep start) are made by its sampler in `SAMPLERS`.

Intensity model shared by the weather models: column 3 divided by `intensity_max` is the apparent
reflectivity rho of the return (reflectivity x cos(incidence), range-compensated as in KITTI), and the
received power is proportional to rho * T / R^2 with T the two-way transmission. A return is detected
while that power exceeds P_min = min(0.9 / R_max^2, the smallest rho / R^2 in the clean scan): LISA's
threshold, lowered when the scan itself shows a more sensitive sensor, so a clean return is never dropped
merely for being weak already.
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from ._kernels.pointcloud import fog_response_kernel, precipitation_kernel
from ._pointcloud_tables import LIDAR

DEFAULT_FOV_DEG = (2.0, -24.8)   # HDL-64E nominal vertical field of view (KITTI)
RHO_FLOOR = 0.02                 # a recorded return reflected something, even at intensity 0


# ---------------------------------------------------------------- options and shared quantities
def _intensity_max(intensity_max) -> float:
    if isinstance(intensity_max, bool) or not isinstance(intensity_max, numbers.Real) or not intensity_max > 0:
        raise ValueError(f"`intensity_max` must be a positive number (1.0 for KITTI, 255 for nuScenes); "
                         f"got {intensity_max!r}")
    return float(intensity_max)


def _mask(mask, n, name):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != (n,):
        raise ValueError(f"`{name}` must be a boolean array of shape ({n},); got {m.dtype} {m.shape}")
    return m


def _check_n_rings(n_rings) -> None:
    if isinstance(n_rings, bool) or not isinstance(n_rings, numbers.Integral) or n_rings < 2:
        raise ValueError(f"`n_rings` must be an int >= 2; got {n_rings!r}")


def rings(pts, ring=None, n_rings=64, fov_deg=DEFAULT_FOV_DEG) -> np.ndarray:
    """Laser ring id per point: the given `ring` column, or the elevation binned over `fov_deg`.

    The estimate assumes `n_rings` beams evenly spaced from fov_deg[0] (top, ring 0) to fov_deg[1].
    """
    n = len(pts)
    _check_n_rings(n_rings)
    if ring is not None:
        r = np.asarray(ring)
        if r.shape != (n,) or not np.issubdtype(r.dtype, np.integer):
            raise ValueError(f"`ring` must be an integer array of shape ({n},); got {r.dtype} {r.shape}")
        if n and (r.min() < 0 or r.max() >= n_rings):
            raise ValueError(f"`ring` values must be in 0..n_rings-1 = 0..{n_rings - 1}; got {r.min()}..{r.max()}")
        return r.astype(np.int64)
    up, down = (float(v) for v in fov_deg)
    if not up > down:
        raise ValueError(f"`fov_deg` must be (top, bottom) in degrees with top > bottom; got {fov_deg!r}")
    elev = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    step = (up - down) / (n_rings - 1)
    return np.clip(np.rint((up - elev) / step), 0, n_rings - 1).astype(np.int64)


def ground_estimate(pts) -> np.ndarray:
    """Ground points without labels: within 0.3 m above the 10th percentile of z (flat-road assumption)."""
    z = pts[:, 2]
    return z < np.percentile(z, 10) + 0.3


def _ranges(pts):
    xyz = pts[:, :3]
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", xyz, xyz)), 1e-6)


def _rho(pts, imax):
    return np.clip(pts[:, 3] / imax, RHO_FLOOR, None)


def detection_threshold(rho, r) -> float:
    """P_min of the module docstring, from the clean scan."""
    return float(min(0.9 / LIDAR["r_max"] ** 2, (rho / r ** 2).min()))


def _scale_range(pts, rows, new_r, old_r):
    """In place: move the `rows` (boolean mask) along their rays from range old_r to new_r (full-length arrays)."""
    pts[:, :3] *= np.where(rows, new_r / old_r, 1.0)[:, None]


# ---------------------------------------------------------------- fog (Hahner et al., ICCV 2021)
@functools.lru_cache(maxsize=16)
def fog_table(alpha: float, r0_top: float = 40.0, step: float = 0.1):
    """(R0 grid, R_fog, I_fog) of the soft-target fog response for extinction `alpha`; cached per alpha.

    Beyond ~10 m the hard target no longer truncates the fog integral, so the response is constant and
    ranges past `r0_top` use its last value.
    """
    grid = np.arange(0.0, r0_top + step / 2, step)
    r_fog, i_fog = fog_response_kernel(float(alpha), grid, 0.05, 299792458.0 * LIDAR["tau_h"],
                                       LIDAR["xi_r1"], LIDAR["xi_r2"])
    return grid, r_fog, i_fog


FOG_PRESETS = ("dong2023", "robo3d")


def _check_preset(preset) -> str:
    if not isinstance(preset, str) or preset not in FOG_PRESETS:
        raise ValueError(f"`preset` must be one of {', '.join(map(repr, FOG_PRESETS))}; got {preset!r}")
    return preset


def sample_fog(n, p, rng, *, preset="dong2023", **_):
    """The backscatter of the preset: Dong et al.'s (Hahner's default 0.00092 /m) or Robo3D's span."""
    return {"beta": p["robo3d_beta"] if _check_preset(preset) == "robo3d" else p["beta"]}


def fog(pts, rng, p, *, intensity_max=1.0, preset="dong2023"):
    """Two-way attenuation, loss below the detection threshold, and fog backscatter replacing weak returns.

    The fog response is proportional to the return's own intensity (no reflectivity floor), as in
    Hahner et al.'s code: a zero-intensity return never becomes a fog return. `preset` picks beta
    ("dong2023", the default, or "robo3d"); its sampler has already put it in ``p["beta"]``.
    """
    imax = _intensity_max(intensity_max)
    _check_preset(preset)
    alpha, beta = p["alpha"], p["beta"]
    r = _ranges(pts)
    rho = _rho(pts, imax)
    p_min = detection_threshold(rho, r)
    grid, r_fog_t, i_fog_t = fog_table(alpha)
    k = np.minimum(np.rint(r / (grid[1] - grid[0])).astype(np.int64), len(grid) - 1)
    r_fog, i_fog = r_fog_t[k], i_fog_t[k]
    att = np.exp(-2.0 * alpha * r)
    hard = pts[:, 3] * att                                              # i' = i exp(-2 alpha R0)
    soft = i_fog * pts[:, 3] * r ** 2 * beta / LIDAR["beta0"]           # F = I_fog i R0^2 beta / beta0
    # Hahner's code compares F with the attenuated intensity rounded to its 8-bit scale (P_R_fog_hard
    # rounds i exp(-2 alpha R0) on 0..255): a dim return that rounds to 0 yields to any fog response > 0
    quantum = imax / 255.0
    scatter = (soft > np.rint(hard / quantum) * quantum) & (r_fog > 0) & (r_fog < r)
    detected = rho * att / r ** 2 >= p_min
    # small range jitter on fog returns: the peak of a noisy backscatter pulse is not sharp
    jitter = rng.normal(0.0, 0.1, len(pts))
    new_r = np.clip(r_fog + jitter, LIDAR["xi_r1"], None)
    out = pts
    out[:, 3] = hard
    _scale_range(out, scatter, new_r, r)
    out[scatter, 3] = np.minimum(soft[scatter], imax)
    keep = scatter | detected
    idx = np.where(scatter, -1, np.arange(len(pts)))
    return out[keep], idx[keep], {"n_scatter": int(scatter.sum()), "n_lost": int((~keep).sum()),
                                  "mor_m": math.log(20.0) / alpha}


# ---------------------------------------------------------------- rain / snow (LISA, Kilic et al. 2021)
def particle_model(kind: str, rate: float):
    """(n_total per m^3, Lambda per mm, extinction alpha per m, particle reflectivity, max diameter mm).

    Exponential size distribution N(D) = N0 exp(-Lambda D) (D in mm, per m^3 per mm): Marshall-Palmer
    for rain (N0 = 8000, Lambda = 4.1 R^-0.21), Gunn-Marshall for snow as LISA's code has it (N0 = 7600 R^-0.87,
    Lambda = 2.55 R^-0.48). Extinction alpha = int (pi/4) D^2 Q_ext N(D) dD with Q_ext = 2, the large-
    particle limit of Mie theory (size parameter pi D / 905 nm > 500 here): alpha = pi N0 / Lambda^3 * 1e-6.
    """
    if kind == "rain":
        n0, lam, n_idx, d_cap = 8000.0, 4.1 * rate ** -0.21, LIDAR["n_water"], 6.0
    else:  # 7600, not the textbook 3800: what LISA's code (marshall_gunn_Nd, run by Dong et al.) uses
        n0, lam, n_idx, d_cap = 7600.0 * rate ** -0.87, 2.55 * rate ** -0.48, LIDAR["n_ice"], 20.0
    alpha = math.pi * n0 / lam ** 3 * 1e-6
    rho_p = ((n_idx - 1.0) / (n_idx + 1.0)) ** 2
    return n0 / lam, lam, alpha, rho_p, d_cap


N_NEAREST_PARTICLES = 4
LISA_R_MAX = 120.0            # LISA's default r_max (m): p_min = 0.9 / r_max^2
LISA_RANGE_ACCURACY = 0.09    # LISA's default range accuracy (m)


def _precipitation(pts, rng, p, kind, intensity_max):
    """Strongest-return Monte-Carlo with the K nearest particles of each beam's cone (LISA)."""
    imax = _intensity_max(intensity_max)
    rate = p["rate"]
    n_tot, lam, alpha, rho_p, d_cap = particle_model(kind, rate)
    n = len(pts)
    r = _ranges(pts)
    # LISA's detection: the intensity itself (no floor) against its fixed p_min = 0.9 / r_max^2 with its
    # r_max = 120 m, so returns already under it are lost at every rate, as in the reference
    rho = np.clip(pts[:, 3] / imax, 0.0, None)
    p_min = 0.9 / LISA_R_MAX ** 2
    half_div = LIDAR["divergence_rad"] / 2.0
    r_min = LIDAR["r_min"]
    # particle ranges in the cone: a Poisson process with intensity n_tot * pi * (half_div x)^2 dx, so
    # x^3 - r_min^3 has exponential gaps of mean 3 / (n_tot * pi * half_div^2)
    scale = 3.0 / (n_tot * math.pi * half_div ** 2)
    gaps = rng.standard_exponential((n, N_NEAREST_PARTICLES)) * scale
    diam = np.minimum(rng.standard_exponential((n, N_NEAREST_PARTICLES)) / lam, d_cap)
    noise = rng.standard_normal(n)
    # LISA's range noise for the returns that stay on their target: sigma = 0.09 m / sqrt(2 SNR)
    mode, new_r, trans, part_i = precipitation_kernel(r, rho, gaps, diam, noise, alpha, rho_p, half_div, r_min,
                                                      p_min, LISA_RANGE_ACCURACY)
    out = pts
    out[:, 3] = pts[:, 3] * trans
    moved = mode > 0
    _scale_range(out, moved, new_r, r)
    to_particle = mode == 2
    out[to_particle, 3] = imax * part_i[to_particle]
    idx = np.where(to_particle, -1, np.arange(n))
    return out[moved], idx[moved], {"alpha": alpha, "n_scatter": int(to_particle.sum()), "n_lost": int((~moved).sum())}


def rain(pts, rng, p, *, intensity_max=1.0):
    return _precipitation(pts, rng, p, "rain", intensity_max)


def snow(pts, rng, p, *, intensity_max=1.0):
    return _precipitation(pts, rng, p, "snow", intensity_max)


# ---------------------------------------------------------------- wet ground (Hahner et al., CVPR 2022)
def fresnel_reflectance(cos_i, n1, n2):
    """(R_s, R_p) power reflectances at incidence cos_i from medium n1 into n2 (no total reflection here)."""
    sin_t = n1 / n2 * np.sqrt(np.clip(1.0 - cos_i ** 2, 0.0, 1.0))
    cos_t = np.sqrt(np.clip(1.0 - sin_t ** 2, 0.0, 1.0))
    rs = ((n1 * cos_i - n2 * cos_t) / (n1 * cos_i + n2 * cos_t)) ** 2
    rp = ((n1 * cos_t - n2 * cos_i) / (n1 * cos_t + n2 * cos_i)) ** 2
    return rs, rp, cos_t


def wet_ground(pts, rng, p, *, intensity_max=1.0, ground_mask=None):
    """Ground returns through a water film: Fresnel losses at the film, more at grazing incidence."""
    imax = _intensity_max(intensity_max)
    n = len(pts)
    ground = _mask(ground_mask, n, "ground_mask")
    if ground is None:
        ground = ground_estimate(pts)
    r = _ranges(pts)
    rho_all = _rho(pts, imax)
    p_min = detection_threshold(rho_all, r)
    cos_i = np.clip(-pts[:, 2] / r, 1e-3, 1.0)           # flat earth: angle between the ray and the vertical
    rho = np.clip(pts[:, 3] / (imax * cos_i), 0.02, 1.0)  # intrinsic (Lambertian) reflectivity of the ground
    rs, rp, cos_t = fresnel_reflectance(cos_i, LIDAR["n_air"], LIDAR["n_water"])
    t_best = np.zeros(n)
    for refl in (rs, rp):  # per polarisation: in through the film, diffuse at the ground, back out
        t_aw = 1.0 - refl
        t_best = np.maximum(t_best, t_aw * rho * t_aw / (1.0 - rho * refl))
    wet = min(p["water_mm"] / 1.2, 1.0)
    r_w = (1.0 - wet) * rho + wet * t_best
    new_i = np.clip(imax * cos_i * r_w, 0.0, pts[:, 3])
    lost = ground & (new_i / imax / r ** 2 < p_min)
    out = pts
    out[ground, 3] = new_i[ground]
    keep = ~lost
    return out[keep], np.flatnonzero(keep), {"wetness": wet, "n_ground": int(ground.sum()), "n_lost": int(lost.sum())}


# ---------------------------------------------------------------- sensor faults
def sample_beam_missing(n, p, rng, *, n_rings=64, **_):
    _check_n_rings(n_rings)
    k = max(1, int(round(p["rings_removed"] * n_rings / 64)))
    return {"rings": np.sort(rng.choice(n_rings, min(k, n_rings - 1), replace=False))}


def beam_missing(pts, rng, p, *, ring=None, n_rings=64, fov_deg=DEFAULT_FOV_DEG):
    ring_id = rings(pts, ring, n_rings, fov_deg)
    gone = np.asarray(p["rings"], dtype=np.int64)
    keep = np.flatnonzero(~np.isin(ring_id, gone))
    return pts[keep], keep, {"rings_removed": gone}


def sample_beam_reduction(n, p, rng, **_):
    return {"offset": int(rng.integers(p["horizontal"]))}


def beam_reduction(pts, rng, p, *, ring=None, n_rings=64, fov_deg=DEFAULT_FOV_DEG):
    """A cheaper sensor: a regular subset of rings, and every `horizontal`-th return along each ring."""
    ring_id = rings(pts, ring, n_rings, fov_deg)
    k = max(1, int(round(p["rings_kept"] * n_rings / 64)))
    kept_rings = np.unique(np.rint(np.linspace(0, n_rings - 1, k)).astype(np.int64))
    step = p["horizontal"]
    offset = p["offset"]
    az = np.arctan2(pts[:, 1], pts[:, 0])
    order = np.lexsort((az, ring_id))               # by ring, then azimuth
    sorted_ring = ring_id[order]
    start = np.searchsorted(sorted_ring, sorted_ring)  # first position of each ring in `order`
    rank = np.arange(len(order)) - start
    take = np.isin(sorted_ring, kept_rings) & (rank % step == offset)
    keep = np.sort(order[take])
    return pts[keep], keep, {"rings_kept": kept_rings, "offset": offset}


def _check_crosstalk_preset(preset) -> str:
    if preset not in ("dong2023", "uniform"):
        raise ValueError(f"`preset` must be 'dong2023' or 'uniform'; got {preset!r}")
    return preset


def crosstalk(pts, rng, p, *, intensity_max=1.0, preset="dong2023"):
    """A fraction of returns replaced by pulses of another LiDAR: offsets N(0, 3^2) m.

    preset "dong2023" (default): Dong et al.'s `lidar_crosstalk_noise` (also Robo3D's): one N(0, 3^2) draw
    added to x, y, z *and* intensity of each hit row, as the published KITTI-C / Robo3D numbers were made
    (the intensity can leave [0, i_max], even go negative). "uniform": the physical variant, intensity
    drawn U(0, i_max) instead. Columns after the intensity are left as they are (Dong's code adds noise
    to every column; only x, y, z, i exist in KITTI).
    """
    imax = _intensity_max(intensity_max)
    preset = _check_crosstalk_preset(preset)
    n = len(pts)
    k = int(round(p["fraction"] * n))
    out = pts
    if preset == "dong2023":
        hit = rng.choice(n, k, replace=False)
        out[hit, :4] += rng.normal(0.0, 1.0, (k, 4)) * p["sigma"]  # draw order of the reference
        hit = np.sort(hit)
    else:
        hit = np.sort(rng.choice(n, k, replace=False))
        out[hit, :3] += rng.normal(0.0, p["sigma"], (k, 3))
        out[hit, 3] = rng.uniform(0.0, imax, k)
    idx = np.arange(n)
    idx[hit] = -1
    return out, idx, {"replaced": hit}


def incomplete_echo(pts, rng, p, *, intensity_max=1.0, object_mask=None, ground_mask=None):
    """Returns lost on dark objects: a fraction of the `object_mask` points (default: dark non-ground)."""
    imax = _intensity_max(intensity_max)
    n = len(pts)
    obj = _mask(object_mask, n, "object_mask")
    if obj is None:
        ground = _mask(ground_mask, n, "ground_mask")
        ground = ground_estimate(pts) if ground is None else ground
        obj = ~ground & (pts[:, 3] < 0.15 * imax)
    cand = np.flatnonzero(obj)
    k = int(round(p["drop"] * len(cand)))
    gone = rng.choice(cand, k, replace=False) if k else np.empty(0, dtype=np.int64)
    keep = np.ones(n, bool)
    keep[gone] = False
    keep = np.flatnonzero(keep)
    return pts[keep], keep, {"n_candidates": len(cand), "n_lost": k}


def _check_motion_preset(preset) -> str:
    if preset not in ("rolling_shutter", "robo3d"):
        raise ValueError(f"`preset` must be 'rolling_shutter' or 'robo3d'; got {preset!r}")
    return preset


def sample_motion_distortion(n, p, rng, *, preset="rolling_shutter", **_):
    if _check_motion_preset(preset) == "robo3d":  # Robo3D's one scan-wide offset, drawn axis by axis
        return {"translate": [float(rng.normal(0.0, p["robo3d_trans_std"], 1)[0]) for _ in range(3)]}
    return {"start_azimuth": rng.uniform(-math.pi, math.pi), "yaw_sign": float(rng.choice((-1.0, 1.0)))}


def motion_distortion(pts, rng, p, *, preset="rolling_shutter"):
    """Rolling-shutter skew: each return is taken at its azimuth's time in the sweep while the ego moves.

    A point p (in the sweep-end frame) seen at time t in [0, T] appears at R(-w (t - T)) (p - v (t - T) e_x):
    forward speed v along x, yaw rate w with a random sign, sweep start azimuth random.
    preset "robo3d": Robo3D's "motion blur" instead (`gen_motion_blur.py`): the whole scan offset by
    N(0, s^2) per axis, then every point jittered by N(0, (s/10)^2) in x, y and N(0, (s/20)^2) in z, each
    clipped to +-3 s, with s = `robo3d_trans_std` (light/moderate/heavy 0.2/0.25/0.3 m at severity 1/3/5).
    """
    if _check_motion_preset(preset) == "robo3d":
        s = p["robo3d_trans_std"]
        out = pts
        out[:, :3] += np.asarray(p["translate"], dtype=np.float64)
        n = len(pts)
        for axis, scale in ((0, 0.1), (1, 0.1), (2, 0.05)):
            out[:, axis] += np.clip(rng.normal(0.0, s * scale, n), -3 * s, 3 * s)
        return out, np.arange(n), {"translate": list(p["translate"])}
    az = np.arctan2(pts[:, 1], pts[:, 0])
    start, sign = p["start_azimuth"], p["yaw_sign"]
    t = np.mod(az - start, 2 * math.pi) / (2 * math.pi) * p["sweep_s"]
    dt = t - p["sweep_s"]
    x = pts[:, 0] - p["speed"] * dt
    y = pts[:, 1].copy()
    ang = -sign * p["yaw_rate"] * dt
    c, s = np.cos(ang), np.sin(ang)
    out = pts
    out[:, 0] = c * x - s * y
    out[:, 1] = s * x + c * y
    return out, np.arange(len(pts)), {"start_azimuth": start, "yaw_sign": sign}


FUNCTIONS = {
    "fog": fog, "rain": rain, "snow": snow, "wet_ground": wet_ground, "beam_missing": beam_missing,
    "crosstalk": crosstalk, "incomplete_echo": incomplete_echo, "motion_distortion": motion_distortion,
    "beam_reduction": beam_reduction,
}
SAMPLERS = {"fog": sample_fog, "beam_missing": sample_beam_missing, "beam_reduction": sample_beam_reduction,
            "motion_distortion": sample_motion_distortion}

"""Severity tables (severity 1..5) for the point-cloud corruptions: data beside the code.

Object-level rows restate ModelNet40-C (Sun et al., 2022, `jiachens/ModelNet40-C`, BSD-3) for a
1,024-point cloud normalised to [-1, 1]^3; counts given for N = 1,024 are scaled by N / 1,024 for other N.
Scene-level rows come from Dong et al. CVPR'23 (5 levels) and Robo3D (Kong et al. ICCV'23, 3 levels,
spread over 5 here); docs/pointcloud_corruptions.md says which number comes from where.
Each row is a tuple of five dicts, one per severity; `pointcloud.parameters(name, severity)` returns a copy.
"""
from __future__ import annotations

import math


def _rows(**columns):
    """Five per-severity dicts from keyword columns of five values each."""
    keys = list(columns)
    for k in keys:
        if len(columns[k]) != 5:
            raise ValueError(f"severity column {k!r} must have 5 values")
    return tuple({k: columns[k][s] for k in keys} for s in range(5))


OBJECT_TABLES = {
    # ModelNet40-C "Occlusion" / "LiDAR": the severity only picks the viewpoint sector (azimuth centre
    # 2*pi*severity/5), it is not a strength. Camera distance in half-extents of the cloud.
    "occlusion": _rows(azimuth_centre=[2 * math.pi * s / 5 for s in range(1, 6)], distance=[3.0] * 5),
    "lidar": _rows(azimuth_centre=[2 * math.pi * s / 5 for s in range(1, 6)], distance=[5.0] * 5,
                   band_deg=[1.0] * 5, output_fraction=[0.75] * 5),
    # local density increase: n patches of 100 of 2,048 points keep full density; output N // 2 points
    "density_inc": _rows(n_patches=[1, 2, 3, 4, 5], patch=[100] * 5),
    # local density decrease: n anchors, delete 75 of each anchor's 100 nearest neighbours
    "density_dec": _rows(n_patches=[1, 2, 3, 4, 5], patch=[100] * 5, delete=[75] * 5),
    "cutout": _rows(n_clusters=[2, 3, 5, 7, 10], cluster=[30] * 5),
    "uniform": _rows(c=[0.01, 0.02, 0.03, 0.04, 0.05]),
    "gaussian": _rows(sigma=[0.01, 0.015, 0.02, 0.025, 0.03]),
    "impulse": _rows(divisor=[30, 25, 20, 15, 10], magnitude=[0.1] * 5),
    "upsampling": _rows(divisor=[5, 4, 3, 2, 1], jitter=[0.05] * 5),
    "background": _rows(divisor=[45, 40, 35, 30, 20]),
    "rotation": _rows(angle_deg=[2.5, 5.0, 7.5, 10.0, 15.0], spread_deg=[2.5] * 5),
    "shear": _rows(c=[0.05, 0.10, 0.15, 0.20, 0.25], spread=[0.05] * 5),
    "ffd": _rows(s=[0.1, 0.2, 0.3, 0.4, 0.5], lattice=[5] * 5),
    "rbf": _rows(d=[0.025, 0.05, 0.075, 0.1, 0.125], radius=[0.5] * 5, lattice=[5] * 5),
    "inv_rbf": _rows(d=[0.025, 0.05, 0.075, 0.1, 0.125], radius=[0.5] * 5, lattice=[5] * 5),
}

SCENE_TABLES = {
    # Hahner et al. ICCV'21 fog as Dong et al. CVPR'23 run it (3D_Corruptions_AD `fog_sim`:
    # ParameterSet(alpha=c), so beta stays Hahner's default 0.046 / MOR at MOR = 50 m = 0.00092 /m).
    # MOR = ln(20)/alpha = 599, 300, 150, 100, 50 m. `robo3d_beta`: preset "robo3d", backscatter spanning
    # Robo3D's light/moderate/heavy 0.008/0.05/0.2 over five levels (with Dong et al.'s alpha).
    "fog": _rows(alpha=[0.005, 0.01, 0.02, 0.03, 0.06], beta=[0.046 / 50] * 5,
                 robo3d_beta=[0.008, 0.02, 0.05, 0.1, 0.2]),
    # rain rate in mm/h (Dong et al., LISA Monte-Carlo): Marshall-Palmer drops
    "rain": _rows(rate=[0.20, 0.73, 1.5625, 3.125, 7.29]),
    # snowfall as equivalent rain rate in mm/h (Dong et al.): Gunn-Marshall flakes
    "snow": _rows(rate=[0.20, 0.73, 1.5625, 3.125, 7.29]),
    # water-film height in mm (Robo3D light/moderate/heavy 0.2/1.0/1.2 spread over 5 levels)
    "wet_ground": _rows(water_mm=[0.2, 0.5, 0.8, 1.0, 1.2]),
    # distinct rings removed of 64 (Robo3D draws 16/32/48 with replacement from 55 rings: ~14/24/32 distinct)
    "beam_missing": _rows(rings_removed=[8, 14, 20, 26, 32]),
    # fraction of returns replaced by another sensor's pulses (Dong et al. 0.4 .. 2.0 %), N(0, 3^2) m offsets
    "crosstalk": _rows(fraction=[0.004, 0.008, 0.012, 0.016, 0.020], sigma=[3.0] * 5),
    # fraction of returns lost on dark objects (Robo3D 0.75/0.85/0.95 spread over 5 levels)
    "incomplete_echo": _rows(drop=[0.55, 0.65, 0.75, 0.85, 0.95]),
    # ego speed (m/s) and yaw rate (rad/s) during one 0.1 s sweep; `robo3d_trans_std` (m): preset "robo3d",
    # Robo3D's motion-blur jitter, light/moderate/heavy 0.2/0.25/0.3 at severities 1/3/5
    "motion_distortion": _rows(speed=[2.0, 5.0, 10.0, 15.0, 20.0], yaw_rate=[0.05, 0.1, 0.2, 0.3, 0.4],
                               sweep_s=[0.1] * 5, robo3d_trans_std=[0.2, 0.225, 0.25, 0.275, 0.3]),
    # rings kept of 64, then every `horizontal`-th return of each ring (Robo3D cross-sensor: 48/32/16, [::2])
    "beam_reduction": _rows(rings_kept=[48, 40, 32, 24, 16], horizontal=[2] * 5),
}

# Sensor constants shared by the scene models (docs/pointcloud_corruptions.md gives their sources).
LIDAR = {
    "wavelength_nm": 905.0,
    "divergence_rad": 3e-3,        # beam divergence (LISA, Hahner snow)
    "r_max": 200.0,                # range at which a target of reflectivity 0.9 is just detectable
    "r_min": 0.9,                  # scatterers closer than this are ignored (LISA's default r_min)
    "tau_h": 20e-9,                # half-power pulse width, s (Hahner fog)
    "xi_r1": 0.9, "xi_r2": 1.0,    # transmitter/receiver overlap ramp, m (Hahner fog)
    "beta0": 1e-6 / math.pi,       # differential reflectivity of the reference hard target
    "n_water": 1.33, "n_air": 1.0003, "n_ice": 1.3031,
}

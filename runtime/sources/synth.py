"""A synthetic RGB-D renderer (NumPy ray casting), the embedded default data.

Boxes are the normal class; spheres and cylinders are anomalies. The scene is a small inspection
cell: each object rests upright on a conveyor whose guide rails keep it turned 45 +- 30 degrees to
the camera (a random yaw about the vertical), at a random place, size and colour; the camera looks
down at the conveyor (tilted by 0.70-0.80 rad) and a room light shines from above and one side,
with a small random jitter; surfaces are glossy (diffuse + a white Blinn-Phong highlight) and the
colour sensor adds Gaussian noise. Background is black with depth 0, like kinect-rgbd (whose 8-bit
depth is millimetres * 255 / 700, larger = farther). A sphere or cylinder differs from a box by its
shape (and so by its silhouette, depth, shading and highlights), never by a pose, light or colour
that no box gets.
"""
from __future__ import annotations

import numpy as np

KINDS = ("box", "sphere", "cylinder")
NORMAL_KIND = "box"


CAMERA_TILT = (0.70, 0.80)      # rad: the camera looks down at the table by this much (uniform)
YAW = (np.pi / 4 - np.pi / 6, np.pi / 4 + np.pi / 6)  # rad: the object's turn about the vertical (uniform)
LIGHT_SIDE = 0.8                # the room light's sideways offset (camera x) from straight above
LIGHT_JITTER = 0.15             # uniform jitter of the light direction per frame (each axis)
SPECULAR = 0.3                  # glossy surfaces: white Blinn-Phong highlight strength (share of 255)
SHININESS = 20.0                # ... and its exponent
RGB_NOISE = 3.0                 # colour sensor noise (sigma, 8-bit levels)


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rotation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Object-to-camera rotation (3, 3) of an object resting on the conveyor (random yaw in YAW about
    the vertical) seen by the tilted camera, and the table's "up" direction in the camera frame (3,)."""
    tilt = rng.uniform(*CAMERA_TILT)
    table = _rot_x(tilt)                     # table frame -> camera frame (camera looks down by `tilt`)
    up = table @ np.array([0.0, -1.0, 0.0])  # "up" is -y (image y grows downward); tilted toward the camera
    return table @ _rot_y(rng.uniform(*YAW)), up


def _hit_box(o, d, half):
    """Ray/box in object frame. o, d: (P, 3). Returns t (P,), normals (P, 3); t=inf on a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    tlo, thi = np.minimum(t1, t2), np.maximum(t1, t2)
    tmin, tmax = tlo.max(axis=1), thi.min(axis=1)
    hit = (tmax >= np.maximum(tmin, 0)) & (tmin > 0)
    axis = tlo.argmax(axis=1)
    n = np.zeros_like(o)
    n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return np.where(hit, tmin, np.inf), n


def _hit_sphere(o, d, r):
    b = (o * d).sum(1)
    c = (o * o).sum(1) - r * r
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    p = o + t[:, None] * d
    n = np.where(np.isfinite(t)[:, None], p / r, 0)
    return t, n


def _hit_cylinder(o, d, r, h):
    """Closed cylinder of radius r, half-height h along the object y axis."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
    ys = o[:, 1] + ts * d[:, 1]
    ts = np.where((disc >= 0) & (ts > 0) & (np.abs(ys) <= h), ts, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = np.minimum(np.where(d[:, 1] != 0, (h - o[:, 1]) / d[:, 1], np.inf),
                        np.where(d[:, 1] != 0, (-h - o[:, 1]) / d[:, 1], np.inf))
        tc_other = np.maximum((h - o[:, 1]) / d[:, 1], (-h - o[:, 1]) / d[:, 1])
    tc = np.where(tc > 0, tc, tc_other)
    pc = o + np.nan_to_num(tc, posinf=0)[:, None] * d
    tc = np.where((tc > 0) & (pc[:, 0] ** 2 + pc[:, 2] ** 2 <= r * r), tc, np.inf)
    t = np.minimum(ts, tc)
    p = o + np.nan_to_num(t, posinf=0)[:, None] * d
    side = ts <= tc
    n = np.where(side[:, None], p * np.array([1, 0, 1]) / r,
                 np.stack([np.zeros_like(t), np.sign(p[:, 1]), np.zeros_like(t)], 1))
    return t, n


def render(kind: str, rng: np.random.Generator, resolution: int = 64,
           far_mm: float = 700.0) -> tuple[np.ndarray, np.ndarray]:
    """Render one object. Returns rgb (R, R, 3) uint8 and depth (R, R) uint8 (mm * 255 / far_mm)."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic object {kind!r}; choose from {KINDS}")
    fov = np.deg2rad(45)
    u = (np.arange(resolution) + 0.5) / resolution * 2 - 1
    uu, vv = np.meshgrid(u, u)
    dirs = np.stack([uu * np.tan(fov / 2), vv * np.tan(fov / 2), np.ones_like(uu)], -1).reshape(-1, 3)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)

    center = np.array([rng.uniform(-35, 35), rng.uniform(-25, 25), rng.uniform(340, 460)])
    rot, up = _rotation(rng)
    o = (-center) @ rot  # camera origin in the object frame: R^T (0 - c)
    d = dirs @ rot
    o = np.broadcast_to(o, d.shape)
    size = rng.uniform(90, 150)
    if kind == "box":
        half = np.array([size, size * rng.uniform(0.5, 1.2), size * rng.uniform(0.4, 1.0)]) / 2
        t, n = _hit_box(o, d, half)
    elif kind == "sphere":
        t, n = _hit_sphere(o, d, size / 2)
    else:
        t, n = _hit_cylinder(o, d, size * rng.uniform(0.25, 0.45), size * rng.uniform(0.4, 0.8))
    hit = np.isfinite(t)
    normals = n @ rot.T  # back to the camera frame
    # the room light: from above the table, offset to one side and toward the camera, jittered
    jitter = rng.uniform(-LIGHT_JITTER, LIGHT_JITTER, size=2)
    light = up + np.array([LIGHT_SIDE + jitter[0], jitter[1], -0.5])  # direction toward the light (3,)
    light /= np.linalg.norm(light)
    shade = 0.3 + 0.7 * np.clip((normals * light).sum(1), 0, 1)       # ambient + Lambert, (P,)
    albedo = rng.uniform(40, 235, size=3) * rng.uniform(0.7, 1.2)
    half = light[None, :] - dirs                                       # Blinn-Phong half vectors (P, 3)
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    gloss = SPECULAR * np.clip((normals * half).sum(1), 0, 1) ** SHININESS            # (P,)
    rgb = albedo[None, :] * shade[:, None] + 255 * gloss[:, None] + rng.normal(0, RGB_NOISE, size=(len(t), 3))
    rgb = np.where(hit[:, None], np.clip(rgb, 1, 255), 0).astype(np.uint8)
    z_mm = np.where(hit, np.nan_to_num(t, posinf=0) * dirs[:, 2], 0)
    depth = np.where(hit & (z_mm <= far_mm), np.clip(np.rint(z_mm * 255 / far_mm), 1, 255), 0)
    return rgb.reshape(resolution, resolution, 3), depth.reshape(resolution, resolution).astype(np.uint8)


def render_set(n: int, seed: int = 0, anomaly_rate: float = 0.0, resolution: int = 64):
    """n frames: boxes, each replaced by a sphere or cylinder with probability anomaly_rate.

    Returns (rgb (n, R, R, 3) uint8, depth (n, R, R) uint8, kinds list[str]).
    """
    rng = np.random.default_rng(seed)
    rgbs, depths, kinds = [], [], []
    for _ in range(n):
        kind = NORMAL_KIND if rng.random() >= anomaly_rate else str(rng.choice(["sphere", "cylinder"]))
        rgb, depth = render(kind, rng, resolution)
        rgbs.append(rgb), depths.append(depth), kinds.append(kind)
    return np.stack(rgbs), np.stack(depths), kinds

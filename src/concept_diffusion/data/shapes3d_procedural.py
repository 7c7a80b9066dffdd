"""`shapes3d-procedural`: the Shapes3D scene and factors, ray-cast on demand (no download).

The scene of DeepMind's 3dshapes (Burgess & Kim 2018): a floor and the corner of two walls, one
object in the middle. Factors and value grids are the original's: floor, wall and object hue
(10 each, hue 0.0..0.9), scale linspace(0.75, 1.25, 8), shape (cube, cylinder, sphere, capsule),
orientation linspace(-30, 30, 15) degrees, which turns the camera around the scene, so it shows
for every shape.

Speed comes from separating geometry from colour: the 480 (scale, shape, orientation)
combinations each have one shaded coverage map (how much of each pixel is floor, wall or object,
times its shading), ray-cast once with 3x3 supersampling and kept. An image is then one small
matrix product of that map with the three colours.
"""

import colorsys

import numpy as np

from concept_diffusion.data.procedural import ProceduralData

HUES = np.linspace(0.0, 0.9, 10)
SCALES = np.linspace(0.75, 1.25, 8)
SHAPES = ["cube", "cylinder", "sphere", "capsule"]
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)

FLOOR, WALL, OBJECT = 0, 1, 2
ROOM_HALF_WIDTH = 4.0          # the two visible walls are the planes x = 4 and z = 4
CAMERA_DISTANCE = 6.2
CAMERA_PITCH = np.radians(17.0)
CAMERA_TARGET_HEIGHT = 0.9
VERTICAL_FOV = np.radians(50.0)
BASE_YAW = np.radians(45.0)    # orientation 0 looks straight at the corner
OBJECT_HALF_SIZE = 0.72        # at scale 1
LIGHT = np.array([-0.45, 1.0, -0.75]) / np.linalg.norm([-0.45, 1.0, -0.75])
AMBIENT, DIFFUSE, SHADOW = 0.55, 0.45, 0.55
SUPERSAMPLING = 3


def hue_to_rgb(hue: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95), dtype=np.float32)


SHAPES3D_CITATION = '@misc{3dshapes18,\n  title={3D Shapes Dataset},\n  author={Burgess, Chris and Kim, Hyunjik},\n  howpublished={https://github.com/deepmind/3dshapes-dataset/},\n  year={2018}\n}'

class Shapes3DProcedural(ProceduralData):
    """Shapes3D's grid (floor hue 10, wall hue 10, object hue 10, scale 8, shape 4,
    orientation 15: 480,000 images), RGB at any resolution.

    Example:
        >>> data = Shapes3DProcedural(image_size=64)
        >>> data.render(np.array([[0, 3, 6, 7, 1, 7]])).shape   # a big cylinder, seen head-on
        (1, 64, 64, 3)
    """

    provenance = "Rendered procedurally by concept-diffusion (a ray-cast re-creation of DeepMind's 3dshapes scene and factor grid)."
    license = 'apache-2.0'
    citation = SHAPES3D_CITATION

    name = "shapes3d-procedural"
    num_channels_rendered = 3
    factor_names = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    factor_sizes = [10, 10, 10, 8, 4, 15]
    factor_values = [
        [f"{v:.1f}" for v in HUES],
        [f"{v:.1f}" for v in HUES],
        [f"{v:.1f}" for v in HUES],
        [f"{v:.3f}" for v in SCALES],
        SHAPES,
        [f"{v:.1f}deg" for v in ORIENTATIONS],
    ]

    def __init__(self, image_size: int = 64, cache_dir=None):
        self._coverage = {}
        self._colors = np.stack([hue_to_rgb(h) for h in HUES])
        super().__init__(image_size=image_size, cache_dir=cache_dir)

    def render(self, factors: np.ndarray) -> np.ndarray:
        size = self.image_size
        geometry = factors[:, 3:6]
        keys, inverse = np.unique(geometry, axis=0, return_inverse=True)
        maps = np.stack([self._coverage_map(*map(int, key)) for key in keys])       # (G, H*W, 3)
        colors = np.stack([self._colors[factors[:, i]] for i in range(3)], axis=1)  # (B, 3, 3)
        images = np.matmul(maps[inverse.reshape(-1)], colors)                       # (B, H*W, 3)
        return images.reshape(len(factors), size, size, 3)

    def warm_up(self) -> None:
        """Ray-cast all 480 coverage maps now (about 15 s at 64x64 on 2 cores) instead of on first use."""
        for key in np.ndindex(*self.factor_sizes[3:]):
            self._coverage_map(*key)

    def _coverage_map(self, scale: int, shape: int, orientation: int) -> np.ndarray:
        key = (scale, shape, orientation)
        if key not in self._coverage:
            self._coverage[key] = ray_cast_coverage(
                self.image_size, SCALES[scale] * OBJECT_HALF_SIZE, shape, np.radians(ORIENTATIONS[orientation])
            )
        return self._coverage[key]


def ray_cast_coverage(size: int, half_size: float, shape: int, orientation: float) -> np.ndarray:
    """Shaded coverage (size*size, 3) of floor, wall and object for one geometry, in [0, 1]."""
    origin, directions = _camera_rays(size, orientation)
    t_floor = np.where(directions[:, 1] < 0, -origin[1] / np.minimum(directions[:, 1], -1e-9), np.inf)
    t_wall = np.full(len(directions), np.inf)
    wall_normal = np.zeros_like(directions)
    for axis in (0, 2):
        with np.errstate(divide="ignore"):
            t = np.where(directions[:, axis] > 0, (ROOM_HALF_WIDTH - origin[axis]) / directions[:, axis], np.inf)
        nearer = t < t_wall
        t_wall = np.where(nearer, t, t_wall)
        wall_normal[nearer] = -np.eye(3)[axis]
    t_object, object_normal = intersect_object(origin, directions, half_size, shape)

    t_all = np.stack([t_floor, t_wall, t_object], axis=1)
    surface = np.argmin(t_all, axis=1)
    t_hit = t_all[np.arange(len(t_all)), surface]
    normal = np.where((surface == FLOOR)[:, None], np.array([0.0, 1.0, 0.0]), 0.0)
    normal = np.where((surface == WALL)[:, None], wall_normal, normal)
    normal = np.where((surface == OBJECT)[:, None], object_normal, normal)
    shade = AMBIENT + DIFFUSE * np.clip(normal @ LIGHT, 0.0, 1.0)

    # The object's shadow on floor and walls: does the ray from the hit point to the light hit it?
    points = origin + directions * np.where(np.isfinite(t_hit), t_hit, 0.0)[:, None]
    background = surface != OBJECT
    t_shadow, _ = intersect_object(points[background] + 1e-4 * LIGHT, np.broadcast_to(LIGHT, points[background].shape), half_size, shape)
    shade[np.flatnonzero(background)[np.isfinite(t_shadow)]] *= SHADOW

    coverage = np.zeros((len(shade), 3))
    coverage[np.arange(len(shade)), surface] = shade
    s = SUPERSAMPLING
    coverage = coverage.reshape(size, s, size, s, 3).mean(axis=(1, 3))
    return coverage.reshape(size * size, 3).astype(np.float32)


def _camera_rays(size: int, orientation: float) -> tuple[np.ndarray, np.ndarray]:
    yaw = BASE_YAW + orientation
    forward = np.array([np.sin(yaw) * np.cos(CAMERA_PITCH), -np.sin(CAMERA_PITCH), np.cos(yaw) * np.cos(CAMERA_PITCH)])
    right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    up = np.cross(forward, right)
    origin = np.array([0.0, CAMERA_TARGET_HEIGHT, 0.0]) - CAMERA_DISTANCE * forward

    n = size * SUPERSAMPLING
    offsets = (np.arange(n) + 0.5) / n * 2.0 - 1.0                  # -1 (left/top) .. 1
    half_extent = np.tan(VERTICAL_FOV / 2)
    v, u = np.meshgrid(-offsets * half_extent, offsets * half_extent, indexing="ij")
    directions = forward + u.reshape(-1, 1) * right + v.reshape(-1, 1) * up
    return origin, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def intersect_object(origins, directions, a: float, shape: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance (inf where missed) and normal of the object standing at the origin.

    cube: [-a, a] x [0, 2a] x [-a, a]; cylinder: radius a, height 2a; sphere: radius a on the
    floor; capsule: lying along x, radius 0.6a, 2.6a long.
    """
    origins = np.broadcast_to(origins, directions.shape)
    if shape == 0:
        return _box(origins, directions, np.array([-a, 0.0, -a]), np.array([a, 2 * a, a]))
    if shape == 1:
        return _cylinder(origins, directions, a, 2 * a)
    if shape == 2:
        return _sphere(origins, directions, np.array([0.0, a, 0.0]), a)
    return _capsule(origins, directions, 0.7 * a, 0.6 * a)


def _box(o, d, low, high):
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (low - o) / d, (high - o) / d
    t_near_axes = np.minimum(t1, t2)
    t_near = np.nanmax(t_near_axes, axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (t_near <= t_far) & (t_near > 0)
    axis = np.nanargmax(t_near_axes, axis=1)
    normal = np.zeros_like(d)
    normal[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return np.where(hit, t_near, np.inf), normal


def _sphere(o, d, center, radius):
    oc = o - center
    b = np.einsum("ij,ij->i", oc, d)
    c = np.einsum("ij,ij->i", oc, oc) - radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    normal = (o + d * np.where(np.isfinite(t), t, 0.0)[:, None] - center) / radius
    return t, normal


def _cylinder(o, d, radius, height):
    # Side: (x^2 + z^2 = r^2, 0 <= y <= height); top: the disc y = height.
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius**2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        y = o[:, 1] + t_side * d[:, 1]
        t_side = np.where((disc >= 0) & (t_side > 0) & (y >= 0) & (y <= height), t_side, np.inf)
        t_top = (height - o[:, 1]) / d[:, 1]
    top_point = o + d * np.nan_to_num(t_top, posinf=0.0, neginf=0.0)[:, None]
    on_top = (t_top > 0) & (top_point[:, 0] ** 2 + top_point[:, 2] ** 2 <= radius**2)
    t_top = np.where(on_top, t_top, np.inf)
    side_point = o + d * np.where(np.isfinite(t_side), t_side, 0.0)[:, None]
    side_normal = side_point * np.array([1.0, 0.0, 1.0]) / radius
    top_first = t_top < t_side
    normal = np.where(top_first[:, None], np.array([0.0, 1.0, 0.0]), side_normal)
    return np.minimum(t_side, t_top), normal


def _capsule(o, d, half_length, radius):
    # A cylinder along x between the two end spheres, resting on the floor.
    center_y = radius
    oy, oz = o[:, 1] - center_y, o[:, 2]
    a = d[:, 1] ** 2 + d[:, 2] ** 2
    b = oy * d[:, 1] + oz * d[:, 2]
    c = oy**2 + oz**2 - radius**2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    x = o[:, 0] + t_side * d[:, 0]
    t_side = np.where((disc >= 0) & (t_side > 0) & (np.abs(x) <= half_length), t_side, np.inf)
    side_point = o + d * np.where(np.isfinite(t_side), t_side, 0.0)[:, None]
    normal = (side_point - np.stack([side_point[:, 0], np.full(len(o), center_y), np.zeros(len(o))], axis=1)) / radius
    t = t_side
    for end in (-half_length, half_length):
        t_end, end_normal = _sphere(o, d, np.array([end, center_y, 0.0]), radius)
        nearer = t_end < t
        t = np.where(nearer, t_end, t)
        normal = np.where(nearer[:, None], end_normal, normal)
    return t, normal

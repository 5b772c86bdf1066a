"""The paper's unit frame: the smallest enclosing sphere's centre moves to the origin and
its radius becomes 0.9 (Davies et al. 2020), so a shape sits inside [-1, 1]^3."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UNIT_RADIUS = 0.9


@dataclass(frozen=True)
class Normalization:
    """unit = (world - center) * scale; world = unit / scale + center."""

    center: np.ndarray  # (3,) float64
    scale: float

    def to_unit(self, points):
        return (points - self.center.astype(_dtype_of(points))) * self.scale

    def to_world(self, points):
        return points / self.scale + self.center.astype(_dtype_of(points))

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix taking world coordinates to unit coordinates."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.center * self.scale
        return m

    def to_dict(self) -> dict:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}

    @staticmethod
    def from_dict(d: dict) -> "Normalization":
        center = np.asarray(d["center"], dtype=np.float64)
        scale = float(d["scale"])
        if center.shape != (3,) or not np.all(np.isfinite(center)) or not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"invalid normalisation transform {d!r}")
        return Normalization(center, scale)


IDENTITY = Normalization(np.zeros(3), 1.0)


def _dtype_of(points):
    """numpy dtype of an array or tensor (for casting the centre to match)."""
    if isinstance(points, np.ndarray):
        return points.dtype
    return {torch.float32: np.float32, torch.float64: np.float64}.get(points.dtype, np.float64)


def power_of_two_scale(points: np.ndarray) -> float:
    """The power of two that brings the points' extent to [0.5, 1) (1 for no extent): exact, and
    products of the scaled coordinates (areas) neither underflow nor overflow at any size."""
    extent = float(np.ptp(points, axis=0).max())
    return float(np.ldexp(1.0, -int(np.frexp(extent)[1]))) if extent > 0 else 1.0


# --- smallest enclosing sphere -------------------------------------------------

def _circumsphere(support: np.ndarray):
    """Smallest sphere through all points of `support` (1-4 points), by least squares
    in their affine hull, so collinear/coplanar sets give a circle's sphere, not an error."""
    p0 = support[0]
    if len(support) == 1:
        return p0.copy(), 0.0
    a = support[1:] - p0
    rhs = 0.5 * np.einsum("ij,ij->i", a, a)
    lam = np.linalg.lstsq(a @ a.T, rhs, rcond=None)[0]
    center = p0 + lam @ a
    return center, float(np.sqrt(np.max(np.sum((support - center) ** 2, axis=1))))


def _welzl(points: np.ndarray):
    """Exact smallest enclosing sphere of a small point set (Welzl's algorithm).

    Written as a loop over the points that recurses only when a point must join the
    support set: the recursion is at most four deep, whatever the number of points.
    """
    eps = 1e-12

    def ball(n, support):  # smallest sphere of points[:n] with `support` on its boundary
        center, radius = _circumsphere(np.array(support)) if support else (np.zeros(3), -1.0)
        if len(support) == 4:
            return center, radius
        for i in range(n):
            p = points[i]
            if radius < 0 or np.linalg.norm(p - center) > radius * (1 + eps) + eps:
                center, radius = ball(i, support + [p])
        return center, radius

    return ball(len(points), [])


def smallest_enclosing_sphere(points: np.ndarray, seed: int = 0):
    """(center, radius) of the exact smallest sphere enclosing `points` (float64).

    Core-set iteration: solve Welzl exactly on a small subset, add the points that
    fall outside, repeat. The result encloses every point and is the smallest
    sphere of a subset, hence the smallest sphere of the whole set. Solved on the
    points moved to the origin and scaled to extent ~1 (Welzl's tolerances are
    absolute), then mapped back.
    """
    points = np.asarray(points, dtype=np.float64)
    middle, unit = (points.min(0) + points.max(0)) / 2, power_of_two_scale(points)
    center, radius = _smallest_enclosing_sphere_of_unit_points((points - middle) * unit, seed)
    center = center / unit + middle
    # Mapping back rounds the centre (by up to an ulp of `middle`): grow the radius to still reach every point.
    return center, max(radius / unit, float(np.linalg.norm(points - center, axis=1).max()))


def _smallest_enclosing_sphere_of_unit_points(points: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    # Start from the extreme points along a few directions: usually the support already.
    dirs = np.concatenate([np.eye(3), -np.eye(3), rng.normal(size=(20, 3))])
    core = points[np.unique(np.argmax(points @ dirs.T, axis=0))]
    for _ in range(200):
        center, radius = _welzl(core[rng.permutation(len(core))])
        dist = np.linalg.norm(points - center, axis=1)
        tol = 1e-10 * max(radius, np.abs(points).max(), 1e-300)
        outside = np.nonzero(dist > radius + tol)[0]
        if len(outside) == 0:
            return center, radius
        far = outside[np.argsort(dist[outside])[-8:]]
        core = np.concatenate([core, points[far]])
    raise RuntimeError("smallest_enclosing_sphere did not converge")  # not seen; bounded for safety

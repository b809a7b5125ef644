"""Synthetic sagittal T2 thoracolumbar spine (T10 to sacrum) with exact ground truth.

:func:`generate` draws one case from a seed: anatomy (vertebral bodies, discs, posterior
elements, thecal sac, cord and conus, cauda equina, epidural and subcutaneous fat,
paraspinal muscle), zero or more tumors of the three compartments, an acquisition
(slice thickness, in-plane spacing, field of view, output orientation) and the T2
image with partial volume, texture, bias field and Rician noise. :func:`write_case`
writes it as NIfTI plus ``truth.json``. See ``docs/phantom.md``.

Everything is rendered in the canonical sagittal layout (``array[s, r, c]``: left to
right, superior to inferior, anterior to posterior; see :mod:`spinetumor.volume`) on a
grid that is ``subslices`` times finer left-right than the output slices; the image
averages the sub-slices (partial volume), the label maps take the central sub-slice.
Only then is the case permuted/flipped and optionally given a small oblique rotation
of its direction matrix, exactly (no resampling), so all maps share one geometry.

World coordinates while rendering (mm): ``x`` to the patient's right, ``y`` inferior,
``z`` posterior. The spine is a smooth curve in the (y, z) plane parametrized by arc
length ``u`` (increasing inferiorly); ``v`` is the signed distance along its normal
(positive posterior); ``w`` is the left-right offset from the (mildly scoliotic) midline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from . import labels
from .volume import CANONICAL_DIRECTION, Reorientation, Volume, reorient
# The level slabs are defined once, in localization, for the truth and for the measurement.
from .localization import ALL_LEVELS  # noqa: F401  (order of the level names that tumor levels use)
from .localization import level_planes as _level_planes
from .localization import levels_of as _levels_of
from .localization import tumor_levels as _tumor_levels

TUMOR_CHOICES = ("none", "intramedullary", "intradural-extramedullary", "extradural", "several", "random")

#: Tissue intensity / vertebral-body median, mean and sd across the 12 Chu T2 scans.
#: Measured by ``benchmarks/phantom_calibration.py`` (run 2026-11-22 on the 2-core
#: development VM); rerun it and paste its ``CALIBRATED_RATIOS`` line to update.
CALIBRATED_RATIOS = {"body": 1.000, "cortex_rim": 0.859, "disc_nucleus": 1.139, "disc_annulus": 0.728,
                     "csf": 1.986, "cord": 1.068, "paraspinal_muscle": 0.906, "subcutaneous_fat": 1.862,
                     "background": 0.589, "noise_sigma": 0.015}
CALIBRATED_SD = {"body": 0.0, "cortex_rim": 0.031, "disc_nucleus": 0.148, "disc_annulus": 0.048,
                 "csf": 0.168, "cord": 0.161, "paraspinal_muscle": 0.079, "subcutaneous_fat": 0.615,
                 "background": 0.080, "noise_sigma": 0.009}
#: Tissues the calibration cannot isolate without masks: ratios chosen by hand (documented
#: in docs/phantom.md). Cortical bone has no signal, but a 0.6-1 mm cortex drawn at 0.6 of
#: marrow best reproduces the measured 1-voxel rim ratio (0.86) once partial volume blurs it.
ASSUMED_RATIOS = {"cortex": 0.6, "posterior_elements": 0.80, "epidural_fat_vs_subcutaneous": 0.90,
                  "soft_tissue": 0.95, "skin": 0.90, "flow_void": 0.35, "basivertebral_vein": 1.25,
                  "degenerated_nucleus": 0.80, "edema": 1.55}

#: Drawn vertebral bodies, superior to inferior, with (height, AP depth, width, disc height
#: below) in mm before the case's size scale; typical adult values (lumbar 25-28 mm tall,
#: 35-42 mm deep).
BODY_LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
_BODY_SIZES = np.array([
    (22.0, 28.0, 36.0, 6.0), (23.0, 30.0, 38.0, 6.5), (24.0, 32.0, 40.0, 7.0), (25.5, 35.0, 42.0, 8.0),
    (26.5, 37.0, 44.0, 9.0), (27.0, 39.0, 46.0, 10.0), (27.5, 41.0, 48.0, 11.0), (27.0, 42.0, 50.0, 10.5),
])
_DISC_ABOVE_T10 = 6.0
#: Tangent angle of the spine (degrees, positive = running anteriorly going down) at each
#: body centre, then at the S1 top and the sacral tip: thoracolumbar kyphosis to lumbar lordosis.
_LORDOSIS_DEG = np.array([12.0, 11.0, 10.0, 8.0, 4.0, 0.0, -7.0, -14.0, -28.0, -12.0])

# Intensity classes of the rendering (not label values: several classes share a label).
(_AIR, _SOFT, _SKIN, _SUBFAT, _MUSCLE, _MARROW, _CORTEX, _NUCLEUS, _ANNULUS, _DEGEN, _PE, _EPIFAT,
 _CSF, _CORD, _ROOT, _VESSEL, _EDEMA, _BVV) = range(18)
_TUMOR_CLASS = 32      # tumor i (1-based) -> class 31 + i; its cyst -> 47 + i
_N_CLASSES = 64


@dataclass
class PhantomCase:
    """One synthetic case: the T2 image and its ground truth, all in one geometry."""

    image: Volume
    vertebrae: Volume
    anatomy: Volume
    tumor: Volume
    truth: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------

@dataclass
class _Tumor:
    """One tumor as a union of ellipsoid lobes in world mm, with its appearance."""

    type: str
    lobes: list            # (centre (x, y, z), rotation 3x3 columns = lobe axes, radii (3,))
    intensity: float
    texture: float
    cyst: float | None = None          # radius scale of a fluid core, or None
    edema: tuple | None = None         # (centre, rotation, radii) of the edema ellipsoid
    syrinx: tuple | None = None        # (u_from, u_to, radius)
    displacement: tuple | None = None  # (u_centre, half_length, dv, dw) applied to the cord
    features: dict = field(default_factory=dict)

    def extent(self) -> float:
        """Radius of a sphere about the first lobe's centre that holds every lobe."""
        c0 = np.asarray(self.lobes[0][0])
        return max(float(np.linalg.norm(np.asarray(c) - c0) + max(r)) for c, _, r in self.lobes)


class _Spine:
    """The sampled anatomy: spine curve, vertebral frames, canal and soft-tissue parameters."""

    def __init__(self, rng: np.random.Generator):
        scale = rng.uniform(0.92, 1.08)
        sizes = _BODY_SIZES * scale * rng.uniform(0.97, 1.03, size=_BODY_SIZES.shape)
        self.h, self.d, self.W, self.disc = sizes.T.copy()
        self.disc_above = _DISC_ABOVE_T10 * scale
        self.degenerated = rng.random(8) < np.array([0, 0, 0, 0.1, 0.12, 0.15, 0.3, 0.35])
        self.disc[self.degenerated] *= 0.65
        self.cc = rng.uniform(0.8, 1.8)                     # endplate concavity (mm)
        self.cortex = rng.uniform(0.6, 1.0)
        # arc-length positions: u = 0 at the top of the disc above T10
        u = self.disc_above
        centres = []
        for k in range(8):
            centres.append(u + self.h[k] / 2)
            u += self.h[k] + self.disc[k]
        self.u_centre = np.array(centres)
        self.u_s0 = u                                        # top of S1
        self.sacrum_len = rng.uniform(95, 110) * scale
        self._build_curve(rng)
        # canal and cord
        self.sac_ap = rng.uniform(6.6, 8.2)
        self.sac_lr = self.sac_ap * rng.uniform(1.2, 1.45)
        self.gap = rng.uniform(0.8, 1.5)                    # anterior epidural space
        self.e_post = rng.uniform(2.0, 5.5)                 # posterior epidural fat at L4-S1
        self.e_lat = rng.uniform(2.5, 4.0)
        self.cord_ap = rng.uniform(3.8, 4.8)
        self.cord_lr = self.cord_ap * rng.uniform(1.15, 1.35)
        self.cord_offset = rng.uniform(-0.5, 1.0)
        lo, hi = self.u_centre[3] - self.h[3] / 4, self.u_centre[4] - self.h[4] / 4
        self.u_conus = rng.uniform(lo, hi)                  # conus tip at L1-L2
        self.cone_len = rng.uniform(15, 25)
        self.u_sac_end = self.u_s0 + rng.uniform(22, 40)    # dural sac ends at S2
        self.roots = self._sample_roots(rng)
        # scoliosis and soft tissues
        self.scol_amp = rng.uniform(0, 6)
        self.scol_len = rng.uniform(300, 500)
        self.scol_phase = rng.uniform(0, 2 * np.pi)
        self.muscle = rng.uniform(42, 68)
        self.fat = rng.uniform(8, 35)
        self.skin = rng.uniform(1.5, 2.5)
        self.aorta_r = rng.uniform(8, 12)
        self.spinous_len = rng.uniform(22, 32) * scale

    # --- the curve --------------------------------------------------------------------------
    def _build_curve(self, rng) -> None:
        """Sample the tangent angle along u and integrate it to the (y, z) centre line."""
        lordosis = rng.uniform(0.6, 1.3)
        tilt = rng.uniform(-10, 10)
        knots_u = np.r_[self.u_centre, self.u_s0, self.u_s0 + self.sacrum_len]
        knots = tilt + lordosis * _LORDOSIS_DEG + rng.normal(0, 1.5, size=len(_LORDOSIS_DEG))
        self.du = 0.5
        u = np.arange(-80.0, self.u_s0 + self.sacrum_len + 80.0, self.du)
        theta = np.interp(u, knots_u, knots)
        from scipy.ndimage import gaussian_filter1d

        theta = np.radians(gaussian_filter1d(theta, 8.0 / self.du, mode="nearest"))
        y = np.cumsum(np.cos(theta)) * self.du
        z = -np.cumsum(np.sin(theta)) * self.du
        i0 = int(np.searchsorted(u, 0.0))
        self.cu, self.cy, self.cz, self.ctheta = u, y - y[i0], z - z[i0], theta
        jitter = np.radians(rng.uniform(-2.5, 2.5, size=8))
        th = np.interp(self.u_centre, u, theta) + jitter
        self.P = np.stack([np.interp(self.u_centre, u, self.cy), np.interp(self.u_centre, u, self.cz)], 1)
        self.t = np.stack([np.cos(th), -np.sin(th)], 1)
        self.n = np.stack([np.sin(th), np.cos(th)], 1)
        ths = np.interp(self.u_s0, u, theta)
        self.Ps = np.array([np.interp(self.u_s0, u, self.cy), np.interp(self.u_s0, u, self.cz)])
        self.ts = np.array([np.cos(ths), -np.sin(ths)])
        self.ns = np.array([np.sin(ths), np.cos(ths)])

    def point(self, u) -> np.ndarray:
        """(y, z) of the centre line at arc length u."""
        return np.stack([np.interp(u, self.cu, self.cy), np.interp(u, self.cu, self.cz)], -1)

    def normal(self, u) -> np.ndarray:
        """Posterior unit normal (y, z) at u."""
        th = np.interp(u, self.cu, self.ctheta)
        return np.stack([np.sin(th), np.cos(th)], -1)

    def tangent(self, u) -> np.ndarray:
        """Inferior unit tangent (y, z) at u."""
        th = np.interp(u, self.cu, self.ctheta)
        return np.stack([np.cos(th), -np.sin(th)], -1)

    def x0(self, u):
        """Left-right position of the midline (mild scoliosis)."""
        return self.scol_amp * np.sin(2 * np.pi * np.asarray(u) / self.scol_len + self.scol_phase)

    # --- canal profile along u ----------------------------------------------------------------
    def post_wall(self, u):
        """v of the posterior wall of the bodies/discs (sacrum below S1)."""
        u = np.asarray(u, dtype=float)
        wall = np.interp(u, self.u_centre, self.d / 2)
        f = np.clip((u - self.u_s0) / self.sacrum_len, 0, 1)
        sac = self.d[-1] / 2 - 0.15 * self.d[-1] * f
        return np.where(u > self.u_s0, sac, wall)

    def sac_radii(self, u):
        """(AP, LR) half-diameters of the dural sac at u (thoracic narrower, tapering at S2)."""
        u = np.asarray(u, dtype=float)
        grow = np.interp(u, [self.u_centre[0], self.u_centre[3]], [0.85, 1.0])
        taper = np.sqrt(np.clip((self.u_sac_end - u) / 14.0, 0, 1))
        return self.sac_ap * grow * taper, self.sac_lr * grow * taper

    def bony_radii(self, u):
        """(AP, LR) half-diameters of the bony canal (sac plus epidural space), narrowing in the sacrum."""
        u = np.asarray(u, dtype=float)
        grow = np.interp(u, [self.u_centre[0], self.u_centre[3]], [0.85, 1.0])
        f = np.clip((u - self.u_s0) / self.sacrum_len, 0, 1)
        shrink = 1.0 - 0.55 * f
        ep = self.e_post * np.interp(u, [self.u_centre[0], self.u_centre[5]], [0.4, 1.0])
        return (self.sac_ap * grow + ep / 2 + 0.5) * shrink, (self.sac_lr * grow + self.e_lat) * shrink, ep

    def sac_centre_v(self, u):
        """v of the dural sac's centre line."""
        return self.post_wall(u) + self.gap + self.sac_ap * np.interp(
            u, [self.u_centre[0], self.u_centre[3]], [0.85, 1.0])

    def canal_point(self, u, dv=0.0) -> np.ndarray:
        """World (x, y, z) of the sac centre line at u, shifted dv along the normal."""
        yz = self.point(u) + (self.sac_centre_v(u) + dv) * self.normal(u)
        return np.array([float(self.x0(u)), yz[0], yz[1]])

    def _sample_roots(self, rng) -> list:
        """Cauda equina bundles: (vc/ap, w/lr) start in the sac, exit level u, radius."""
        exits = np.r_[self.u_centre[4:] + 0.2 * self.h[4:], self.u_s0 + 10, self.u_s0 + 20]
        roots = []
        for k in range(rng.integers(6, 10)):
            roots.append((rng.uniform(0.1, 0.8), rng.uniform(-0.85, 0.85), rng.choice(exits) + rng.uniform(-5, 5),
                          rng.uniform(0.5, 0.9)))
        return roots

    def level_rows(self) -> dict:
        """World y of each body's top and bottom endplate centre and of S1's top."""
        out = {}
        for k, name in enumerate(BODY_LEVELS):
            top = self.P[k] - self.t[k] * self.h[k] / 2
            bot = self.P[k] + self.t[k] * self.h[k] / 2
            out[name] = (top[0], bot[0])
        out["S1"] = (self.Ps[0], self.Ps[0] + 25)
        return out


# ----------------------------------------------------------------------------------------------
# Tumors
# ----------------------------------------------------------------------------------------------

def _frame(t_yz, n_yz) -> np.ndarray:
    """Rotation whose columns are the spine tangent, posterior normal and right, in (x, y, z)."""
    return np.array([[0.0, 0.0, 1.0], [t_yz[0], n_yz[0], 0.0], [t_yz[1], n_yz[1], 0.0]])


def _lobes(rng, centre, rot, radii, n_extra) -> list:
    """A lobulated ellipsoid: the main lobe plus smaller lobes centred on its surface."""
    lobes = [(np.asarray(centre, float), rot, np.asarray(radii, float))]
    for _ in range(n_extra):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = rot @ (direction * radii * rng.uniform(0.45, 0.7))
        small = np.asarray(radii) * rng.uniform(0.4, 0.65)
        lobes.append((centre + offset, rot, small))
    return lobes


def _radii_for_volume(volume_ml, aspect) -> np.ndarray:
    """Radii (mm) of an ellipsoid of ``volume_ml`` with axis ratios ``aspect``."""
    aspect = np.asarray(aspect, float)
    k = (volume_ml * 1000.0 * 3 / (4 * np.pi) / np.prod(aspect)) ** (1 / 3)
    return aspect * k


def _make_tumor(kind: str, spine: _Spine, rng, u_range) -> _Tumor:
    """Draw one tumor of ``kind`` centred between arc lengths ``u_range``."""
    if kind == "intramedullary":
        lo = max(u_range[0], spine.u_centre[0] - 5)
        hi = min(u_range[1], spine.u_conus - spine.cone_len - 6)
        radius = rng.uniform(2.6, min(5.5, spine.sac_ap * 0.85 - 0.5))
        length = rng.uniform(2.0, 5.0) * radius
        u_t = rng.uniform(lo + length * 0.6, max(lo + length * 0.6, hi - length * 0.6))
        centre = spine.canal_point(u_t, spine.cord_offset)
        rot = _frame(spine.tangent(u_t), spine.normal(u_t))
        radii = np.array([length, radius, radius * rng.uniform(1.0, 1.2)])
        tumor = _Tumor(kind, _lobes(rng, centre, rot, radii * 0.9, rng.integers(1, 3)),
                       intensity=rng.uniform(1.25, 1.9), texture=rng.uniform(0.08, 0.25),
                       cyst=rng.uniform(0.35, 0.55) if rng.random() < 0.25 else None)
        extra = rng.random()
        if extra < 0.35:
            grow = rng.uniform(8, 25)
            tumor.edema = (centre, rot, np.array([length + grow, spine.cord_ap + 1, spine.cord_lr + 1]))
        elif extra < 0.65:
            rs = rng.uniform(1.0, max(1.05, min(spine.cord_ap, spine.cord_lr) - 1.8))
            tumor.syrinx = (u_t - length - rng.uniform(5, 40), u_t + length + rng.uniform(0, 15), rs)
        tumor.features = {"edema": tumor.edema is not None, "syrinx": tumor.syrinx is not None,
                          "cystic": tumor.cyst is not None}
        return tumor
    if kind == "intradural-extramedullary":
        u_t = rng.uniform(*u_range)
        volume = float(np.exp(rng.uniform(np.log(0.3), np.log(5.0))))
        radii = _radii_for_volume(volume * 0.8, (rng.uniform(1.0, 1.8), 1.0, rng.uniform(0.9, 1.2)))
        ap, lr = spine.sac_radii(u_t)
        side = rng.choice([-1.0, 1.0])
        above_conus = u_t < spine.u_conus
        if above_conus:   # beside or behind the cord, pushing it away
            dv, dw = (rng.uniform(0.3, 0.6) * ap, side * rng.uniform(0.0, 0.5) * lr)
        else:
            dv, dw = rng.uniform(-0.3, 0.5) * ap, side * rng.uniform(0.0, 0.4) * lr
        centre = spine.canal_point(u_t, dv) + np.array([dw, 0, 0])
        rot = _frame(spine.tangent(u_t), spine.normal(u_t))
        tumor = _Tumor(kind, _lobes(rng, centre, rot, radii, rng.integers(1, 4)),
                       intensity=rng.uniform(1.1, 2.1), texture=rng.uniform(0.1, 0.3),
                       cyst=rng.uniform(0.35, 0.6) if rng.random() < 0.3 else None)
        if above_conus:
            push = max(radii) + spine.cord_ap
            tumor.displacement = (u_t, radii[0] + 12, -np.sign(dv) * min(push, ap) * 0.6, -dw * 0.8)
        tumor.features = {"cystic": tumor.cyst is not None, "below_conus": not above_conus}
        return tumor
    # extradural: epidural mass or vertebral-body metastasis growing into the canal
    volume = float(np.exp(rng.uniform(np.log(0.5), np.log(9.0))))
    if rng.random() < 0.5:
        k = int(rng.integers(0, 8))
        lo_k, hi_k = np.searchsorted(spine.u_centre, u_range)
        k = int(np.clip(k, max(lo_k, 0), max(min(hi_k - 1, 7), 0)))
        radii = _radii_for_volume(volume * 0.8, (rng.uniform(0.9, 1.3), 1.0, rng.uniform(0.9, 1.3)))
        u_t = spine.u_centre[k] + rng.uniform(-0.2, 0.2) * spine.h[k]
        yz = spine.P[k] + spine.n[k] * (spine.d[k] / 2 - radii[1] * rng.uniform(0.2, 0.6))
        centre = np.array([spine.x0(u_t) + rng.uniform(-6, 6), yz[0], yz[1]])
        origin = "vertebral body"
    else:
        u_t = rng.uniform(*u_range)
        radii = _radii_for_volume(volume * 0.8, (rng.uniform(1.5, 2.6), 1.0, rng.uniform(1.0, 1.5)))
        ap, lr, ep = spine.bony_radii(u_t)
        if rng.random() < 0.6:      # dorsal epidural
            centre = spine.canal_point(u_t, spine.sac_ap + ep * 0.5 + radii[1] * rng.uniform(0.3, 0.6))
        else:                        # ventrolateral
            side = rng.choice([-1.0, 1.0])
            centre = spine.canal_point(u_t, -spine.sac_ap * 0.3)
            centre[0] += side * (spine.sac_lr + radii[2] * rng.uniform(0.3, 0.6))
        origin = "epidural space"
    rot = _frame(spine.tangent(u_t), spine.normal(u_t))
    tumor = _Tumor("extradural", _lobes(rng, centre, rot, radii, rng.integers(1, 4)),
                   intensity=rng.uniform(1.0, 1.7), texture=rng.uniform(0.1, 0.3))
    ap = spine.sac_radii(u_t)[0]
    direction = 1.0 if spine.sac_centre_v(u_t) > np.dot(centre[1:] - spine.point(u_t), spine.normal(u_t)) else -1.0
    tumor.displacement = (u_t, radii[0] + 10, direction * ap * 0.4, 0.0)
    tumor.features = {"origin": origin}
    return tumor


def _place_tumors(kinds, spine, rng, u_range) -> list[_Tumor]:
    """Draw tumors of ``kinds`` that keep clear of each other (so compartment rules hold)."""
    tumors: list[_Tumor] = []
    for kind in kinds:
        for _ in range(40):
            candidate = _make_tumor(kind, spine, rng, u_range)
            c = np.asarray(candidate.lobes[0][0])
            if all(np.linalg.norm(c - np.asarray(o.lobes[0][0])) > candidate.extent() + o.extent() + 8
                   for o in tumors):
                tumors.append(candidate)
                break
    return tumors


def _inside_lobes(lobes, X, Y, Z, grow: float = 0.0) -> np.ndarray:
    """Boolean: points (broadcast X, Y, Z world mm) inside any lobe grown by ``grow`` mm."""
    out = None
    for centre, rot, radii in lobes:
        dx, dy, dz = X - centre[0], Y - centre[1], Z - centre[2]
        q = 0.0
        for axis in range(3):
            comp = dx * rot[0, axis] + dy * rot[1, axis] + dz * rot[2, axis]
            q = q + (comp / (radii[axis] + grow)) ** 2
        inside = q <= 1.0
        out = inside if out is None else (out | inside)
    return out


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

class _Grid:
    """The fine canonical grid: x per fine sub-slice, y per row, z per column, and the paint."""

    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z
        shape = (len(x), len(y), len(z))
        self.label = np.zeros(shape, np.uint8)
        self.cls = np.zeros(shape, np.uint8)
        self.step = float(y[1] - y[0])

    def block(self, ylo, yhi, zlo, zhi, xlo, xhi):
        """Index slices and broadcast coordinates of the sub-grid inside a world box, or None."""
        def rng_(coords, lo, hi):
            a = int(np.searchsorted(coords, lo))
            b = int(np.searchsorted(coords, hi, side="right"))
            return slice(a, b) if b > a else None

        sx, sy, sz = rng_(self.x, xlo, xhi), rng_(self.y, ylo, yhi), rng_(self.z, zlo, zhi)
        if sx is None or sy is None or sz is None:
            return None
        X = self.x[sx][:, None, None]
        Y = self.y[sy][None, :, None]
        Z = self.z[sz][None, None, :]
        return (sx, sy, sz), X, Y, Z

    def paint(self, index, mask, label, cls) -> None:
        """Set label and class where ``mask`` (block-shaped) is true; ``cls`` may be an array."""
        lab = self.label[index]
        cl = self.cls[index]
        lab[mask] = label
        if np.ndim(cls):
            cl[mask] = cls[mask]
        else:
            cl[mask] = cls


def _box_of(points_yz, margin):
    pts = np.asarray(points_yz)
    return pts[:, 0].min() - margin, pts[:, 0].max() + margin, pts[:, 1].min() - margin, pts[:, 1].max() + margin


def _frame_points(P, t, n, a_values, b_values):
    return [P + a * t + b * n for a in a_values for b in b_values]


def _paint_soft_tissue(grid: _Grid, spine: _Spine) -> None:
    """Air, skin, subcutaneous fat, paraspinal muscle and anterior soft tissue, per (y, z) row."""
    uu = spine.cu
    canal = spine.point(uu) + (spine.sac_centre_v(uu))[:, None] * spine.normal(uu)
    ys = np.maximum.accumulate(canal[:, 0])
    z_canal = np.interp(grid.y, ys, canal[:, 1])
    y_s0 = spine.Ps[0]
    muscle = spine.muscle * (1 - 0.7 * np.clip((grid.y - y_s0) / 80.0, 0, 1))
    z_fat = z_canal + spine.sac_ap + muscle
    z_skin_in = z_fat + spine.fat
    z_skin = z_skin_in + spine.skin
    Z = grid.z[None, :]
    cls = np.full((len(grid.y), len(grid.z)), _SOFT, np.uint8)
    lab = np.zeros_like(cls)
    post = Z >= z_canal[:, None]
    cls[post] = _MUSCLE
    lab[post] = labels.value("paraspinal_muscle")
    fat = Z >= z_fat[:, None]
    cls[fat] = _SUBFAT
    lab[fat] = labels.value("subcutaneous_fat")
    skin = Z >= z_skin_in[:, None]
    cls[skin] = _SKIN
    lab[skin] = 0
    air = Z >= z_skin[:, None]
    cls[air] = _AIR
    grid.cls[:] = cls[None]
    grid.label[:] = lab[None]
    _paint_aorta(grid, spine)


def _paint_aorta(grid: _Grid, spine: _Spine) -> None:
    """The aorta (flow void) in front of the bodies, left of the midline, down to L4."""
    u = np.arange(-60.0, spine.u_centre[6], 1.0)
    d = np.interp(u, spine.u_centre, spine.d)
    centre = spine.point(u) - (d / 2 + 3 + spine.aorta_r)[:, None] * spine.normal(u)
    ys = np.maximum.accumulate(centre[:, 0])
    blk = grid.block(ys.min(), ys.max(), centre[:, 1].min() - 15, centre[:, 1].max() + 15,
                     -14 - spine.aorta_r - 8, -14 + spine.aorta_r + 8)
    if blk is None:
        return
    index, X, Y, Z = blk
    zc = np.interp(Y, ys, centre[:, 1])
    mask = ((X + 14) ** 2 + (Z - zc) ** 2 <= spine.aorta_r ** 2) & (Y <= ys.max())
    grid.paint(index, mask, 0, _VESSEL)


def _paint_discs(grid: _Grid, spine: _Spine) -> None:
    """Discs between the rigid bodies (and above T10, and L5-S1): annulus plus bright nucleus."""
    disc = labels.value("disc")
    pairs = [(-1, 0)] + [(k, k + 1) for k in range(8)]
    for upper, lower in pairs:
        if lower == 8:
            P2, t2, h2 = spine.Ps, spine.ts, 0.0
        else:
            P2, t2, h2 = spine.P[lower], spine.t[lower], spine.h[lower]
        if upper == -1:
            P1 = spine.P[0] - spine.t[0] * (spine.h[0] + spine.disc_above)
            t1, n1, h1, k_ref = spine.t[0], spine.n[0], 0.0, 0
            hd = spine.disc_above
        else:
            P1, t1, n1, h1, k_ref = spine.P[upper], spine.t[upper], spine.n[upper], spine.h[upper], upper
            hd = spine.disc[upper]
        kk = min(k_ref + (1 if upper >= 0 and lower < 8 else 0), 7)
        dd = (spine.d[k_ref] + spine.d[kk]) / 2
        ww = (spine.W[k_ref] + spine.W[kk]) / 2
        tm = (t1 + t2) / np.linalg.norm(t1 + t2)
        nm = np.array([-tm[1], tm[0]]) if np.dot(np.array([-tm[1], tm[0]]), n1) > 0 else np.array([tm[1], -tm[0]])
        Pm = (P1 + t1 * h1 / 2 + P2 - t2 * h2 / 2) / 2
        pts = _frame_points(Pm, tm, nm, (-hd - 4, hd + 4), (-dd / 2 - 3, dd / 2 + 3))
        ylo, yhi, zlo, zhi = _box_of(pts, 2)
        xc = spine.x0((spine.u_centre[k_ref]))
        blk = grid.block(ylo, yhi, zlo, zhi, xc - ww / 2 - 3, xc + ww / 2 + 3)
        if blk is None:
            continue
        index, X, Y, Z = blk
        a1 = (Y - P1[0]) * t1[0] + (Z - P1[1]) * t1[1]
        a2 = (Y - P2[0]) * t2[0] + (Z - P2[1]) * t2[1]
        am = (Y - Pm[0]) * tm[0] + (Z - Pm[1]) * tm[1]
        bm = (Y - Pm[0]) * nm[0] + (Z - Pm[1]) * nm[1]
        w = X - xc
        between = (a1 > h1 / 2 - spine.cc) & (a2 < -h2 / 2 + spine.cc)
        rho = np.sqrt((bm / (dd / 2 + 1.0)) ** 2 + (w / (ww / 2 + 0.5)) ** 2)
        mask = between & (rho <= 1)
        degenerated = upper >= 0 and spine.degenerated[upper]
        nucleus = (((bm - 0.06 * dd) / (0.36 * dd)) ** 2 + (w / (0.33 * ww)) ** 2 + (am / (0.46 * hd)) ** 2) <= 1
        cls = np.where(nucleus, _DEGEN if degenerated else _NUCLEUS, _ANNULUS).astype(np.uint8)
        cleft = nucleus & (np.abs(am) < 0.45)
        cls = np.where(cleft & ~degenerated, _ANNULUS, cls).astype(np.uint8)
        grid.paint(index, mask, disc, np.broadcast_to(cls, mask.shape))


def _paint_bodies(grid: _Grid, spine: _Spine) -> None:
    """Vertebral bodies T10-L5: rounded boxes with concave endplates, cortex and basivertebral vein."""
    for k, name in enumerate(BODY_LEVELS):
        P, t, n, h, d, W = spine.P[k], spine.t[k], spine.n[k], spine.h[k], spine.d[k], spine.W[k]
        pts = _frame_points(P, t, n, (-h / 2, h / 2), (-d / 2, d / 2))
        ylo, yhi, zlo, zhi = _box_of(pts, 1.5)
        xc = float(spine.x0(spine.u_centre[k]))
        blk = grid.block(ylo, yhi, zlo, zhi, xc - W / 2 - 1, xc + W / 2 + 1)
        if blk is None:
            continue
        index, X, Y, Z = blk
        a = (Y - P[0]) * t[0] + (Z - P[1]) * t[1]
        b = (Y - P[0]) * n[0] + (Z - P[1]) * n[1]
        w = X - xc
        p = 2.6
        rho = ((np.abs(b) / (d / 2)) ** p + (np.abs(w) / (W / 2)) ** p) ** (1 / p)
        half = h / 2 - spine.cc * np.clip(1 - rho ** 2, 0, 1)
        inside = (rho <= 1) & (np.abs(a) <= half)
        depth = np.minimum(half - np.abs(a), (1 - rho) * min(d, W) / 2)
        cls = np.where(depth < spine.cortex, _CORTEX, _MARROW).astype(np.uint8)
        vein = (np.abs(a) < 1.6) & (b > d / 2 - 7) & (b < d / 2 - 2.5) & (np.abs(w) < 2.0)
        cls = np.where(vein & (depth >= spine.cortex), _BVV, cls).astype(np.uint8)
        grid.paint(index, inside, labels.value(name), cls)


def _paint_posterior_elements(grid: _Grid, spine: _Spine) -> None:
    """Pedicles, articular pillars, laminae and spinous processes of T10-L5 (marrow core, cortex shell)."""
    pe = labels.value("posterior_elements")
    for k in range(8):
        P, t, n, h, d = spine.P[k], spine.t[k], spine.n[k], spine.h[k], spine.d[k]
        uk = spine.u_centre[k]
        ap, lr, ep = (float(v) for v in spine.bony_radii(uk))
        bc = d / 2 + spine.gap + float(spine.sac_radii(uk)[0])
        wp = lr + 3.5
        phi = np.radians(20 + 22 * (1 - np.clip((uk - spine.u_centre[2]) / 40, 0, 1)))
        b0 = bc + ap + ep / 2 + 2
        length = spine.spinous_len
        far = b0 + length * np.cos(phi) + 6
        pts = _frame_points(P, t, n, (-h / 2 - 5, h / 2 + spine.disc[k] + 8 + length * np.sin(phi)), (d / 2 - 5, far))
        ylo, yhi, zlo, zhi = _box_of(pts, 2)
        xc = float(spine.x0(uk))
        blk = grid.block(ylo, yhi, zlo, zhi, xc - wp - 7, xc + wp + 7)
        if blk is None:
            continue
        index, X, Y, Z = blk
        a = (Y - P[0]) * t[0] + (Z - P[1]) * t[1]
        b = (Y - P[0]) * n[0] + (Z - P[1]) * n[1]
        aw = np.abs(X - xc)

        def shell(margin):
            ped = (((a + 0.12 * h) / (0.28 * h - margin)) ** 2 + ((aw - wp) / (4.0 - margin)) ** 2 <= 1) \
                & (b >= d / 2 - 4) & (b <= bc + 2)
            pillar = (np.abs(aw - wp - 1) <= 5 - margin) & (b >= bc - 1 + margin) & (b <= bc + ap + 6 - margin) \
                & (a >= -0.5 * h + margin) & (a <= 0.5 * h + spine.disc[k] * 0.8 - margin)
            ell_in = ((b - bc - ep / 2) / (ap + margin)) ** 2 + (aw / (lr + margin)) ** 2
            ell_out = ((b - bc - ep / 2) / (ap + 5 - margin)) ** 2 + (aw / (lr + 5 - margin)) ** 2
            slope = a - 0.35 * (b - bc)
            lamina = (ell_in > 1) & (ell_out <= 1) & (b > bc) & (slope >= -0.45 * h + margin) \
                & (slope <= 0.35 * h - margin)
            along = (a - 0.05 * h) * np.sin(phi) + (b - b0) * np.cos(phi)
            across = (a - 0.05 * h) * np.cos(phi) - (b - b0) * np.sin(phi)
            half_h = 0.3 * h * (1 + 0.25 * along / length)
            spinous = (along >= -6) & (along <= length - margin) & (np.abs(across) <= half_h - margin) \
                & (aw <= 3.5 - margin * 0.8)
            return ped | pillar | lamina | spinous

        outer = shell(0.0)
        core = shell(1.0)
        grid.paint(index, outer, pe, np.where(core, _PE, _CORTEX).astype(np.uint8))


class _CurveCoords:
    """Arc length u and normal offset v of world (y, z) points, by nearest centre-line sample."""

    def __init__(self, spine: _Spine):
        self.spine = spine
        # y increases monotonically along the curve (|tangent angle| < 90 degrees)
        self.y_mono = np.maximum.accumulate(spine.cy)

    def __call__(self, Y2, Z2):
        """Foot of the perpendicular by Newton steps from the curve point at the same height."""
        s = self.spine
        y, z = Y2.ravel(), Z2.ravel()
        u = np.interp(y, self.y_mono, s.cu)
        for _ in range(4):
            th = np.interp(u, s.cu, s.ctheta)
            dy, dz = y - np.interp(u, s.cu, s.cy), z - np.interp(u, s.cu, s.cz)
            u = u + dy * np.cos(th) - dz * np.sin(th)
        th = np.interp(u, s.cu, s.ctheta)
        dy, dz = y - np.interp(u, s.cu, s.cy), z - np.interp(u, s.cu, s.cz)
        v = dy * np.sin(th) + dz * np.cos(th)
        return u.reshape(Y2.shape), v.reshape(Y2.shape)


def _paint_sacrum(grid: _Grid, spine: _Spine, coords: _CurveCoords) -> None:
    """The sacrum: a tapering, curved plate with cortex, fused-segment lines and a dorsal wall."""
    sac_label = labels.value("sacrum")
    u_end = spine.u_s0 + spine.sacrum_len
    pts = spine.point(np.linspace(spine.u_s0 - 5, u_end, 30))
    ylo, yhi, zlo, zhi = _box_of(pts, spine.d[-1] + 10)
    xc = float(spine.x0(spine.u_s0))
    half_w = spine.W[-1] / 2 + 20
    blk = grid.block(ylo, yhi, zlo, zhi, xc - half_w - 2, xc + half_w + 2)
    if blk is None:
        return
    index, X, Y, Z = blk
    Y2, Z2 = np.broadcast_arrays(Y[0], Z[0])
    u, v = coords(Y2, Z2)
    a0 = (Y2 - spine.Ps[0]) * spine.ts[0] + (Z2 - spine.Ps[1]) * spine.ts[1]
    f = np.clip((u - spine.u_s0) / spine.sacrum_len, 0, 1)
    v_post = spine.post_wall(u)
    thick = spine.d[-1] * (1 - 0.65 * f)
    v_ant = v_post - thick
    width = half_w * (1 - 0.6 * f)
    w = X - xc
    inside2 = (a0 >= 0) & (u <= u_end) & (v <= v_post) & (v >= v_ant)
    rw = np.abs(w) / width
    inside = inside2 & (rw <= 1)
    depth2 = np.minimum.reduce([a0, u_end - u, v_post - v, v - v_ant])
    depth = np.minimum(depth2, (1 - rw) * 12)
    seg = np.zeros_like(u, dtype=bool)
    for frac in (0.28, 0.52, 0.72, 0.88):
        seg |= np.abs(u - (spine.u_s0 + frac * spine.sacrum_len)) < 0.7
    cls = np.where(depth < spine.cortex, _CORTEX, _MARROW)
    cls = np.where(seg & (depth >= spine.cortex), _ANNULUS, cls).astype(np.uint8)
    grid.paint(index, inside, sac_label, cls)
    # dorsal wall of the sacral canal (median crest)
    ap, lr, ep = spine.bony_radii(u)
    vc = v - spine.sac_centre_v(u)
    dorsal = (u > spine.u_s0 + 3) & (u <= u_end - 5) & (vc >= ap + ep / 2) & (vc <= ap + ep / 2 + 6)
    dorsal = dorsal & (np.abs(w) <= lr + 6)
    core = (vc >= ap + ep / 2 + 1) & (vc <= ap + ep / 2 + 5) & (np.abs(w) <= lr + 5)
    grid.paint(index, dorsal, labels.value("posterior_elements"), np.where(core, _PE, _CORTEX).astype(np.uint8))


def _paint_canal(grid: _Grid, spine: _Spine, coords: _CurveCoords, tumors: list[_Tumor]) -> None:
    """Epidural fat, thecal sac, cauda equina, cord (with edema/syrinx), honouring the tumors.

    Compartment rules are built in: the sac is enlarged by intradural tumors grown 1.5 mm
    (3 mm for intramedullary ones) and loses extradural tumors grown 1.5 mm; the cord stays
    1.5 mm inside the sac and is enlarged by intramedullary tumors grown 1.5 mm.
    """
    s = spine
    reach = max([0.0] + [t.extent() + 4 for t in tumors if t.type != "extradural"])
    half = s.sac_ap + s.e_post + 8 + reach
    half_x = s.sac_lr + s.e_lat + 3 + s.scol_amp + reach
    uu = s.cu
    centre = s.point(uu) + s.sac_centre_v(uu)[:, None] * s.normal(uu)
    ys = np.maximum.accumulate(centre[:, 0])
    zc_rows = np.interp(grid.y, ys, centre[:, 1])
    hc = int(math.ceil(half / grid.step)) + 2
    width = 2 * hc + 1
    ncols = len(grid.z)
    width = min(width, ncols)
    c0 = np.clip(np.round((zc_rows - grid.z[0]) / grid.step).astype(int) - hc, 0, ncols - width)
    cols = c0[:, None] + np.arange(width)[None, :]
    rows = np.arange(len(grid.y))[:, None]
    Y2 = np.broadcast_to(grid.y[:, None], cols.shape)
    Z2 = grid.z[cols]
    u, v = coords(Y2, Z2)
    x0 = s.x0(u)
    xs = np.nonzero(np.abs(grid.x - float(np.mean(x0))) <= half_x + s.scol_amp)[0]
    if not len(xs):
        return
    X = grid.x[xs][:, None, None]
    W = X - x0[None]
    VC = (v - s.sac_centre_v(u))[None]
    ap, lr = s.sac_radii(u)
    bap, blr, ep = s.bony_radii(u)
    ap, lr, bap, blr, ep = ap[None], lr[None], bap[None], blr[None], ep[None]
    Yb, Zb = Y2[None], Z2[None]

    def on_band(lobes, g, out):
        """OR into ``out`` the lobes grown by g mm, evaluated only on the band rows and slices they reach."""
        c = np.asarray(lobes[0][0])
        reach_t = max(float(np.linalg.norm(np.asarray(cc) - c) + max(r)) for cc, _, r in lobes) + g + 1
        r0, r1 = np.searchsorted(grid.y, [c[1] - reach_t, c[1] + reach_t])
        x0_, x1_ = np.searchsorted(grid.x[xs], [c[0] - reach_t, c[0] + reach_t])
        if r1 > r0 and x1_ > x0_:
            out[x0_:x1_, r0:r1] |= _inside_lobes(lobes, X[x0_:x1_], Yb[:, r0:r1], Zb[:, r0:r1], g)
        return out

    def grown(kinds, g):
        """Tumors of ``kinds`` grown by g mm."""
        out = np.zeros(W.shape, bool)
        for t in tumors:
            if t.type in kinds:
                on_band(t.lobes, g, out)
        return out

    within = u[None] <= s.u_s0 + s.sacrum_len - 8
    bony = within & (((VC - ep / 2) / bap) ** 2 + (W / blr) ** 2 <= 1)
    sac_ell = ((VC / np.maximum(ap, 1e-3)) ** 2 + (W / np.maximum(lr, 1e-3)) ** 2 <= 1) & (ap > 0.3)
    ed_1 = grown(("extradural",), 1.5)
    sac = (sac_ell | grown(("intradural-extramedullary",), 1.5) | grown(("intramedullary",), 3.0)) & ~ed_1
    # cord centre with displacement by tumors
    dv = np.zeros_like(u)
    dw = np.zeros_like(u)
    for t in tumors:
        if t.displacement is not None:
            ut, hl, ddv, ddw = t.displacement
            bump = np.exp(-((u - ut) / hl) ** 2)
            dv += ddv * bump
            dw += ddw * bump
    rfac = np.sqrt(np.clip((s.u_conus - u) / s.cone_len, 0, 1))[None]
    vcc = (s.cord_offset + dv)[None]
    wcc = dw[None]
    cord_shape = (((VC - vcc) / np.maximum(s.cord_ap * rfac, 1e-3)) ** 2
                  + ((W - wcc) / np.maximum(s.cord_lr * rfac, 1e-3)) ** 2 <= 1) & (rfac > 0.05)
    shrunk = ((VC / np.maximum(ap - 1.5, 1e-3)) ** 2 + (W / np.maximum(lr - 1.5, 1e-3)) ** 2 <= 1) & (ap > 2)
    cord = (cord_shape & shrunk & ~grown(("extradural",), 3.0)) | grown(("intramedullary",), 1.5)
    # roots and filum below the conus, inside the sac
    roots = np.zeros(W.shape, bool)
    below = (u > s.u_conus - 4)[None] & sac
    if below.any():
        idx = np.nonzero(below)
        vc_f, w_f, u_f = np.broadcast_to(VC, W.shape)[idx], W[idx], np.broadcast_to(u[None], W.shape)[idx]
        ap_f, lr_f = np.broadcast_to(ap, W.shape)[idx], np.broadcast_to(lr, W.shape)[idx]
        conv = np.clip((u_f - s.u_conus + 4) / 25.0, 0, 1)   # bundles leave the conus and spread
        hit = (vc_f - s.cord_offset) ** 2 + w_f ** 2 <= 0.6 ** 2     # filum terminale
        for rv, rw, u_exit, radius in s.roots:
            side = np.sign(rw) if rw != 0 else 1.0
            out = side * np.clip((u_f - (u_exit - 25)) / 25, 0, 1) * lr_f * 0.6
            cv = s.cord_offset + conv * (rv * ap_f - s.cord_offset)
            cw = conv * rw * lr_f + out
            hit |= ((vc_f - cv) ** 2 + (w_f - cw) ** 2 <= radius ** 2) & (u_f <= u_exit)
        roots[idx] = hit
    # paint, inner structures last
    sl = (xs, rows, cols)

    target = (xs[:, None, None], rows[None], cols[None])
    band_label = grid.label[target]
    band_cls = grid.cls[target]

    def paint(mask, label, cls):
        band_label[mask] = label
        band_cls[mask] = cls

    del sl
    current = band_label.copy()
    keep_bone = np.isin(current, [labels.value(k) for k in BODY_LEVELS] + [labels.value("disc"),
                                                                           labels.value("sacrum")])
    paint(bony & ~sac & ~keep_bone, labels.value("epidural_fat"), _EPIFAT)
    paint(sac, labels.value("canal"), _CSF)
    paint(roots & sac & ~cord, labels.value("cauda_equina"), _ROOT)
    paint(cord & sac, labels.value("cord"), _CORD)
    for t in tumors:
        if t.type != "intramedullary":
            continue
        if t.edema is not None:
            c, rot, radii = t.edema
            edema = on_band([(c, rot, radii)], 0.0, np.zeros(W.shape, bool))
            paint(cord & sac & edema, labels.value("edema"), _EDEMA)
        if t.syrinx is not None:
            u_from, u_to, rs = t.syrinx
            tube = ((VC - vcc) ** 2 + (W - wcc) ** 2 <= rs ** 2) & ((u >= u_from) & (u <= u_to))[None]
            paint(cord & sac & tube & (rfac > 0.6), labels.value("syrinx"), _CSF)
    grid.label[target] = band_label
    grid.cls[target] = band_cls


def _paint_tumors(grid: _Grid, tumors: list[_Tumor]) -> None:
    """Tumor voxels take their type label; class 31 + i, with a fluid core when cystic."""
    for i, t in enumerate(tumors, start=1):
        pts = np.array([c for c, _, _ in t.lobes])
        r = max(max(rr) for _, _, rr in t.lobes)
        lo, hi = pts.min(0) - r - 1, pts.max(0) + r + 1
        blk = grid.block(lo[1], hi[1], lo[2], hi[2], lo[0], hi[0])
        if blk is None:
            continue
        index, X, Y, Z = blk
        mask = _inside_lobes(t.lobes, X, Y, Z)
        cls = np.full(mask.shape, _TUMOR_CLASS - 1 + i, np.uint8)
        if t.cyst is not None:
            c, rot, radii = t.lobes[0]
            core = _inside_lobes([(c, rot, radii * t.cyst)], X, Y, Z)
            cls[core] = _TUMOR_CLASS + 15 + i
        grid.paint(index, mask, labels.value(t.type), cls)


# ----------------------------------------------------------------------------------------------
# Intensities, noise, orientation
# ----------------------------------------------------------------------------------------------

def _intensity_tables(rng, tumors) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean intensity (ratio to marrow) and texture amplitude for this case.

    Means are the calibrated ratios, each jittered by 0.7 of its between-scan sd.
    """
    def draw(key, lo, hi):
        return float(np.clip(CALIBRATED_RATIOS[key] + 0.7 * CALIBRATED_SD[key] * rng.normal(), lo, hi))

    fat = draw("subcutaneous_fat", 1.1, 2.9)
    csf = draw("csf", 1.6, 2.5)
    lut = np.zeros(_N_CLASSES, np.float32)
    amp = np.zeros(_N_CLASSES, np.float32)
    lut[_AIR], amp[_AIR] = draw("background", 0.4, 0.75), 0.0
    lut[_SOFT], amp[_SOFT] = ASSUMED_RATIOS["soft_tissue"], 0.15
    lut[_SKIN], amp[_SKIN] = ASSUMED_RATIOS["skin"], 0.05
    lut[_SUBFAT], amp[_SUBFAT] = fat, 0.06
    lut[_MUSCLE], amp[_MUSCLE] = draw("paraspinal_muscle", 0.7, 1.1), 0.08
    lut[_MARROW], amp[_MARROW] = 1.0, 0.08
    lut[_CORTEX], amp[_CORTEX] = ASSUMED_RATIOS["cortex"], 0.05
    lut[_NUCLEUS], amp[_NUCLEUS] = draw("disc_nucleus", 0.95, 1.5) * 1.15, 0.06
    lut[_ANNULUS], amp[_ANNULUS] = draw("disc_annulus", 0.6, 0.85), 0.05
    lut[_DEGEN], amp[_DEGEN] = ASSUMED_RATIOS["degenerated_nucleus"], 0.06
    lut[_PE], amp[_PE] = ASSUMED_RATIOS["posterior_elements"], 0.08
    lut[_EPIFAT], amp[_EPIFAT] = fat * ASSUMED_RATIOS["epidural_fat_vs_subcutaneous"], 0.06
    lut[_CSF], amp[_CSF] = csf, 0.03
    lut[_CORD], amp[_CORD] = draw("cord", 0.85, 1.3), 0.04
    lut[_ROOT], amp[_ROOT] = lut[_CORD], 0.04
    lut[_VESSEL], amp[_VESSEL] = ASSUMED_RATIOS["flow_void"], 0.15
    lut[_EDEMA], amp[_EDEMA] = ASSUMED_RATIOS["edema"], 0.06
    lut[_BVV], amp[_BVV] = ASSUMED_RATIOS["basivertebral_vein"], 0.05
    for i, t in enumerate(tumors, start=1):
        lut[_TUMOR_CLASS - 1 + i], amp[_TUMOR_CLASS - 1 + i] = t.intensity, t.texture
        lut[_TUMOR_CLASS + 15 + i], amp[_TUMOR_CLASS + 15 + i] = csf * 0.95, 0.04
    return lut, amp


def _smooth_noise(rng, shape, step_mm, corr_mm=4.0) -> np.ndarray:
    """Unit-variance smooth noise at ``shape`` (in-plane correlation about ``corr_mm``)."""
    from scipy.ndimage import gaussian_filter

    f = max(1, int(round(corr_mm / step_mm)))
    coarse = rng.standard_normal((shape[0], shape[1] // f + 2, shape[2] // f + 2)).astype(np.float32)
    coarse = gaussian_filter(coarse, (0.6, 0.8, 0.8))
    coarse /= max(float(coarse.std()), 1e-6)
    for axis in (1, 2):                       # separable linear upsampling by f
        pos = np.arange(shape[axis], dtype=np.float32) / f
        i0 = pos.astype(int)
        frac = (pos - i0).reshape([-1 if a == axis else 1 for a in range(3)])
        coarse = np.take(coarse, i0, axis=axis) * (1 - frac) + np.take(coarse, i0 + 1, axis=axis) * frac
    return coarse


def _bias_field(rng, shape, amplitude) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic, brighter posteriorly (spine coil)."""
    s = np.linspace(-1, 1, shape[0])[:, None, None]
    r = np.linspace(-1, 1, shape[1])[None, :, None]
    c = np.linspace(-1, 1, shape[2])[None, None, :]
    coef = rng.normal(0, 1, size=6) * amplitude / 2
    in_plane = coef[0] * r + coef[1] * r ** 2 + coef[3] * r * c + coef[4] * c ** 2 + coef[5] * c
    across = coef[2] * s ** 2
    in_plane -= in_plane.mean()
    return (np.exp(across - across.mean()) * np.exp(in_plane)).astype(np.float32)


def _axcodes(direction_lps: np.ndarray) -> str:
    """The RAS letter each of the i, j, k axes points toward (as nibabel's aff2axcodes)."""
    ras = direction_lps * np.array([-1.0, -1.0, 1.0])[:, None]
    letters = (("L", "R"), ("P", "A"), ("I", "S"))
    out = ""
    for col in range(3):
        axis = int(np.argmax(np.abs(ras[:, col])))
        out += letters[axis][int(ras[axis, col] > 0)]
    return out


def _rotation(axis, angle_deg) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(angle_deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


# ----------------------------------------------------------------------------------------------
# Ground truth from the maps
# ----------------------------------------------------------------------------------------------

def _touches_border(mask: np.ndarray, ignore_axis: int | None = None) -> bool:
    """True when the mask reaches a face of the array (faces of ``ignore_axis`` excepted)."""
    for axis in range(3):
        if axis == ignore_axis:
            continue
        if np.take(mask, 0, axis=axis).any() or np.take(mask, -1, axis=axis).any():
            return True
    return False


def _levels_present(anatomy: Volume, planes, lateral_axis: int) -> list[str]:
    """Levels whose body (T10-L5), or the top 25 mm of the sacrum (S1), lie fully inside the image.

    The sacral alae are wider than a sagittal slab, so for S1 the left-right faces
    (array axis ``lateral_axis``) do not count.
    """
    arr = anatomy.array
    out = []
    for name in ALL_LEVELS[:-1]:
        mask = arr == labels.value(name)
        if mask.any() and not _touches_border(mask):
            out.append(name)
    s1 = [p for p in planes if p[0] == ALL_LEVELS.index("S1")]
    sac = arr == labels.value("sacrum")
    if s1 and sac.any():
        kji = np.argwhere(sac)
        d = (anatomy.index_to_ras(kji) - s1[0][1]) @ s1[0][2]
        top = np.zeros_like(sac)
        top[tuple(kji[d <= 25].T)] = True
        if d.max() > 25 and top.any() and not _touches_border(top, lateral_axis):
            out.append("S1")
    return out


def _tumor_truth(anatomy: Volume, tumor_map: Volume, tumors: list[_Tumor], planes) -> list[dict]:
    """The truth entries of the tumors, measured on the maps (volume, centroid, levels)."""
    voxel_ml = float(np.prod(tumor_map.spacing)) / 1000.0
    out = []
    for i, t in enumerate(tumors, start=1):
        kji = np.argwhere(tumor_map.array == i)
        ras = tumor_map.index_to_ras(kji)
        levels_idx, epi = _tumor_levels(ras, planes)
        centroid = ras.mean(0)
        entry = {"id": i, "type": t.type, "levels": [ALL_LEVELS[k] for k in levels_idx],
                 "epicenter_level": ALL_LEVELS[epi], "volume_ml": round(len(kji) * voxel_ml, 6),
                 "voxels": int(len(kji)), "centroid_ras": [round(float(c), 3) for c in centroid],
                 "mean_intensity_ratio": round(float(t.intensity), 3)}
        entry.update(t.features)
        out.append(entry)
    return out


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def _tumor_kinds(tumor: str, rng) -> list[str]:
    if tumor not in TUMOR_CHOICES:
        raise ValueError(f"tumor must be one of {', '.join(TUMOR_CHOICES)}, got {tumor!r}")
    if tumor == "random":
        tumor = str(rng.choice(["none", "intramedullary", "intradural-extramedullary", "extradural", "several"],
                               p=[0.2, 0.2, 0.2, 0.2, 0.2]))
    if tumor == "none":
        return []
    if tumor == "several":
        n = int(rng.integers(2, 4))
        return [str(k) for k in rng.choice(labels.TUMOR_TYPE_NAMES, size=n)]
    return [tumor]


def generate(seed: int, tumor: str = "random", *, slice_thickness: float | None = None,
             in_plane: float | None = None, subslices: int = 3, fov: str | None = None,
             orientation: str | None = None, oblique_deg: float | None = None,
             noise: float | None = None, bias: float | None = None) -> PhantomCase:
    """Draw one synthetic sagittal T2 case; everything not given is drawn from ``seed``.

    ``slice_thickness`` (mm, default 3-5), ``in_plane`` (mm, default 0.5-1), ``subslices``
    (fine left-right sub-slices averaged per slice, odd), ``fov`` ("full": T10-S1 visible,
    "lumbar": top edge in T12, default either), ``orientation`` ("canonical" or "random"),
    ``oblique_deg`` (rotation of the direction matrix, default 0 or 1-8 degrees),
    ``noise`` (Rician sigma / marrow, default 0.02-0.05), ``bias`` (bias amplitude, 0-0.3).
    """
    rng = np.random.default_rng(seed)
    kinds = _tumor_kinds(tumor, rng)
    spine = _Spine(rng)
    T = float(slice_thickness if slice_thickness is not None else rng.uniform(3.0, 5.0))
    step = float(in_plane if in_plane is not None else rng.uniform(0.5, 1.0))
    subslices = int(subslices) | 1
    # field of view
    rows_at = spine.level_rows()
    fov = fov or str(rng.choice(["full", "lumbar"], p=[0.6, 0.4]))
    if fov == "full":
        y_top = rows_at["T10"][0] - rng.uniform(1.5, spine.disc_above - 0.5)
    else:
        y_top = rng.uniform(rows_at["T11"][1], (rows_at["T12"][0] + rows_at["T12"][1]) / 2)
    y_bot = spine.Ps[0] + rng.uniform(45, 110)
    z_ant = min(spine.P[:, 1] - spine.d / 2) - rng.uniform(50, 100)
    z_skin = max(spine.P[:, 1]) + spine.d.max() / 2 + 20 + spine.sac_ap + spine.muscle + spine.fat + spine.skin
    z_post = z_skin + rng.uniform(8, 30)
    n_slices = int(math.ceil(rng.uniform(64, 84) / T))
    x_centre = rng.uniform(-4, 4)
    x = x_centre + (np.arange(n_slices * subslices) + 0.5) * T / subslices - n_slices * T / 2
    y = y_top + np.arange(int(round((y_bot - y_top) / step))) * step
    z = z_ant + np.arange(int(round((z_post - z_ant) / step))) * step
    grid = _Grid(x, y, z)
    # tumors, centred within the visible span of the spine
    u_top = float(np.interp(y_top + 20, spine.cy, spine.cu))
    u_bot = min(float(np.interp(y_bot - 20, spine.cy, spine.cu)), spine.u_sac_end - 15)
    tumors = _place_tumors(kinds, spine, rng, (u_top, u_bot))
    # anatomy
    coords = _CurveCoords(spine)
    _paint_soft_tissue(grid, spine)
    _paint_discs(grid, spine)
    _paint_bodies(grid, spine)
    _paint_posterior_elements(grid, spine)
    _paint_sacrum(grid, spine, coords)
    _paint_canal(grid, spine, coords, tumors)
    _paint_tumors(grid, tumors)
    # image
    lut, amp = _intensity_tables(rng, tumors)
    nf, ny, nz = grid.cls.shape
    image = lut[grid.cls].reshape(n_slices, subslices, ny, nz).mean(axis=1)
    centre_cls = grid.cls[subslices // 2::subslices]
    label = np.ascontiguousarray(grid.label[subslices // 2::subslices])
    image *= 1 + amp[centre_cls] * _smooth_noise(rng, image.shape, step)
    bias_amp = float(bias if bias is not None else rng.uniform(0.0, 0.3))
    image *= _bias_field(rng, image.shape, bias_amp)
    scale = float(np.exp(rng.uniform(np.log(40), np.log(400))))
    sigma = float(noise if noise is not None else rng.uniform(0.02, 0.05))
    image *= scale
    n1 = rng.standard_normal(image.shape, dtype=np.float32)
    n2 = rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt((image + sigma * scale * n1) ** 2 + (sigma * scale * n2) ** 2).astype(np.float32)
    _enforce_cord_in_sac(label)
    # tumor instance map from the labels (tumor i = its class)
    tumor_map = np.zeros(label.shape, np.uint8)
    for i, t in enumerate(tumors, start=1):
        cls_c = centre_cls
        tumor_map[((cls_c == _TUMOR_CLASS - 1 + i) | (cls_c == _TUMOR_CLASS + 15 + i))
                  & (label == labels.value(t.type))] = i
    kept = [i for i in range(1, len(tumors) + 1) if (tumor_map == i).any()]
    if len(kept) != len(tumors):
        remap = np.zeros(len(tumors) + 1, np.uint8)
        for new, old in enumerate(kept, start=1):
            remap[old] = new
        tumor_map = remap[tumor_map]
        tumors = [tumors[i - 1] for i in kept]
    vert = np.zeros(label.shape, np.uint8)
    for v in labels.VERTEBRAE:
        vert[label == v.value] = v.value
    # geometry: canonical, then the output layout
    origin_offset = rng.uniform(-30, 30, size=3)
    origin = np.array([-x[subslices // 2], z[0], -y[0]]) + origin_offset
    canonical = Volume(image, (step, step, T), tuple(origin), CANONICAL_DIRECTION)
    orientation = orientation or str(rng.choice(["canonical", "random"], p=[0.3, 0.7]))
    if orientation == "canonical":
        perm, flip = (0, 1, 2), (False, False, False)
    elif orientation == "random":
        perm = tuple(int(p) for p in rng.permutation(3))
        flip = tuple(bool(f) for f in rng.random(3) < 0.5)
    else:
        raise ValueError(f"orientation must be 'canonical' or 'random', got {orientation!r}")
    angle = float(oblique_deg if oblique_deg is not None else (0.0 if rng.random() < 0.5 else rng.uniform(1, 8)))
    layout = Reorientation(tuple(perm), tuple(flip))
    out_image = reorient(canonical, layout)
    if angle:
        R = _rotation(rng.normal(size=3), angle)
        centre = out_image.index_to_lps((np.array(out_image.shape) - 1) / 2)
        out_image = Volume(out_image.array, out_image.spacing, tuple(centre + R @ (np.asarray(out_image.origin) - centre)),
                           R @ out_image.direction)

    def like(arr):
        return out_image.with_array(layout.forward(arr))

    case_anat, case_tumor = like(label), like(tumor_map)
    planes = _level_planes(case_anat)
    truth = {
        "seed": int(seed),
        "spinetumor_version": __version__,
        "tumor_request": tumor,
        "geometry": {
            "size_ijk": [int(s) for s in out_image.shape[::-1]],
            "spacing": [round(s, 6) for s in out_image.spacing],
            "origin_lps": [round(float(o), 6) for o in out_image.origin],
            "direction_lps": [[round(float(v), 9) for v in row] for row in out_image.direction],
            "axcodes": _axcodes(out_image.direction),
            "slice_thickness_mm": round(T, 6),
            "in_plane_mm": round(step, 6),
            "subslices": subslices,
            "slices": n_slices,
            "oblique_deg": round(angle, 4),
            "fov": fov,
            "noise_sigma_ratio": round(sigma, 4),
            "bias_amplitude": round(bias_amp, 4),
        },
        "levels_present": _levels_present(case_anat, planes, perm.index(0)),
        "conus_level": None,
        "tumors": _tumor_truth(case_anat, case_tumor, tumors, planes),
    }
    cord = np.argwhere(case_anat.array == labels.value("cord"))
    if len(cord):
        # the level of the most caudal cord voxel (the conus tip), by the same slabs as tumors
        truth["conus_level"] = ALL_LEVELS[int(_levels_of(case_anat.index_to_ras(cord), planes).max())]
    return PhantomCase(out_image, like(vert), case_anat, case_tumor, truth)


def _enforce_cord_in_sac(label: np.ndarray) -> None:
    """Relabel as CSF any cord voxel with an in-plane neighbour outside the dural sac.

    The geometry keeps the cord 1.5 mm inside the sac, so this only acts where a thick
    slice cuts the sac's edge; it makes "cord inside the sac" exact on the output grid.
    """
    intradural = np.isin(label, _INTRADURAL)
    cord = label == labels.value("cord")
    bad = np.zeros_like(cord)
    for axis in (1, 2):
        for shift in (1, -1):
            neighbour = np.roll(intradural, shift, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if shift == 1 else -1
            neighbour[tuple(edge)] = True
            bad |= cord & ~neighbour
    label[bad] = labels.value("canal")


_INTRADURAL = [labels.value(k) for k in ("canal", "cord", "cauda_equina", "intramedullary",
                                         "intradural-extramedullary", "edema", "syrinx")]


def write_case(out: Path, seed: int, tumor: str = "random") -> list[Path]:
    """Write image, vertebrae, anatomy and tumor maps (NIfTI) and truth.json for one seed."""
    from .io import write_json, write_volume

    out = Path(out)
    case = generate(seed, tumor)
    paths = [
        write_volume(case.image, out / "image.nii.gz"),
        write_volume(case.vertebrae, out / "vertebrae.nii.gz"),
        write_volume(case.anatomy, out / "anatomy.nii.gz"),
        write_volume(case.tumor, out / "tumor.nii.gz"),
        write_json(case.truth, out / "truth.json"),
    ]
    return paths

"""Fuzzy c-means (Bezdek 1984) that reproduces ``skfuzzy.cluster.cmeans``, fast.

The paper (Section III.B) clusters the denoised sagittal slices with fuzzy c-means to
find candidate regions before the random forest. scikit-fuzzy's ``cmeans`` is the
reference; both versions here run *its* algorithm step for step, so they return its
centers and memberships (to rounding), only much faster:

* :func:`fcm_intensity` -- one feature (the intensity). After the first iteration a
  voxel's membership depends only on its intensity, so the iteration runs over the
  distinct intensities weighted by their counts (the weighted histogram): O(c * U) per
  iteration instead of O(c * N), with U the number of distinct values (a few hundred to
  a few thousand for stored MRI). ``bins=`` gives an approximate variant for float data
  with (almost) all values distinct.
* :func:`fcm_torch` -- several features per voxel, with torch on the CPU or a GPU
  (:func:`spinetumor.device.select_device`), float64 unless the device lacks it.

The skfuzzy conventions replicated (scikit-fuzzy 0.5.0, ``skfuzzy/cluster/_cmeans.py``):

1. **Initialisation.** ``u0 = rand(c, N)`` from numpy's legacy global generator seeded
   with ``np.random.seed(seed)``, columns normalized to sum 1 -- reproduced with
   ``np.random.RandomState(seed).rand(c, N)`` (the same stream; the global state is left
   alone). Then ``u = fmax(u0, eps)``. The voxel order is the C order of ``data``, so
   skfuzzy must be given ``data.reshape(1, -1)`` (intensity) or ``features.T``.
2. **One step** (``_cmeans0``): normalize the columns of ``u``, ``fmax(., eps)``,
   ``um = u ** m``; centers ``um @ x / sum(um)``; Euclidean distances ``d`` to the new
   centers, ``fmax(d, eps)``; objective ``jm = sum(um * d**2)``; new memberships
   ``normalize_columns((d / max_c d) clipped at eps, divided by its min, ** (-2/(m-1)))``.
3. **Stopping rule.** Stop after the step where the Frobenius norm of ``u_new - u_old``
   over *all* N voxels is below ``error`` (so the effective per-voxel tolerance shrinks as
   ``1/sqrt(N)``), or after ``maxiter`` steps. With the histogram the norm is
   ``sqrt(sum_v count_v * |u_new(v) - u_old(v)|**2)``, exact, except at the first step where
   ``u_old`` is the per-voxel random initialisation (computed per voxel, once).

The returned centers are sorted ascending (by the first feature for :func:`fcm_torch`);
``order`` maps the sorted clusters to skfuzzy's cluster indices (``skfuzzy_cntr[order]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = np.finfo(np.float64).eps


def skfuzzy_init(c: int, n: int, seed: int | None) -> np.ndarray:
    """skfuzzy's random initial partition ``u0`` (c x n, columns summing to 1) for ``seed``.

    ``seed=None`` draws from numpy's global legacy generator, as skfuzzy does.
    """
    u0 = np.random.rand(c, n) if seed is None else np.random.RandomState(seed).rand(c, n)
    return u0 / u0.sum(axis=0, keepdims=True)


def _memberships_from_distances(d: np.ndarray, m: float) -> np.ndarray:
    """skfuzzy's ``normalize_power_columns(d, -2/(m-1))``: memberships from distances (c x n)."""
    x = d / d.max(axis=0, keepdims=True)
    x = np.fmax(x, EPS)
    x /= x.min(axis=0, keepdims=True)
    x = x ** (-2.0 / (m - 1.0))
    return x / x.sum(axis=0, keepdims=True)


def _check_params(c: int, m: float, maxiter: int) -> None:
    """Reject parameters for which fuzzy c-means is undefined."""
    if int(c) < 2:
        raise ValueError(f"fuzzy c-means needs at least 2 clusters, got c={c}")
    if not m > 1.0:
        raise ValueError(f"the fuzzifier m must be > 1, got m={m}")
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")


@dataclass
class IntensityFCM:
    """Result of :func:`fcm_intensity`.

    ``centers`` (c,) ascending; ``values`` (U,) the distinct intensities (or bin centers)
    and ``counts`` their voxel counts; ``table`` (c, U) the memberships of each value;
    ``inverse`` (N,) each voxel's index into ``values``; ``shape`` the input's shape;
    ``order`` the sorted-to-skfuzzy cluster permutation; ``jm`` the objective history,
    ``n_iter`` the number of steps run, ``fpc`` the fuzzy partition coefficient.
    """

    centers: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    table: np.ndarray
    inverse: np.ndarray
    shape: tuple
    m: float
    order: np.ndarray
    jm: np.ndarray
    n_iter: int
    fpc: float
    binned: bool = False
    _data: np.ndarray | None = field(default=None, repr=False)

    def memberships(self) -> np.ndarray:
        """Per-voxel memberships, shape ``(c, *shape)``: a table lookup (exact mode).

        In binned mode the lookup would give each voxel its bin's membership, so the
        memberships are evaluated from the final centers at the voxels' own values instead.
        """
        if self.binned and self._data is not None:
            return self.predict(self._data).reshape((-1, *self.shape))
        return self.table[:, self.inverse].reshape((-1, *self.shape))

    def predict(self, values) -> np.ndarray:
        """Memberships (c, *values.shape) of arbitrary intensities to the final centers.

        Identical to skfuzzy's final ``u`` for the clustered voxels (skfuzzy's last step
        computes ``u`` from the distances to the centers it returns).
        """
        values = np.asarray(values, dtype=np.float64)
        d = np.fmax(np.abs(values.reshape(1, -1) - self.centers[:, None]), EPS)
        return _memberships_from_distances(d, self.m).reshape((-1, *values.shape))

    def labels(self) -> np.ndarray:
        """Hard labels 0..c-1 (index of the largest membership; 0 = darkest cluster), input shape."""
        if self.binned:
            return np.argmax(self.memberships(), axis=0)
        return np.argmax(self.table, axis=0)[self.inverse].reshape(self.shape)


def _histogram(flat: np.ndarray, bins: int | None):
    """Distinct values (or bin centers), their counts and each voxel's index into them."""
    if bins is not None:
        lo, hi = float(flat.min()), float(flat.max())
        if hi == lo:
            return np.array([lo]), np.array([flat.size]), np.zeros(flat.size, dtype=np.intp)
        width = (hi - lo) / int(bins)
        index = np.minimum(((flat - lo) / width).astype(np.intp), int(bins) - 1)
        counts = np.bincount(index, minlength=int(bins))
        sums = np.bincount(index, weights=flat, minlength=int(bins))
        used = counts > 0
        remap = np.cumsum(used) - 1
        # each bin is represented by the mean of its voxels (better than the bin center)
        return sums[used] / counts[used], counts[used], remap[index]
    if flat.dtype.kind in "iub" and flat.size and int(flat.max()) - int(flat.min()) < 1 << 24:
        lo = int(flat.min())
        offset = flat.astype(np.int64) - lo
        counts_all = np.bincount(offset)
        used = np.flatnonzero(counts_all)
        remap = np.full(counts_all.size, -1, dtype=np.intp)
        remap[used] = np.arange(used.size)
        return (used + lo).astype(np.float64), counts_all[used], remap[offset]
    values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return values.astype(np.float64), counts, inverse.ravel()


def fcm_intensity(
    data,
    c: int,
    m: float = 2.0,
    error: float = 0.005,
    maxiter: int = 1000,
    *,
    seed: int | None = 0,
    init: np.ndarray | None = None,
    bins: int | None = None,
) -> IntensityFCM:
    """Fuzzy c-means of intensities, equal to ``skfuzzy.cluster.cmeans(data.reshape(1, -1), ...)``.

    ``data`` is any array of intensities (e.g. a canonical stack, or ``array[mask]``);
    ``c``, ``m``, ``error``, ``maxiter``, ``seed`` and ``init`` (c x N) mean what they mean in
    skfuzzy (see the module docstring for the conventions reproduced). ``seed`` defaults to
    0 so results are deterministic. ``bins`` switches to an approximate variant: the
    values are grouped into that many equal-width bins, each represented by the mean of
    its voxels (use it only for float data with mostly distinct values; the first step is
    still per voxel).
    """
    _check_params(c, m, maxiter)
    array = np.asarray(data)
    flat = array.ravel()
    n = flat.size
    if n < c:
        raise ValueError(f"need at least c={c} values to cluster, got {n}")
    values, counts, inverse = _histogram(flat, bins)
    weights = counts.astype(np.float64)
    x = flat.astype(np.float64)

    u_prev = skfuzzy_init(c, n, seed) if init is None else np.array(init, dtype=np.float64)
    if u_prev.shape != (c, n):
        raise ValueError(f"init must have shape {(c, n)}, got {u_prev.shape}")
    centers, jm0, table, change = _first_step(x, u_prev, values, weights, inverse, m)
    jm = [jm0]
    p = 1

    # steps 2..: over the weighted histogram
    while p < maxiter and not change < error:
        u_old = table
        un = np.fmax(u_old / u_old.sum(axis=0, keepdims=True), EPS)
        um = un ** m
        wum = um * weights
        centers = (wum @ values) / wum.sum(axis=1)
        d = np.fmax(np.abs(values[None, :] - centers[:, None]), EPS)
        jm.append(float((wum * d ** 2).sum()))
        table = _memberships_from_distances(d, m)
        change = float(np.sqrt((((table - u_old) ** 2) * weights).sum()))
        p += 1

    order = np.argsort(centers, kind="stable")
    table = table[order]
    fpc = float(((table ** 2) * weights).sum() / n)
    return IntensityFCM(
        centers=centers[order], values=values, counts=counts, table=table, inverse=inverse,
        shape=array.shape, m=float(m), order=order, jm=np.asarray(jm), n_iter=p, fpc=fpc,
        binned=bins is not None, _data=flat if bins is not None else None,
    )


def _first_step(x, u_prev, values, weights, inverse, m):
    """skfuzzy's first step from the per-voxel random partition ``u_prev`` (c x N, overwritten).

    Returns the centers, the objective, the membership table over ``values`` and the
    Frobenius norm of the change. The per-voxel sums are expanded so that nothing of size
    c x N is built besides ``u_prev`` and ``u_prev ** m``:
    ``sum_n um (x - c)**2 = S2 - 2 c S1 + c**2 S0`` and
    ``|T[:, inv] - u|**2 = sum_v w_v T**2 - 2 sum_v T * bincount(inv, u) + sum u**2``.
    """
    np.fmax(u_prev, EPS, out=u_prev)
    um = u_prev / u_prev.sum(axis=0, keepdims=True)
    np.fmax(um, EPS, out=um)
    np.power(um, m, out=um)
    s0, s1, s2 = um.sum(axis=1), um @ x, um @ (x * x)
    del um
    centers = s1 / s0
    jm = float(np.sum(s2 - 2.0 * centers * s1 + centers ** 2 * s0))
    d = np.fmax(np.abs(values[None, :] - centers[:, None]), EPS)
    table = _memberships_from_distances(d, m)
    cross = np.stack([np.bincount(inverse, weights=row, minlength=values.size) for row in u_prev])
    sq = float(np.sum((table ** 2) * weights) - 2.0 * np.sum(table * cross) + np.einsum("ij,ij->", u_prev, u_prev))
    return centers, jm, table, float(np.sqrt(max(sq, 0.0)))


@dataclass
class FeatureFCM:
    """Result of :func:`fcm_torch`: ``centers`` (c, S) sorted by the first feature,
    ``memberships`` (c, N) numpy, ``order`` the sorted-to-skfuzzy permutation, ``jm``,
    ``n_iter``, ``fpc`` and the ``device`` it ran on."""

    centers: np.ndarray
    memberships: np.ndarray
    order: np.ndarray
    jm: np.ndarray
    n_iter: int
    fpc: float
    device: str

    def labels(self) -> np.ndarray:
        """Hard labels (index of the largest membership), shape (N,)."""
        return np.argmax(self.memberships, axis=0)


def fcm_torch(
    features,
    c: int,
    m: float = 2.0,
    error: float = 0.005,
    maxiter: int = 1000,
    *,
    seed: int | None = 0,
    init: np.ndarray | None = None,
    device: str | None = None,
) -> FeatureFCM:
    """Fuzzy c-means of N voxels with S features (``features`` is N x S, or N for one feature).

    Equal to ``skfuzzy.cluster.cmeans(features.T, c, m, error, maxiter, seed=seed)`` (note
    skfuzzy's S x N layout); runs with torch on ``device`` (``select_device``: CUDA, MPS or
    CPU) in float64 (float32 on MPS, which has no float64). The initial partition is drawn
    with numpy exactly as skfuzzy draws it, then moved to the device.
    """
    import torch

    from ..device import select_device

    _check_params(c, m, maxiter)
    x_np = np.asarray(features, dtype=np.float64)
    if x_np.ndim == 1:
        x_np = x_np[:, None]
    if x_np.ndim != 2:
        raise ValueError(f"features must be N x S, got shape {x_np.shape}")
    n = x_np.shape[0]
    if n < c:
        raise ValueError(f"need at least c={c} samples to cluster, got {n}")
    dev = select_device(device)
    dtype = torch.float32 if dev.type == "mps" else torch.float64
    eps = float(torch.finfo(dtype).eps)
    u0 = skfuzzy_init(c, n, seed) if init is None else np.asarray(init, dtype=np.float64)
    if u0.shape != (c, n):
        raise ValueError(f"init must have shape {(c, n)}, got {u0.shape}")

    x = torch.as_tensor(x_np, dtype=dtype, device=dev)
    u = torch.as_tensor(u0, dtype=dtype, device=dev).clamp_min(eps)
    exponent = -2.0 / (m - 1.0)
    jm = []
    p = 0
    with torch.no_grad():
        while p < maxiter:
            u_old = u
            un = (u_old / u_old.sum(dim=0, keepdim=True)).clamp_min(eps)
            um = un ** m
            centers = (um @ x) / um.sum(dim=1, keepdim=True)
            d2 = torch.zeros((c, n), dtype=dtype, device=dev)
            for s in range(x.shape[1]):
                d2 += (x[:, s][None, :] - centers[:, s][:, None]) ** 2
            d = d2.sqrt_().clamp_min_(eps)
            jm.append((um * d ** 2).sum())
            r = (d / d.max(dim=0, keepdim=True).values).clamp_min_(eps)
            r /= r.min(dim=0, keepdim=True).values
            r = r ** exponent
            u = r / r.sum(dim=0, keepdim=True)
            p += 1
            if float(torch.linalg.norm(u - u_old)) < error:
                break
        centers_np = centers.double().cpu().numpy()
        u_np = u.double().cpu().numpy()
        jm_np = np.array([float(j) for j in jm])
    order = np.lexsort(centers_np.T[::-1])  # by the first feature, ties by the next ones
    u_np = u_np[order]
    fpc = float((u_np ** 2).sum() / n)
    return FeatureFCM(centers=centers_np[order], memberships=u_np, order=order, jm=jm_np,
                      n_iter=p, fpc=fpc, device=str(dev))

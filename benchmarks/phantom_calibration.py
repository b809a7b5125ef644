"""Calibrate the phantom's T2 intensity model against the real Chu lumbar scans.

For each of the 12 labeled Chu cases (../shared/data/chu_lumbar_t2, 8-bit sagittal T2,
1 mm isotropic, vertebral-body masks) the script samples each tissue it can locate
reliably and divides by the case's vertebral-body median, so the ratios do not depend
on the scanner's arbitrary intensity scale:

* ``body``: vertebral-body masks eroded by 2 voxels (marrow; the reference, ratio 1),
* ``cortex_rim``: the outer 1-voxel shell of the masks (cortex and endplates, partial-volumed),
* ``disc_nucleus`` / ``disc_annulus``: between consecutive bodies, along the segment joining
  their centroids, within 5 mm of the axis (nucleus) or 11-16 mm anterior/posterior of it,
* ``csf``: the brightest point of the profile running posteriorly from each body's
  posterior wall (0-25 mm) in the mid-sagittal slab, where the thecal sac is,
* ``cord``: at T11/T12, the darkest point between two CSF peaks of that profile (the cord
  with CSF in front of and behind it); cases without that pattern contribute nothing,
* ``paraspinal_muscle``: parasagittal slices 20-28 mm from the midline, 35-60 mm behind
  the bodies at L2-L4 (erector spinae),
* ``subcutaneous_fat``: the 8 mm inside the posterior skin edge at L2-L4,
* ``background``: air behind the back; its standard deviation gives the noise level
  (Rayleigh: sigma = std / 0.655).

It prints the mean ratios across cases (the constants ``CALIBRATED_RATIOS`` of
``spinetumor/phantom.py`` come from this output) and writes
``docs/images/phantom_histograms.png`` (per-tissue histograms, real samples vs phantom
ground-truth labels) and ``docs/images/phantom_vs_real.png`` (mid-sagittal slices).

Run: ``.venv/bin/python benchmarks/phantom_calibration.py [--data DIR] [--phantoms N]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spinetumor.io import read_volume  # noqa: E402
from spinetumor.volume import to_canonical  # noqa: E402

TISSUES = ("body", "cortex_rim", "disc_nucleus", "disc_annulus", "csf", "cord",
           "paraspinal_muscle", "subcutaneous_fat", "background")


def load_case(image_path: Path, mask_path: Path):
    """The image and vertebra mask of one case in the canonical sagittal layout [s, r, c], float."""
    image, _ = to_canonical(read_volume(image_path))
    mask, _ = to_canonical(read_volume(mask_path))
    return image.array.astype(np.float32), mask.array.astype(np.int16)


def _centroids(mask: np.ndarray, s_lo: int, s_hi: int) -> dict[int, np.ndarray]:
    """(r, c) centroid of each level within the slab of slices s_lo..s_hi."""
    out = {}
    slab = mask[s_lo:s_hi]
    for level in range(1, 8):
        idx = np.argwhere(slab == level)
        if len(idx):
            out[level] = idx[:, 1:].mean(axis=0)
    return out


def _sample(image2d: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation of a 2D image at (r, c) points [n, 2]."""
    from scipy.ndimage import map_coordinates

    return map_coordinates(image2d, points.T, order=1, mode="nearest")


def measure_case(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Intensity samples of each tissue (raw values) for one case; see the module docstring."""
    from scipy.ndimage import binary_erosion

    samples: dict[str, list] = {t: [] for t in TISSUES}
    body = mask > 0
    core = binary_erosion(body, iterations=2)
    samples["body"].append(image[core])
    samples["cortex_rim"].append(image[body & ~binary_erosion(body)])
    s_mid = int(round(np.argwhere(body)[:, 0].mean()))
    for s in range(s_mid - 3, s_mid + 4):
        _measure_slice(image[s], mask[s], _centroids(mask, s, s + 1), samples)
    _measure_muscle(image, mask, s_mid, samples)
    _measure_back(image, mask, s_mid, samples)
    return {t: np.concatenate(v) if v else np.zeros(0) for t, v in samples.items()}


def _axis(cents: dict, level: int) -> np.ndarray:
    """Unit (r, c) vector of the local spine axis at a level (central difference of centroids)."""
    lo, hi = max(min(cents), level - 1), min(max(cents), level + 1)
    t = cents[hi] - cents[lo]
    return t / np.linalg.norm(t)


def _measure_slice(img: np.ndarray, msk: np.ndarray, cents: dict, samples: dict) -> None:
    """Disc, CSF and cord samples in one mid-sagittal slice."""
    levels = sorted(cents)
    for a, b in zip(levels[:-1], levels[1:]):
        if b != a + 1:
            continue
        t = cents[b] - cents[a]
        length = np.linalg.norm(t)
        t = t / length
        steps = np.arange(0, length, 0.5)
        line = cents[a] + steps[:, None] * t
        r, c = np.clip(np.round(line).astype(int).T, 0, np.array(msk.shape)[:, None] - 1)
        labels = msk[r, c]
        in_a, in_b = np.nonzero(labels == a)[0], np.nonzero(labels == b)[0]
        if not len(in_a) or not len(in_b) or in_b[0] - in_a[-1] < 4:
            continue
        mid = cents[a] + steps[(in_a[-1] + in_b[0]) // 2] * t
        n = np.array([-t[1], t[0]])  # perpendicular in (r, c)
        for key, offsets in (("disc_nucleus", np.arange(-5, 5.5, 0.5)),
                             ("disc_annulus", np.r_[np.arange(-16, -10.5, 0.5), np.arange(11, 16.5, 0.5)])):
            pts = np.array([mid + da * t + db * n for da in (-1.0, 0.0, 1.0) for db in offsets])
            rr, cc = np.clip(np.round(pts).astype(int).T, 0, np.array(msk.shape)[:, None] - 1)
            keep = msk[rr, cc] == 0
            samples[key].append(_sample(img, pts[keep]))
    for level in levels:
        t = _axis(cents, level)
        n = np.array([-t[1], t[0]])
        if n[1] < 0:
            n = -n                       # point posteriorly (+c)
        steps = np.arange(0, 60, 0.5)
        line = cents[level] + steps[:, None] * n
        r, c = np.clip(np.round(line).astype(int).T, 0, np.array(msk.shape)[:, None] - 1)
        inside = np.nonzero(msk[r, c] == level)[0]
        if not len(inside):
            continue
        start = steps[inside[-1]] + 1.0
        d = np.arange(0, 25.5, 0.5)
        prof = _sample(img, cents[level] + (start + d)[:, None] * n)
        k = int(np.argmax(prof))
        samples["csf"].append(prof[max(0, k - 1):k + 2])
        if level <= 2:
            _cord_from_profile(prof, samples)


def _cord_from_profile(prof: np.ndarray, samples: dict) -> None:
    """The dark cord between anterior and posterior CSF, when the profile shows two peaks."""
    from scipy.ndimage import uniform_filter1d

    p = uniform_filter1d(prof, 3)
    peaks = [i for i in range(1, len(p) - 1) if p[i] >= p[i - 1] and p[i] >= p[i + 1] and p[i] > 0.7 * p.max()]
    if len(peaks) < 2:
        return
    lo, hi = peaks[0], peaks[-1]
    if not 10 <= hi - lo <= 30:          # 5..15 mm apart (0.5 mm steps)
        return
    k = lo + int(np.argmin(p[lo:hi + 1]))
    if p[k] < 0.8 * min(p[lo], p[hi]):
        samples["cord"].append(prof[k - 1:k + 2])


def _measure_muscle(image: np.ndarray, mask: np.ndarray, s_mid: int, samples: dict) -> None:
    """Erector spinae: parasagittal slices 20-28 mm from the midline, 35-60 mm behind L2-L4."""
    for level in (4, 5, 6):
        idx = np.argwhere(mask == level)
        if not len(idx):
            continue
        r0 = int(round(idx[:, 1].mean()))
        c_post = int(idx[:, 2].max())
        for s in list(range(s_mid - 28, s_mid - 19)) + list(range(s_mid + 20, s_mid + 29)):
            if 0 <= s < image.shape[0]:
                block = image[s, r0 - 8:r0 + 9, c_post + 35:c_post + 61]
                samples["paraspinal_muscle"].append(block.ravel())


def _measure_back(image: np.ndarray, mask: np.ndarray, s_mid: int, samples: dict) -> None:
    """Subcutaneous fat (8 mm inside the skin edge) and air behind the back at L2-L4."""
    air_level = np.median(image[:, :, -10:])
    for level in (4, 5, 6):
        idx = np.argwhere(mask == level)
        if not len(idx):
            continue
        r0 = int(round(idx[:, 1].mean()))
        for s in range(s_mid - 5, s_mid + 6):
            for r in range(r0 - 8, r0 + 9):
                row = image[s, r]
                above = np.nonzero(row > 2.5 * max(air_level, 1.0))[0]
                if not len(above):
                    continue
                edge = int(above[-1])
                samples["subcutaneous_fat"].append(row[edge - 10:edge - 2])
                samples["background"].append(row[edge + 10:])


def summarize(all_samples: list[dict]) -> dict[str, dict]:
    """Per-tissue median ratio to the body median (mean and sd across cases) and noise."""
    ratios: dict[str, list] = {t: [] for t in TISSUES}
    noise = []
    for samples in all_samples:
        ref = float(np.median(samples["body"]))
        for t in TISSUES:
            if samples[t].size >= 5:
                ratios[t].append(float(np.median(samples[t])) / ref)
        if samples["background"].size:
            noise.append(float(np.std(samples["background"])) / 0.655 / ref)
    out = {t: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "n": len(v)} for t, v in ratios.items() if v}
    out["noise_sigma"] = {"mean": float(np.mean(noise)), "sd": float(np.std(noise)), "n": len(noise)}
    return out


def phantom_samples(n: int) -> list[dict]:
    """The same per-tissue samples as :func:`measure_case`, taken on ``n`` tumor-free phantoms.

    Each phantom is reoriented to the canonical layout and resampled to 1 mm isotropic
    (linear for the image, nearest for its vertebrae map), as the Chu scans were, so the
    identical sampling code runs on real and synthetic data.
    """
    from spinetumor.phantom import generate
    from spinetumor.volume import resample

    out = []
    for seed in range(n):
        case = generate(seed, "none")
        image, _ = to_canonical(case.image)
        vert, _ = to_canonical(case.vertebrae)
        image = resample(image, (1.0, 1.0, 1.0))
        vert = resample(vert, (1.0, 1.0, 1.0), label=True)
        out.append(measure_case(image.array.astype(np.float32), vert.array.astype(np.int16)))
    return out


def plot_histograms(real: list[dict], phantom: list[dict], path: Path) -> None:
    """Per-tissue histograms of intensity / body median, real (pooled cases) vs phantom."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    bins = np.linspace(0, 4, 81)
    for ax, tissue in zip(axes.ravel(), TISSUES):
        r = np.concatenate([s[tissue] / np.median(s["body"]) for s in real if s[tissue].size])
        p = np.concatenate([s[tissue] / np.median(s["body"]) for s in phantom if s[tissue].size])
        ax.hist(r, bins=bins, density=True, alpha=0.55, label=f"real ({len(real)} scans)")
        if p.size:
            ax.hist(p, bins=bins, density=True, alpha=0.55, label=f"phantom ({len(phantom)} seeds)")
        ax.set_title(tissue.replace("_", " "))
        ax.set_xlabel("intensity / vertebral-body median")
        ax.legend(fontsize=8)
    fig.suptitle("Tissue intensities sampled the same way on the Chu T2 scans and on tumor-free phantoms")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_side_by_side(real_images: list, seeds: list[int], path: Path) -> None:
    """Mid-sagittal slices of real scans (top) and phantoms (bottom), each scaled to its body median."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinetumor import labels
    from spinetumor.phantom import generate

    n = len(real_images)
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 9.5))
    for ax, (name, image, mask) in zip(axes[0], real_images):
        s = int(round(np.argwhere(mask > 0)[:, 0].mean()))
        ref = np.median(image[mask > 0])
        ax.imshow(image[s] / ref, cmap="gray", vmin=0, vmax=4)
        ax.set_title(f"real {name}")
        ax.axis("off")
    for ax, (seed, tumor) in zip(axes[1], seeds):
        case = generate(seed, tumor)
        img, _ = to_canonical(case.image)
        anat, _ = to_canonical(case.anatomy)
        body = np.isin(anat.array, [v.value for v in labels.VERTEBRAE])
        s = int(round(np.argwhere(body)[:, 0].mean()))
        ref = np.median(img.array[body])
        sr, sc = img.spacing[1], img.spacing[0]
        h, w = img.array.shape[1:]
        ax.imshow(img.array[s] / ref, cmap="gray", vmin=0, vmax=4, extent=(0, w * sc, h * sr, 0))
        types = ", ".join(t["type"] for t in case.truth["tumors"]) or "no tumor"
        ax.set_title(f"phantom seed {seed}\n{types}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chu_lumbar_t2")
    parser.add_argument("--phantoms", type=int, default=6, help="phantoms for the histograms")
    parser.add_argument("--images", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--no-plots", action="store_true", help="only measure and print the ratios")
    args = parser.parse_args(argv)

    t0 = time.time()
    cases = sorted(args.data.glob("chu_*_t2.nii.gz"))
    if not cases:
        print(f"no chu_*_t2.nii.gz under {args.data}", file=sys.stderr)
        return 2
    all_samples, shown = [], []
    for image_path in cases:
        mask_path = image_path.with_name(image_path.name.replace("_t2.", "_vertebrae."))
        image, mask = load_case(image_path, mask_path)
        all_samples.append(measure_case(image, mask))
        if len(shown) < 3:
            shown.append((image_path.name.split("_t2")[0], image, mask))
    summary = summarize(all_samples)
    print(f"# {len(cases)} Chu cases, {platform.node()} ({platform.processor() or platform.machine()}), "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'tissue':20s} {'ratio':>7s} {'sd':>6s} {'cases':>5s}")
    for t, v in summary.items():
        print(f"{t:20s} {v['mean']:7.3f} {v['sd']:6.3f} {v['n']:5d}")
    print("CALIBRATED_RATIOS = {" + ", ".join(f'"{t}": {v["mean"]:.3f}' for t, v in summary.items()) + "}")
    if not args.no_plots:
        phantom = phantom_samples(args.phantoms)
        plot_histograms(all_samples, phantom, args.images / "phantom_histograms.png")
        ph = summarize(phantom)
        print(f"{'tissue':20s} {'real':>7s} {'phantom':>8s}   (same sampling, mean over cases)")
        for t in TISSUES[1:]:
            if t in ph:
                print(f"{t:20s} {summary[t]['mean']:7.3f} {ph[t]['mean']:8.3f}")
        plot_side_by_side(shown, [(0, "none"), (1, "intramedullary"), (2, "extradural")],
                          args.images / "phantom_vs_real.png")
        print(f"wrote {args.images / 'phantom_histograms.png'} and {args.images / 'phantom_vs_real.png'}")
    print(f"took {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

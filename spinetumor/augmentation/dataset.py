"""Writing an augmented dataset: every source tumor glided along every target, resumable.

Layout of the output folder::

    samples/<id>_image.nii.gz       the augmented image (float32)
    samples/<id>_tumor.nii.gz       its exact tumor mask (uint8, 1 = tumor)
    samples/<id>_vertebrae.nii.gz   the target's vertebra labels (1..7 = T11..L5), same grid
    manifest.csv                    one row per sample (see MANIFEST_COLUMNS)
    dataset.json                    parameters and counts (written, dropped and why, skipped)

In 2D mode a sample is one sagittal slice (a one-slice volume at the slice's physical
position, canonical orientation); in 3D mode the whole target in its own geometry. Sample
ids are built from target, source, position along the path, slice and rotation, and every
random draw comes from a generator seeded by ``(seed, target index, source index, position,
slice)``, so a run is deterministic and an interrupted run resumes where it stopped: a
sample whose three files and manifest row exist is not written again.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import InputError, read_volume, write_json, write_text, write_volume
from ..progress import check_cancel, report
from ..volume import Volume, from_canonical
from .extract import TumorPatch, extract_tumor
from .glide import Sample, Target, glide, prepare_target
from .inpaint import DEFAULT_FILL
from .rotate import draw_angles, rotate_slice, rotate_volume

MANIFEST_COLUMNS = ("id", "mode", "tumor_type", "level", "position_mm", "slice", "rotation_deg", "scale",
                    "boundary_ratio", "clipped", "source", "target", "seed", "image", "tumor", "vertebrae")


@dataclass
class TargetSpec:
    """A target scan: files (``image``, ``vertebrae``, optional phantom ``anatomy``) or volumes in memory."""

    name: str
    image: Path | Volume
    vertebrae: Path | Volume
    anatomy: Path | Volume | None = None

    def load(self) -> Target:
        """Read the files (when paths) and prepare the target (canal from canal.py without anatomy)."""
        def get(item, **kw):
            return item if isinstance(item, Volume) or item is None else read_volume(item, **kw)

        image = get(self.image)
        vertebrae = get(self.vertebrae, validate=False)
        anatomy = get(self.anatomy, validate=False)
        return prepare_target(image, vertebrae, anatomy, self.name)


def _partner(image: Path) -> tuple[str, Path, Path | None]:
    """(name, vertebrae path, anatomy path or None) for a target image file."""
    name = image.name
    if name in ("image.nii.gz", "image.nii"):
        anatomy = image.parent / "anatomy.nii.gz"
        return image.parent.name, image.parent / "vertebrae.nii.gz", anatomy if anatomy.exists() else None
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem = image.stem
    base = stem[:-3] if stem.endswith("_t2") else stem
    return base, image.parent / f"{base}_vertebrae.nii.gz", None


def find_targets(paths) -> list[TargetSpec]:
    """Target specs from files and folders.

    A file is a target image; its labels are ``NAME_vertebrae.nii.gz`` beside ``NAME_t2.nii.gz``
    or ``NAME.nii.gz`` (the Chu naming), or ``vertebrae.nii.gz`` (plus ``anatomy.nii.gz`` when
    present) beside ``image.nii.gz`` (a ``spinetumor phantom`` folder). A folder contributes its
    ``image.nii.gz``, else every ``*_t2.nii.gz`` in it and every subfolder holding an ``image.nii.gz``.
    """
    images: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            images.append(path)
        elif path.is_dir():
            if (path / "image.nii.gz").exists():
                images.append(path / "image.nii.gz")
                continue
            found = sorted(path.glob("*_t2.nii.gz")) + sorted(path.glob("*/image.nii.gz"))
            if not found:
                raise InputError(f"{path}: no target images (*_t2.nii.gz or */image.nii.gz) in this folder")
            images.extend(found)
        else:
            raise InputError(f"{path}: no such file or folder")
    specs = []
    for image in images:
        name, vertebrae, anatomy = _partner(image)
        if not vertebrae.exists():
            raise InputError(f"{image}: no vertebra labels beside it (expected {vertebrae.name})")
        specs.append(TargetSpec(name, image, vertebrae, anatomy))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("two targets have the same name: " + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    return specs


def source_from_files(image, tumor, tumor_type: str, canal=None, cord=None, fill: str = DEFAULT_FILL) -> TumorPatch:
    """The tumor patch of a real source scan (``tumor`` > 0); canal/cord masks segmented when not given."""
    image_v = read_volume(image)
    tumor_v = read_volume(tumor, validate=False)
    if not tumor_v.same_geometry(image_v):
        raise InputError(f"{tumor}: the tumor mask is not on the image's grid")
    if not (tumor_v.array > 0).any():
        raise InputError(f"{tumor}: the tumor mask is empty")
    maps = None
    if canal is not None:
        canal_v = read_volume(canal, validate=False)
        cord_v = read_volume(cord, validate=False) if cord is not None else canal_v.with_array(np.zeros_like(canal_v.array))
        maps = (canal_v, cord_v)
    name = Path(image).name.split(".")[0]
    return extract_tumor(image_v, tumor_v.with_array((tumor_v.array > 0).astype(np.uint8)), tumor_type, maps,
                         fill=fill, source=name).patch


def source_from_phantom(seed: int, tumor_type: str, fill: str = DEFAULT_FILL) -> TumorPatch:
    """The first tumor of the phantom drawn with ``seed`` and ``tumor_type`` (its anatomy gives sac and cord)."""
    from ..phantom import generate

    case = generate(int(seed), tumor=tumor_type)
    mask = case.tumor.with_array((case.tumor.array == 1).astype(np.uint8))
    if not mask.array.any():
        raise InputError(f"phantom seed {seed} has no {tumor_type} tumor in its field of view")
    return extract_tumor(case.image, mask, tumor_type, case.anatomy, fill=fill,
                         source=f"phantom{seed}-{tumor_type}").patch


# --------------------------------------------------------------------------- writing

def _read_manifest(path: Path) -> dict[str, dict]:
    """Rows of an existing manifest by id (incomplete trailing rows of an interrupted run are ignored)."""
    if not path.exists():
        return {}
    rows = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("id") and all(row.get(c) not in (None, "") for c in ("image", "tumor", "vertebrae")):
                rows[row["id"]] = row
    return rows


def _slice_volume(target: Target, array: np.ndarray, k: int) -> Volume:
    """A one-slice volume holding ``array`` at canonical slice ``k``'s physical position."""
    canon = target.canonical
    origin = canon.index_to_lps(np.array([k, 0.0, 0.0]))
    return Volume(np.ascontiguousarray(array[None]), canon.spacing, tuple(origin), canon.direction)


def _sample_id(target: str, source: str, sample: Sample, angle: float) -> str:
    """Stable sample id: target, source, position (0.1 mm), slice (2D), rotation (0.1 degree)."""
    parts = [target, source, f"a{int(round(sample.placement.arc_mm * 10)):05d}"]
    if sample.slice_index is not None:
        parts.append(f"s{sample.slice_index:03d}")
    parts.append(f"r{int(round(angle * 10)):+04d}")
    return "__".join(parts)


def _volumes(target: Target, sample: Sample, angle: float) -> tuple[Volume, Volume, Volume]:
    """Image, mask and vertebrae of a sample as volumes, rotated by ``angle`` degrees."""
    if sample.slice_index is not None:
        image, mask, vert = sample.image, sample.mask, sample.vertebrae
        if angle:
            sp = target.spacing[1:]
            image = rotate_slice(image, angle, sp)
            mask = rotate_slice(mask, angle, sp, label=True)
            vert = rotate_slice(vert, angle, sp, label=True)
        k = sample.slice_index
        return (_slice_volume(target, image.astype(np.float32), k), _slice_volume(target, mask.astype(np.uint8), k),
                _slice_volume(target, vert.astype(np.uint8), k))
    ref = target.reference
    vols = (from_canonical(sample.image.astype(np.float32), ref), from_canonical(sample.mask.astype(np.uint8), ref),
            from_canonical(sample.vertebrae.astype(np.uint8), ref))
    if angle:
        vols = (rotate_volume(vols[0], angle), rotate_volume(vols[1], angle, label=True),
                rotate_volume(vols[2], angle, label=True))
    return vols


def augment_dataset(patches: list[TumorPatch], targets: list[TargetSpec], out, *, per_slice: int = 20,
                    mode: str = "2d", rotations: int = 0, seed: int = 0, progress=None, cancel=None) -> dict:
    """Glide every patch along every target and write the dataset folder ``out``; return the counts.

    ``rotations``: rotated copies per sample (angles 1-10 degrees, alternating left and right),
    written besides the unrotated sample. Samples failing the compartment check are dropped.
    """
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.csv"
    done = _read_manifest(manifest_path)
    rows = dict(done)
    counts = {"written": 0, "skipped_existing": 0, "dropped_compartment": 0, "dropped_clipped": 0,
              "boundary_within_20pct": 0, "boundary_measured": 0}
    total = max(1, len(patches) * len(targets))
    new_rows = open(manifest_path, "a", newline="", encoding="utf-8")
    try:
        writer = csv.DictWriter(new_rows, MANIFEST_COLUMNS)
        if not done and manifest_path.stat().st_size == 0:
            writer.writeheader()
        for ti, spec in enumerate(targets):
            check_cancel(cancel)
            report(progress, ti * len(patches) / total, f"preparing target {spec.name}")
            target = spec.load()
            for pi, patch in enumerate(patches):
                pair_seed = int(np.random.SeedSequence([seed, ti, pi]).generate_state(1)[0])
                for sample in glide(target, patch, per_slice, mode, pair_seed):
                    check_cancel(cancel)
                    if not sample.ok:
                        counts["dropped_" + sample.reason] += 1
                        continue
                    if np.isfinite(sample.boundary_ratio):
                        counts["boundary_measured"] += 1
                        counts["boundary_within_20pct"] += int(abs(sample.boundary_ratio - 1) <= 0.2)
                    key = [seed, ti, pi, sample.placement.index, 0 if sample.slice_index is None else sample.slice_index + 1]
                    angles = [0.0] + draw_angles(np.random.default_rng(key), rotations)
                    for angle in angles:
                        sid = _sample_id(target.name, patch.source, sample, angle)
                        files = {k: out / "samples" / f"{sid}_{k}.nii.gz" for k in ("image", "tumor", "vertebrae")}
                        if sid in done and all(f.exists() for f in files.values()):
                            counts["skipped_existing"] += 1
                            continue
                        for vol, key_name in zip(_volumes(target, sample, angle), ("image", "tumor", "vertebrae")):
                            write_volume(vol, files[key_name])
                        row = _row(sid, mode, patch, target, sample, angle, seed, files, out)
                        writer.writerow(row)
                        new_rows.flush()
                        rows[sid] = row
                        counts["written"] += 1
                report(progress, (ti * len(patches) + pi + 1) / total, f"{target.name}: {patch.source}")
    finally:
        new_rows.close()
    _write_sorted_manifest(manifest_path, rows)
    summary = {"mode": mode, "per_slice": per_slice, "rotations": rotations, "seed": seed,
               "sources": [p.source for p in patches], "targets": [t.name for t in targets],
               "samples": len(rows), **counts}
    write_json(summary, out / "dataset.json")
    return summary


def _row(sid, mode, patch, target, sample, angle, seed, files, out) -> dict:
    """One manifest row."""
    p = sample.placement
    return {"id": sid, "mode": mode, "tumor_type": patch.tumor_type, "level": p.level,
            "position_mm": f"{p.arc_mm:.1f}", "slice": "" if sample.slice_index is None else sample.slice_index,
            "rotation_deg": f"{angle:.1f}", "scale": f"{sample.scale:.3f}",
            "boundary_ratio": f"{sample.boundary_ratio:.3f}", "clipped": f"{sample.clipped:.3f}",
            "source": patch.source, "target": target.name, "seed": seed,
            **{k: str(f.relative_to(out)) for k, f in files.items()}}


@dataclass(frozen=True)
class TrainingCase:
    """One 3D sample of an augmented dataset, read for training: volumes on the sample's grid."""

    id: str
    tumor_type: str
    image: Volume
    tumor: Volume        # uint8, 1 = tumor
    vertebrae: Volume    # 1..7 = T11..L5
    canal: Volume        # thecal sac found by canal.py (vertebrae given)
    cord: Volume


def training_rows(folders) -> list[tuple[Path, dict]]:
    """(folder, manifest row) of every 3D sample of the dataset ``folders``, sorted by id per folder.

    Raises :class:`InputError` for a folder without a manifest or without 3D samples.
    """
    rows = []
    for folder in folders:
        folder = Path(folder)
        manifest = folder / "manifest.csv"
        if not manifest.exists():
            raise InputError(f"{folder}: not an augmented dataset (no manifest.csv); write one with spinetumor augment")
        found = [(folder, r) for r in _read_manifest(manifest).values() if r.get("mode") == "3d"]
        if not found:
            raise InputError(f"{folder}: no 3D samples; write the dataset with spinetumor augment --mode 3d")
        rows.extend(sorted(found, key=lambda item: item[1]["id"]))
    return rows


def read_training_case(folder: Path, row: dict) -> TrainingCase:
    """One 3D sample: image, exact tumor mask and vertebra labels from the files, sac and cord from canal.py."""
    from ..segmentation.canal import segment_canal_and_cord

    image = read_volume(folder / row["image"])
    tumor = read_volume(folder / row["tumor"], validate=False)
    vertebrae = read_volume(folder / row["vertebrae"], validate=False)
    found = segment_canal_and_cord(image, vertebrae)
    return TrainingCase(row["id"], row["tumor_type"], image, tumor.with_array((tumor.array > 0).astype(np.uint8)),
                        vertebrae, found.canal, found.cord)


def read_training_cases(folders, progress=None):
    """Yield a :class:`TrainingCase` for every 3D sample of the dataset ``folders`` (``augment --mode 3d``).

    This is how augmented real anatomy reaches the trainers (``spinetumor train segmentation
    --extra``, ``train classification --extra`` and ``train tumor-net --extra``): the image, its
    exact tumor mask and the target's vertebra labels from the files, the sac and cord from
    canal.py as at inference. 2D samples (one sagittal slice) are skipped: the trainers work on
    volumes. Raises :class:`InputError` for a folder without a manifest or without 3D samples.
    """
    rows = training_rows(folders)
    for n, (folder, row) in enumerate(rows):
        report(progress, n / len(rows), f"augmented sample {n + 1}/{len(rows)}")
        yield read_training_case(folder, row)


def _write_sorted_manifest(path: Path, rows: dict) -> None:
    """Rewrite the manifest with its rows sorted by id (same bytes however the run was interrupted)."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for sid in sorted(rows):
        writer.writerow({c: rows[sid].get(c, "") for c in MANIFEST_COLUMNS})
    write_text(buffer.getvalue(), path)

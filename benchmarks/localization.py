"""Localization benchmark: are a tumor's vertebral levels, epicentre and disc spaces right?

Separates the level fusion (:func:`spinetumor.localization.localize_tumors`) from the
segmentation: every tumor is given by its true mask, and only the vertebra labels change.

* **Phantoms** (seeds 950000+, never used in training; ``--per-type`` of each tumor type):
  the truth is ``truth.json`` (levels measured on the phantom's own anatomy). Located with
  the phantom's true vertebra labels (the fusion alone) and with the shipped labeling model's
  labels (what ``spinetumor run`` does).
* **Real anatomy** (when ``../shared/data/chu_lumbar_t2`` is present): phantom tumors inserted
  along the CSF of the three Chu validation scans chu_17-19 (3D augmentation, source seeds
  70000+; no scan or tumor of any training set). The truth is the location with the scans'
  reference vertebra labels; the test, the location with the labeling model's labels.

Writes the "## Localization" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/localization.py [--per-type 15] [--real-per-type 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHU = REPO.parent / "shared" / "data" / "chu_lumbar_t2"
PHANTOM_SEED = 950_000
REAL_SOURCE_SEED = 70_000
REAL_CASES = ("chu_17", "chu_18", "chu_19")


def located(tumor, vertebrae) -> dict:
    """Levels, epicentre and disc spaces of the single tumor in ``tumor`` (binary mask) with ``vertebrae``."""
    from spinetumor.localization import localize_tumors

    found = localize_tumors(tumor, vertebrae, instances=False)
    if not found:
        return {"levels": [], "epicenter_level": None, "discs": []}
    big = max(found, key=lambda t: t.voxels)
    return {"levels": list(big.levels), "epicenter_level": big.epicenter_level, "discs": list(big.discs)}


def agreement(rows: list[dict], key: str) -> dict:
    """Share of rows whose ``key`` location equals the truth's, for levels, epicentre and discs.

    Disc spaces of phantoms have no truth of their own: the location with the phantom's true
    labels is their reference (``truth_discs``), and the true-label row itself shows none."""
    n = len(rows)
    out = {field: sum(r["truth"][field] == r[key][field] for r in rows) / n if n else float("nan")
           for field in ("levels", "epicenter_level")}
    if key == "true_labels" and rows and rows[0]["truth"]["discs"] is None:
        out["discs"] = None
    else:
        out["discs"] = sum((r["truth"]["discs"] if r["truth"]["discs"] is not None else r["truth_discs"])
                           == r[key]["discs"] for r in rows) / n if n else float("nan")
    return out


def phantom_part(per_type: int, log=print) -> list[dict]:
    """Phantom tumors located with the true and with the predicted vertebra labels."""
    from spinetumor import labels
    from spinetumor.labeling.infer import label_vertebrae
    from spinetumor.phantom import generate

    rows, seed = [], PHANTOM_SEED
    for kind in labels.TUMOR_TYPE_NAMES:
        for _ in range(per_type):
            case = generate(seed, tumor=kind)
            tumor = case.tumor.with_array((case.tumor.array == 1).astype("uint8"))
            truth = case.truth["tumors"][0]
            predicted = label_vertebrae(case.image).labels
            rows.append({"case": f"phantom {seed}", "type": kind,
                         "truth": {"levels": truth["levels"], "epicenter_level": truth["epicenter_level"],
                                   "discs": None},   # truth.json has no disc spaces
                         "true_labels": located(tumor, case.vertebrae), "predicted_labels": located(tumor, predicted)})
            # disc spaces: the phantom's true vertebra labels are the reference for the model's
            rows[-1]["truth_discs"] = rows[-1]["true_labels"]["discs"]
            seed += 1
        log(f"phantoms: {kind} done")
    return rows


def real_part(per_type: int, out: Path, log=print) -> list[dict]:
    """Tumors inserted into the Chu validation scans, located with reference and predicted labels."""
    from benchmarks.real_anatomy import sources
    from spinetumor.augmentation.dataset import augment_dataset, find_targets, read_training_cases
    from spinetumor.labeling.infer import label_vertebrae

    targets = find_targets([CHU / f"{c}_t2.nii.gz" for c in REAL_CASES])
    augment_dataset(sources(REAL_SOURCE_SEED, per_type, log), targets, out, per_slice=1, mode="3d", seed=7)
    rows = []
    for case in read_training_cases([out]):
        predicted = label_vertebrae(case.image).labels
        truth = located(case.tumor, case.vertebrae)
        rows.append({"case": case.id, "type": case.tumor_type, "truth": truth, "true_labels": truth,
                     "predicted_labels": located(case.tumor, predicted)})
    log(f"real anatomy: {len(rows)} samples")
    return rows


def table(groups: dict) -> str:
    lines = ["| tumors | vertebra labels | n | levels exactly right | epicentre right | disc spaces exactly right |",
             "|---|---|---|---|---|---|"]
    for name, (rows, key, what) in groups.items():
        a = agreement(rows, key)
        discs = "-" if a["discs"] is None else f"{a['discs']:.3f}"
        lines.append(f"| {name.strip()} | {what} | {len(rows)} | {a['levels']:.3f} | {a['epicenter_level']:.3f} | "
                     f"{discs} |")
    return "\n".join(lines)


def misses(rows: list[dict], key: str) -> str:
    wrong = [r for r in rows if r["truth"]["levels"] != r[key]["levels"]]
    return "; ".join(f"{r['case']} ({r['type']}): true {' '.join(r['truth']['levels'])}, "
                     f"found {' '.join(r[key]['levels']) or 'none'}" for r in wrong) or "none"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=15, help="phantoms per tumor type")
    parser.add_argument("--real-per-type", type=int, default=2, help="source tumors per type for the Chu scans")
    parser.add_argument("--out", default=str(REPO / "runs" / "localization"), help="folder of the augmented samples")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    phantoms = phantom_part(args.per_type)
    groups = {"phantoms": (phantoms, "true_labels", "the phantom's own"),
              "phantoms ": (phantoms, "predicted_labels", "labeling model")}
    real = real_part(args.real_per_type, Path(args.out) / "real") if CHU.is_dir() else []
    if real:
        groups["real anatomy (Chu 17-19, inserted)"] = (real, "predicted_labels", "labeling model")
    body = (f"Machine: {machine()}. Script: `benchmarks/localization.py --per-type {args.per_type} "
            f"--real-per-type {args.real_per_type}` ({(time.perf_counter() - t0) / 60:.1f} min).\n\n"
            "Every tumor is given by its true mask, so this measures the level fusion and the vertebra labels, "
            "not the tumor segmentation (that is in \"End-to-end pipeline\"). Phantoms: seeds "
            f"{PHANTOM_SEED}.., {args.per_type} per tumor type; truth from the phantom's anatomy (`truth.json`). "
            "Real anatomy: phantom tumors inserted (3D augmentation) into chu_17, chu_18 and chu_19, which no model "
            "was trained on; truth = the location with the scans' reference vertebra labels. A tumor's levels are "
            "the bodies whose level slabs (a body and the disc below it, bounded by the planes through the bodies' "
            "superior end plates) it reaches at least 1 mm into, plus its epicentre's (`MIN_LEVEL_DEPTH_MM`, since "
            "commit 0b5ec6c; before, any voxel counted); disc spaces, the parts of the slabs below the bodies that it "
            "touches. Phantom disc spaces are scored against the location with the phantom's own labels.\n\n" + table(groups) + "\n\n"
            f"Levels wrong with the labeling model, phantoms: {misses(phantoms, 'predicted_labels')}.\n\n"
            + (f"Levels wrong with the labeling model, real anatomy: {misses(real, 'predicted_labels')}.\n"
               if real else "Real anatomy: not measured (../shared/data absent).\n"))
    print(body)
    if not args.no_write:
        write_section("Localization", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Another scanner: phantom tumors inserted into the bundled SCT thoracolumbar scan.

    python benchmarks/other_scanner.py [--out runs/other_scanner] [--no-write]
        [--other-network WEIGHTS ...] [--other-labeling WEIGHTS_OR_RUN ...]

Every model of the project was trained and chosen on the Chu scans (one 1.5 T scanner,
smoothed 8-bit images) and on phantoms. The Spinal Cord Toolbox sample in
``Resources/SampleData/sct_t2_lumbar`` comes from another scanner (black background, textured
bone marrow, sharper edges) and no model has seen it, so tumors inserted into it measure how
the tumor segmentation and the type CNN carry over to another site's anatomy and look.

1. Vertebra labels for placing the tumors: the shipped labeling model's (the scan has no
   reference labels); the tumors go along the CSF between the levels it finds.
2. Tumors: the test sources of ``benchmarks/real_anatomy.py`` (phantom seeds from
   ``TEST_SOURCE_SEED``, 5 per type), each inserted at ``POSITIONS`` random places along the CSF
   (3D mode; samples that leave their compartment or the field of view are dropped).
3. Scores: the shipped forest at its own threshold and minimum volume, and its tumor network
   alone (probability >= 0.5), per type (Dice, IoU, precision, recall, tumors touched), and on
   the scan itself without a tumor (nothing should be found); the shipped CNN's type from the
   exact inserted mask with the sac and cord from canal.py. ``--other-network``: more tumor
   networks scored alone on the same samples.
4. Vertebra labeling on another scanner's scans (the shipped model and each ``--other-labeling``):
   the volume of each level found on the SCT scan (no reference labels; adult lumbar bodies
   hold 15-45 ml) and, on the TPTBox sample of ``Testing/Data`` (Apache-2.0; three cervical
   vertebrae, so the level names cannot be right), the Dice of all labeled voxels against its
   vertebral-body voxels (subregion 49): whether bodies are found at all on another site's image.
   Beside them, the sets of ``benchmarks/labeling.py`` (held-out Chu cases as they are and
   cropped, fresh phantoms), so that what a candidate gains there is weighed against what it loses.

The result goes into the "Another scanner: inserted tumors" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import machine, outline_phrase, write_section  # noqa: E402
from benchmarks.real_anatomy import (TEST_SOURCE_SEED, TEST_SOURCES_PER_TYPE, classify_all, confusion,  # noqa: E402
                                     forest_rows, score_forest, score_network, sources)

SAMPLE = REPO / "Resources" / "SampleData" / "sct_t2_lumbar" / "t2_lumbar.nii.gz"
TPTBOX = REPO / "Testing" / "Data" / "tptbox_sample_mri"
TPTBOX_BODY = 49            # vertebral body in the TPTBox subregion labels
POSITIONS = 2
SEED = 3
TITLE = "Another scanner: inserted tumors"


def labeled_target(folder: Path) -> tuple[Path, list[str], bool]:
    """The SCT scan and the shipped labeling model's vertebrae beside it, as an augmentation target
    (``folder/sct_t2.nii.gz``, ``folder/sct_vertebrae.nii.gz``); also the levels found, and whether
    the labels differ from those a previous run left there (its tumors were placed by them)."""
    from spinetumor.io import read_volume, write_volume
    from spinetumor.labeling.infer import label_vertebrae

    folder.mkdir(parents=True, exist_ok=True)
    image = read_volume(SAMPLE)
    result = label_vertebrae(image, device="cpu")
    labels_path = folder / "sct_vertebrae.nii.gz"
    changed = not labels_path.exists() or not np.array_equal(read_volume(labels_path).array, result.labels.array)
    write_volume(image, folder / "sct_t2.nii.gz")
    write_volume(result.labels, labels_path)
    return folder / "sct_t2.nii.gz", [lv.name for lv in result.levels.values() if lv.present], changed


def tumor_free_case(target: Path):
    """The scan itself, without a tumor, as a prepared case (sac and cord from canal.py)."""
    from spinetumor.io import read_volume
    from spinetumor.segmentation.canal import segment_canal_and_cord
    from spinetumor.segmentation.train import prepared_from_volumes

    image = read_volume(target)
    vertebrae = read_volume(target.with_name("sct_vertebrae.nii.gz"))
    found = segment_canal_and_cord(image, vertebrae)
    empty = image.with_array(np.zeros(image.shape, np.uint8))
    return prepared_from_volumes(image, empty, found.canal, found.cord, vertebrae, "none", name="sct")


def reference_sets(chu_dir: Path, phantoms: int = 6) -> dict:
    """The sets ``benchmarks/labeling.py`` scores a labeling model on: the held-out Chu cases as
    they are, cropped at the T12-L1 disc and cut at the L3-L4 disc, and fresh phantoms (seeds 7000..);
    without the Chu folder, the phantoms only."""
    from benchmarks.labeling import crop_at_disc
    from spinetumor.labeling.dataset import CHU_VALIDATION, load_chu_case, phantom_case

    sets = {"phantoms": [(f"phantom {seed}", *phantom_case(seed)) for seed in range(7000, 7000 + phantoms)]}
    if chu_dir.is_dir():
        chu = [(name, *load_chu_case(chu_dir, name)) for name in CHU_VALIDATION]
        sets = {"Chu": chu, "Chu below T12": [(n, *crop_at_disc(i, t, 2, "below")) for n, i, t in chu],
                "Chu above L4": [(n, *crop_at_disc(i, t, 5, "above")) for n, i, t in chu], **sets}
    return sets


def labeling_row(pair, sets: dict) -> dict:
    """Per-level volumes found on the SCT scan, the class-agnostic body Dice on the TPTBox sample,
    and (mean Dice, cases with all levels right) on each of ``sets`` (:func:`reference_sets`)."""
    from spinetumor.io import read_volume
    from spinetumor.labeling.infer import label_vertebrae
    from spinetumor.labeling.ship import evaluate_cases
    from spinetumor.metrics import overlap

    sct = label_vertebrae(read_volume(SAMPLE), device="cpu", model=pair)
    tpt = label_vertebrae(read_volume(TPTBOX / "sub-mri_label-6_T2w.nii.gz"), device="cpu", model=pair)
    body = read_volume(TPTBOX / "sub-mri_seg-subreg_label-6_msk.nii.gz").array == TPTBOX_BODY
    scored = {name: evaluate_cases(pair, cases) for name, cases in sets.items()}
    return {"sct_ml": {lv.name: round(lv.volume_ml, 1) for lv in sct.levels.values() if lv.present},
            "tptbox_body_dice": float(overlap(tpt.labels.array > 0, body)["dice"]),
            "reference": {name: [float(m["mean_dice"]), m["all_levels_right"]] for name, m in scored.items()}}


def run(out: Path, log=print, other_networks=(), other_labeling=(), chu_dir: Path | None = None) -> dict:
    """Build (or resume) the dataset and score the shipped models on it."""
    from spinetumor.augmentation.dataset import augment_dataset, find_targets, read_training_cases
    from spinetumor.classification.model import load_model as load_cnn
    from benchmarks.labeling import labeling_model
    from spinetumor.labeling.model import load_model as load_labeling_model
    from spinetumor.segmentation.train import augmented_cases
    from spinetumor.segmentation.tumor import load_tumor_model
    from spinetumor.segmentation.tumor_net import load_tumor_net

    target, levels, relabeled = labeled_target(out / "target")
    if relabeled and (out / "test").exists():
        log("the SCT scan's vertebra labels changed: its tumors are placed anew")
        shutil.rmtree(out / "test")
    patches = sources(TEST_SOURCE_SEED, TEST_SOURCES_PER_TYPE, log)
    summary = augment_dataset(patches, find_targets([target]), out / "test", per_slice=POSITIONS, mode="3d", seed=SEED)
    log(f"{summary['samples']} samples ({summary['written']} new)")
    training_cases = list(read_training_cases([out / "test"]))
    cases = augmented_cases(None, cases=training_cases)
    free = [tumor_free_case(target)]
    forest = load_tumor_model()
    cnn = load_cnn()
    result = {"levels_for_placement": levels, "dataset": json.loads((out / "test" / "dataset.json").read_text()),
              "forest": {"tumors": score_forest(forest, cases), "free": score_forest(forest, free),
                         "sha256": forest.manifest["sha256"], "settings": forest.settings(),
                         "outline": outline_phrase(forest.net_boundary)},
              "cnn": {"truth": [c.tumor_type for c in training_cases], "pred": classify_all(cnn, training_cases),
                      "sha256": cnn.manifest["sha256"]}}
    if forest.uses_net:
        result["network"] = {"tumors": score_network(forest.net, cases), "free": score_network(forest.net, free),
                             "sha256": forest.net.sha256}
    result["other_networks"] = {}
    for weights in other_networks:
        net = load_tumor_net(weights)
        result["other_networks"][weights] = {"tumors": score_network(net, cases), "free": score_network(net, free),
                                             "sha256": net.sha256}
    sets = reference_sets(chu_dir or REPO.parent / "shared" / "data" / "chu_lumbar_t2")
    result["labeling"] = {"shipped": labeling_row(load_labeling_model(), sets)}
    for spec in other_labeling:
        pair = labeling_model(spec)
        result["labeling"][pair[1]["name"]] = labeling_row(pair, sets)
    return result


def report(result: dict, elapsed: float) -> str:
    """The docs section."""
    header = ("| model | set | tumors | Dice | IoU | precision | recall | tumors touched "
              "| tumor-free scan with nothing found | voxels marked in the tumor-free scan |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    rows = forest_rows(f"shipped forest ({result['forest']['sha256'][:12]})", "SCT", result["forest"])
    if "network" in result:
        rows += forest_rows(f"its tumor network alone ({result['network']['sha256'][:12]}, probability >= 0.5)",
                            "SCT", result["network"])
    for weights, scored in result.get("other_networks", {}).items():
        rows += forest_rows(f"network {scored['sha256'][:12]} alone ({weights}, probability >= 0.5)", "SCT", scored)
    labeling = result.get("labeling", {})
    reference_names = list(next(iter(labeling.values()), {}).get("reference", {}))
    labeling_header = ("| labeling model | SCT: levels found (ml) | TPTBox: body Dice, any label | "
                       + " | ".join(f"{n}: mean Dice, all levels right" for n in reference_names) + " |\n|---|---|---|"
                       + "---|" * len(reference_names))
    labeling_rows = "\n".join(
        f"| {name} | {', '.join(f'{k} {v:.1f}' for k, v in row['sct_ml'].items()) or 'none'} | {row['tptbox_body_dice']:.3f} | "
        + " | ".join(f"{d:.3f}, {right}" for d, right in row.get("reference", {}).values()) + " |"
        for name, row in labeling.items())
    truth, pred = result["cnn"]["truth"], result["cnn"]["pred"]
    accuracy = float(np.mean(np.array(truth) == np.array(pred))) if truth else float("nan")
    ds = result["dataset"]
    return f"""Machine: {machine()}. Script: `benchmarks/other_scanner.py` ({elapsed / 60:.0f} min).

The Spinal Cord Toolbox thoracolumbar sample (`Resources/SampleData/sct_t2_lumbar`, MIT) comes from
another scanner than the Chu scans every model was trained and chosen on: black background,
textured bone marrow, sharper edges. No model has seen it. The test tumors of "Real anatomy with
inserted tumors" (phantom seeds from {TEST_SOURCE_SEED}, {TEST_SOURCES_PER_TYPE} per type) were each
inserted at {POSITIONS} random places along its CSF (3D mode, seed {SEED}): {ds.get('samples')} samples
(dropped: {ds.get('dropped_compartment', 0)} that left their compartment, {ds.get('dropped_clipped', 0)} cut by the field of view). The scan has no reference vertebra
labels, so the tumors were placed between the levels the shipped labeling model finds there
({", ".join(result['levels_for_placement'])}). Tumor-free: the scan itself.

Forest at its own threshold and minimum volume; {result['forest']['outline']}.

{header}
{chr(10).join(rows)}

**CNN tumor type** (exact inserted mask, sac and cord from canal.py; shipped CNN {result['cnn']['sha256'][:12]}):
accuracy {accuracy:.3f} ({len(truth)} tumors); confusion (rows true IM, IDEM, ED): {confusion(truth, pred)}.

**Vertebra labeling on other scanners' scans.** SCT: the level volumes (ml) the model reports
(no reference labels; adult lumbar bodies hold 15-45 ml, so smaller ones are bodies found only in
part). TPTBox sample (`Testing/Data/tptbox_sample_mri`, Apache-2.0, 1.5 mm, three cervical
vertebrae, so no level name can be right): Dice of every voxel the model labels against the
vertebral-body voxels of its reference (subregion {TPTBOX_BODY}). Beside them, the sets of "Vertebra
labeling" (`benchmarks/labeling.py`): the held-out Chu cases chu_17..19 as they are, cropped at the
T12-L1 disc and cut at the L3-L4 disc, and fresh phantoms (seeds 7000..7005). A candidate named
by its run folder is that run's best.pt, chosen during training by its 2D validation Dice on
chu_17..19; one named by its checkpoint.pt is the run's last epoch (the weight average of a run
trained with `--average`). The shipped model is itself two networks (`spinetumor.labeling.model.found_and_named`:
a body where either finds one, the level from the namer; "Vertebra labeling"); a row "A + B" is such a pair of candidates.

{labeling_header}
{labeling_rows}

One scan of one other site: these rows say whether the models carry over to another scanner's
look, not how they do across sites.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "runs" / "other_scanner"))
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--other-network", action="append", default=[], metavar="WEIGHTS",
                   help="also score this tumor network alone; repeatable")
    p.add_argument("--other-labeling", action="append", default=[], metavar="WEIGHTS_OR_RUN",
                   help="also run this labeling model (.safetensors; a training run folder, for its best.pt; a run's best.pt "
                        "or checkpoint.pt; or FINDER+NAMER, two of those); repeatable")
    args = p.parse_args(argv)
    t0 = time.time()
    result = run(Path(args.out), other_networks=args.other_network, other_labeling=args.other_labeling)
    result["elapsed_s"] = time.time() - t0
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1, default=str))
    text = report(result, result["elapsed_s"])
    print(text)
    if not args.no_write:
        write_section(TITLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

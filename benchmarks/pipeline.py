"""End-to-end benchmark of ``spinetumor run``: time per stage, tumor found, type and levels right.

Runs :func:`spinetumor.pipeline.analyze` with the shipped models on fresh phantoms (seeds never
used in training: 900000+), two of each tumor type, and, when ../shared/data is present, times the
whole ``spinetumor run`` command (a fresh process: start-up, reading, analysis, writing every
output) on a real 381 x 381 x 77 Chu scan as it is and with a phantom tumor inserted by
TumorAugmentation. Writes the "## End-to-end pipeline" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/pipeline.py [--per-type 2] [--repeat 3] [--baseline REV] [--timing-only]
                                            [--labeling CANDIDATE]

``--labeling`` runs the phantoms with a candidate labeling model (as
``benchmarks.labeling.labeling_model`` reads it) instead of the shipped one: the section is printed, not written, and
the real scan is not timed (the command line always uses the shipped model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import caution_kinds, machine, write_section  # noqa: E402

from spinetumor import labels  # noqa: E402
from spinetumor.demo import insert_phantom_tumor  # noqa: E402
from spinetumor.io import read_volume, write_volume  # noqa: E402
from spinetumor.phantom import generate  # noqa: E402
from spinetumor.pipeline import analyze  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHU = REPO.parent / "shared" / "data" / "chu_lumbar_t2" / "chu_02_t2.nii.gz"


def best_match(found: list[dict], truth_tumor: dict, found_map: np.ndarray, truth_map: np.ndarray, tid: int):
    """The found tumor overlapping the true one most, or None."""
    best, overlap = None, 0
    for tumor in found:
        n = int(((found_map == tumor["id"]) & (truth_map == tid)).sum())
        if n > overlap:
            best, overlap = tumor, n
    return best


def other_findings(found: list[dict], match: dict | None, found_map: np.ndarray, truth_map: np.ndarray) -> tuple[list, list]:
    """(fragments, extra detections): the found tumors other than ``match`` that overlap the true
    tumor, and those that overlap no true tumor.

    Why apart: a fragment is part of the tumor reported as a second finding (or a piece of the
    tumor's surroundings, such as edema, touching it), not a finding where there is none.
    """
    others = [t for t in found if t is not match]
    touching = [bool(((found_map == t["id"]) & (truth_map > 0)).any()) for t in others]
    return ([t for t, hit in zip(others, touching) if hit], [t for t, hit in zip(others, touching) if not hit])


def time_command(image: Path, out: Path, code: Path = REPO) -> tuple[float, dict]:
    """Wall seconds of ``spinetumor run image --out out`` in a fresh process, and its report.

    ``code`` is the checkout whose ``spinetumor`` runs (python -m puts the working folder first).
    """
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "spinetumor", "run", str(image), "--out", str(out), "--progress", "none"],
                   check=True, stdout=subprocess.DEVNULL, cwd=code)
    seconds = time.perf_counter() - start
    return seconds, json.loads((out / "report.json").read_text())


def _spread(runs: list) -> tuple[float, dict, str]:
    """The median run's seconds and report, and '(median of n; min to max s)'."""
    runs = sorted(runs, key=lambda run: run[0])
    seconds, result = runs[len(runs) // 2]
    return seconds, result, f"median of {len(runs)}; {runs[0][0]:.1f} to {runs[-1][0]:.1f} s"


def real_scan_timing(repeat: int = 3, baseline: str | None = None) -> str:
    """The whole command on the real Chu scan, tumor-free and with an inserted tumor, ``repeat`` times
    each (a Markdown paragraph: the median run's stages, and the spread of the wall times).

    With ``baseline`` (a git revision) that commit's code runs too, from a temporary worktree,
    each of its runs right after one of this checkout's, so both see the machine alike.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = {"as it is (no tumor)": CHU,
                  "with an intradural-extramedullary phantom tumor inserted (seed 7)": write_volume(
                      insert_phantom_tumor(read_volume(CHU), 7, "intradural-extramedullary", CHU.name).image,
                      tmp / "chu_02_with_tumor.nii.gz")}
        old = tmp / "baseline"
        if baseline:
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), baseline], cwd=REPO, check=True)
        lines = []
        try:
            for n, (what, image) in enumerate(inputs.items()):
                runs, old_runs = [], []
                for i in range(repeat):
                    runs.append(time_command(image, tmp / f"out{n}_{i}"))
                    if baseline:
                        old_runs.append(time_command(image, tmp / f"old{n}_{i}", code=old))
                seconds, result, spread = _spread(runs)
                stages = ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items())
                line = (f"- {what}: {seconds:.1f} s wall ({spread}), {len(result['tumors'])} tumor(s) found; stages "
                        f"of the median run (s): {stages}; the rest is Python and library start-up.")
                if baseline:
                    old_seconds, _, old_spread = _spread(old_runs)
                    line += f" Commit {baseline}, timed alternately with it: {old_seconds:.1f} s ({old_spread})."
                lines.append(line)
        finally:
            if baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)
    return ("\nThe whole `spinetumor run` command on a real 381 x 381 x 77 scan (Chu case 02, 1 mm), in a fresh "
            "process, from start-up to the last report file written (issue 6's target: under 30 s):\n\n"
            + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the real-scan command per input")
    parser.add_argument("--baseline", help="a git revision whose code is timed alternately on the real scan")
    parser.add_argument("--timing-only", action="store_true",
                        help="print the real-scan timing paragraph only; docs are not rewritten")
    parser.add_argument("--labeling", default=None, metavar="CANDIDATE",
                        help="label with this candidate instead of the shipped model (printed, not written)")
    args = parser.parse_args(argv)
    candidate = None
    if args.labeling:
        from labeling import labeling_model

        candidate = labeling_model(args.labeling)
    if args.timing_only:
        print(real_scan_timing(args.repeat, args.baseline) if CHU.exists() else f"{CHU} not found")
        return 0
    rows, stage_times = [], []
    seed = 900000
    for tumor_type in labels.TUMOR_TYPE_NAMES:
        for _ in range(args.per_type):
            case = generate(seed, tumor=tumor_type)
            start = time.perf_counter()
            analysis = analyze(case.image, f"phantom {seed}", labeling_model=candidate)
            total = time.perf_counter() - start
            stage_times.append(analysis.report["timings_s"])
            truth = case.truth["tumors"][0]
            match = best_match(analysis.report["tumors"], truth, analysis.tumor_instances.array, case.tumor.array, 1)
            rows.append({
                "seed": seed, "type": tumor_type, "shape": "x".join(map(str, case.image.shape[::-1])),
                "found": match is not None, "type_right": bool(match and match["type"] == tumor_type),
                "cnn_type": match["type"] if match else "", "rule_type": (match["rule_type"] or "none") if match else "",
                "levels_right": bool(match and match["levels"] == truth["levels"]),
                "truth_levels": " ".join(truth["levels"]), "found_levels": " ".join(match["levels"]) if match else "",
                "seconds": total,
                "disc_caution": bool(match and "disc" in caution_kinds(match)),
                "one_slice": bool(match and "one-slice" in caution_kinds(match)),
            })
            fragments, extra = other_findings(analysis.report["tumors"], match, analysis.tumor_instances.array,
                                              case.tumor.array)
            rows[-1].update(fragments=len(fragments), false_tumors=len(extra),
                            false_disc_caution=sum("disc" in caution_kinds(t) for t in extra),
                            false_one_slice=sum("one-slice" in caution_kinds(t) for t in extra))
            print(rows[-1], flush=True)
            seed += 1
    real = real_scan_timing(args.repeat, args.baseline) if CHU.exists() and not candidate else ""
    stages = list(stage_times[0])
    mean = {s: np.mean([t[s] for t in stage_times]) for s in stages}
    n = len(rows)
    found = [r for r in rows if r["found"]]
    lines = [
        f"Machine: {machine()}. Script: `benchmarks/pipeline.py --per-type {args.per_type} --repeat {args.repeat}"
        f"{' --baseline ' + args.baseline if args.baseline else ''}{' --labeling ' + args.labeling if candidate else ''}`, "
        + (f"labeling by the candidate {candidate[1]['name']}, the other models shipped" if candidate else "the shipped models")
        + f", fresh phantoms (seeds 900000+), {args.per_type} per tumor type.",
        "",
        f"- Tumor found (a detected component overlaps the true tumor): {sum(r['found'] for r in rows)}/{n}",
        f"- Type right (CNN), among all tumors: {sum(r['type_right'] for r in rows)}/{n}",
        f"- Levels exactly right, among all tumors: {sum(r['levels_right'] for r in rows)}/{n}",
        f"- Extra detections that overlap no true tumor: {sum(r['false_tumors'] for r in rows)} in {n} cases; "
        f"besides, {sum(r['fragments'] for r in rows)} further finding(s) touch the true tumor but are not the one "
        "scored (fragments: the tumor reported in pieces, or its surroundings, such as edema, touching it)",
        f"- Geometric rule right (the report's `rule_type`, from the segmented tumor, sac and cord), among found "
        f"tumors: {sum(r['rule_type'] == r['type'] for r in found)}/{len(found)}; CNN and rule agree (no "
        f"\"please review\" in the report): {sum(r['rule_type'] == r['cnn_type'] for r in found)}/{len(found)}",
        f"- Disc caution (`tumors[].cautions`: an extradural finding centred on a disc space in front of the sac, "
        f"where a disc herniation looks alike): on {sum(r['disc_caution'] for r in found)}/{len(found)} found tumors "
        f"(every one a tumor here, so each caution is a false alarm; extradural "
        f"{sum(r['disc_caution'] for r in found if r['type'] == 'extradural')}/"
        f"{sum(r['type'] == 'extradural' for r in found)}) and on {sum(r['false_disc_caution'] for r in rows)} of "
        f"the {sum(r['false_tumors'] for r in rows)} extra detections",
        f"- One-slice caution (a finding that one sagittal slice holds): on {sum(r['one_slice'] for r in found)}/"
        f"{len(found)} found tumors and on {sum(r['false_one_slice'] for r in rows)} of the "
        f"{sum(r['false_tumors'] for r in rows)} extra detections",
        "",
        "| seed | type | size (i x j x k) | found | type right | rule | true levels | found levels | fragments | extra | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['seed']} | {r['type']} | {r['shape']} | {'yes' if r['found'] else 'no'} | "
              f"{'yes' if r['type_right'] else 'no'} | {r['rule_type']} | {r['truth_levels']} | {r['found_levels']} | "
              f"{r['fragments']} | {r['false_tumors']} | {r['seconds']:.1f} |" for r in rows]
    lines += ["", "Mean time per stage on the phantoms (s): "
              + ", ".join(f"{s} {mean[s]:.2f}" for s in stages) + ".", real,
              "Reading the table: the whole chain is only as good as its weakest stage, the tumor segmentation "
              "(see Tumor segmentation), which misses some tumors; type and level figures here count a missed "
              f"tumor as wrong. Vertebra labeling quality is in its own section. {len(rows)} phantoms are a small "
              "sample: the per-stage figures are in their own sections (levels from true tumor masks in "
              "\"Localization\"). Times are wall clock with nothing else running unless stated."]
    if candidate:
        print("\n".join(lines))
    else:
        write_section("End-to-end pipeline", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

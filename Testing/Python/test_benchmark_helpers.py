"""Benchmark helpers whose numbers go into docs/benchmarks.md: checked on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.segmentation import (EDGE_MM, error_breakdown, paired_difference, slice_role_counts, slice_role_dice,
                                     slice_role_sentence)


def test_error_breakdown_sorts_each_wrong_voxel_by_where_it_lies():
    truth = np.zeros((3, 40, 40), bool)
    truth[1, 10:20, 10:20] = True          # tumor A: 10 x 10 pixels of 1 mm
    truth[1, 30:34, 30:34] = True          # tumor B: never touched
    pred = np.zeros_like(truth)
    pred[1, 11:21, 10:20] = True           # A shifted one row: one row missed, one row too many
    pred[1, 2:5, 30:33] = True             # a false finding far from both
    out = error_breakdown(pred, truth, (4.0, 1.0, 1.0))
    assert out == {"fn_missed": 16, "fn_edge": 10, "fn_inner": 0, "fp_edge": 10, "fp_far": 9}


def test_error_breakdown_counts_deep_misses_apart_from_edge_misses():
    truth = np.zeros((1, 30, 30), bool)
    truth[0, 5:25, 5:25] = True
    pred = truth.copy()
    pred[0, 13:17, 13:17] = False          # a hole 8 mm from every edge
    pred[0, 5, 5:25] = False               # the outer row
    out = error_breakdown(pred, truth, (3.0, 1.0, 1.0))
    assert EDGE_MM < 8
    assert out["fn_inner"] == 16 and out["fn_edge"] == 20 and out["fn_missed"] == 0
    assert out["fp_edge"] == out["fp_far"] == 0


def test_slice_role_counts_split_errors_between_a_tumors_inner_and_end_slices():
    truth = np.zeros((6, 20, 20), bool)
    truth[1:5, 5:15, 5:15] = True          # spans slices 1-4: ends 1 and 4, inner 2 and 3
    pred = np.zeros_like(truth)
    pred[2:4, 5:15, 5:15] = True           # inner slices exactly right
    pred[4, 5:10, 5:15] = True             # half of the last slice
    pred[5, 5:10, 5:10] = True             # 25 voxels on a slice no tumor spans
    out = slice_role_counts(pred, truth)
    assert out == {"inner_slice_tp": 200, "inner_slice_fp": 0, "inner_slice_fn": 0, "end_slice_tp": 50,
                   "end_slice_fp": 0, "end_slice_fn": 150, "beyond_slice_fp": 25}
    assert not set(out) & set(error_breakdown(pred, truth, (4.0, 1.0, 1.0)))   # both go into one result dict
    sentence = slice_role_sentence([out])
    assert "inner slices the voxel Dice is 1.000 (200 tumor voxels)" in sentence
    assert "first and last slices 0.400 (200 tumor voxels)" in sentence   # 2*50 / (100 + 0 + 150)
    assert "hold 100% of the wrong voxels" in sentence
    assert slice_role_dice(out, "inner") == 1.0 and slice_role_dice(out, "end") == pytest.approx(0.4)


def test_tumor_net_row_gives_dice_per_type_per_slice_role_and_the_empty_tumor_free_count():
    from benchmarks.tumor_net import table_row

    roles = {"inner_slice_tp": 90, "inner_slice_fp": 10, "inner_slice_fn": 10, "end_slice_tp": 30,
             "end_slice_fp": 20, "end_slice_fn": 40, "beyond_slice_fp": 5}
    cases = [{"kind": "a", "marked": 10, "dice": 0.9}, {"kind": "a", "marked": 12, "dice": 0.7},
             {"kind": "b", "marked": 8, "dice": 0.2}, {"kind": "none", "marked": 0},
             {"kind": "none", "marked": 3}]
    row = table_row("net", "0123456789abcdef", {"per_case": cases, "slice_roles": roles, "missed_slices": [3, 11]},
                    ["a", "b"])
    # mean Dice 0.6; a 0.8, b 0.2; inner 180/200; end 60/120; 3 of 11 slices missed; one of two tumor-free empty
    assert row == "| net | 0123456789ab | 0.600 | 0.800 | 0.200 | 0.900 | 0.500 | 3/11 | 1/2 |"


def test_missed_slices_counts_the_tumor_slices_with_no_marked_tumor_pixel():
    from benchmarks.tumor_net import missed_slices

    truth = np.zeros((5, 6, 6), bool)
    truth[1:4, 2:4, 2:4] = True
    pred = np.zeros_like(truth)
    pred[2, 2, 2] = True              # one pixel of the middle slice
    pred[1, 0, 0] = True              # beside the tumor in slice 1: still missed
    pred[4, 2:4, 2:4] = True          # a slice without tumor does not count
    assert missed_slices(pred, truth) == (2, 3)


def test_other_scanner_report_scores_each_type_the_tumor_free_scan_and_the_cnn():
    from benchmarks.other_scanner import report

    tumors = [{"kind": "extradural", "name": "a", "tp": 50, "pred": 100, "truth": 100},
              {"kind": "extradural", "name": "b", "tp": 0, "pred": 0, "truth": 80},
              {"kind": "intradural-extramedullary", "name": "c", "tp": 60, "pred": 60, "truth": 60}]
    result = {"levels_for_placement": ["T12", "L1"], "dataset": {"samples": 3, "dropped_clipped": 1},
              "forest": {"tumors": tumors, "free": [{"tp": 0, "pred": 7, "truth": 0}], "sha256": "f" * 64,
                         "outline": "outline"},
              "cnn": {"truth": ["extradural", "extradural", "intradural-extramedullary"],
                      "pred": ["extradural", "intradural-extramedullary", "intradural-extramedullary"],
                      "sha256": "c" * 64},
              "other_networks": {"v9.safetensors": {"tumors": tumors[:1], "free": [{"tp": 0, "pred": 0, "truth": 0}],
                                                    "sha256": "9" * 64}},
              "labeling": {"shipped": {"sct_ml": {"L1": 20.51, "L2": 3.0}, "tptbox_body_dice": 0.7,
                                       "reference": {"Chu": [0.9071, "3/3"], "phantoms": [0.8, "5/6"]}}}}
    text = report(result, 60.0)
    assert "| extradural (2) | 0.250 | 0.167 | 0.250 | 0.250 | 1/2 |  |  |" in text
    assert "| all (3) | 0.500 | 0.444 | 0.500 | 0.500 | 2/3 | 0/1 | 7 |" in text
    assert "accuracy 0.667 (3 tumors)" in text and "0 0 0 / 0 1 0 / 0 1 1" in text
    assert "(T12, L1)" in text and "1 cut by the field of view" in text
    assert "| network 999999999999 alone (v9.safetensors, probability >= 0.5) | SCT | all (1) | 0.500 |" in text
    assert "| Chu: mean Dice, all levels right | phantoms: mean Dice, all levels right |" in text
    assert "| shipped | L1 20.5, L2 3.0 | 0.700 | 0.907, 3/3 | 0.800, 5/6 |" in text


def test_paired_difference_is_per_tumor_and_leaves_tumor_free_cases_out():
    kinds = ["intramedullary", "none", "extradural", "extradural"]
    results = {"a": [{"dice": 0.8}, {"dice": 1.0}, {"dice": 0.6}, {"dice": 0.7}],
               "b": [{"dice": 0.7}, {"dice": 0.0}, {"dice": 0.6}, {"dice": 0.4}]}
    mean, se = paired_difference(results, kinds, "a", "b")
    diff = np.array([0.1, 0.0, 0.3])
    assert mean == pytest.approx(diff.mean())
    assert se == pytest.approx(diff.std(ddof=1) / np.sqrt(3))


def _scored(tumors: list[tuple[int, int, int]], free_marked: list[int]) -> dict:
    """A forest's scores on one set: (tp, pred, truth) per tumor, voxels marked per tumor-free scan."""
    return {"tumors": [{"kind": "extradural", "tp": tp, "pred": p, "truth": t} for tp, p, t in tumors],
            "free": [{"pred": n} for n in free_marked]}


def test_choose_forest_needs_clean_phantoms_then_prefers_clean_real_scans_then_dice_and_ignores_the_test_set():
    from benchmarks.real_anatomy import choose_forest

    forests = {
        # better validation Dice (0.8) but marks voxels in one tumor-free validation scan
        "a": {"settings": {}, "phantom_validation": {"validation_clean_rate": 0.95}, "validation": _scored([(80, 100, 100)], [0, 12]), "test": _scored([(0, 9, 100)], [0, 0])},
        # Dice 0.5, both tumor-free validation scans empty
        "b": {"settings": {}, "phantom_validation": {"validation_clean_rate": 1.0}, "validation": _scored([(50, 100, 100)], [0, 0]), "test": _scored([(0, 9, 100)], [5, 5])},
        # the network alone (no settings): never chosen
        "net": {"validation": _scored([(100, 100, 100)], [0, 0])},
    }
    assert choose_forest(forests) == "b"
    forests["a"]["validation"]["free"][1]["pred"] = 0
    assert choose_forest(forests) == "a"
    forests["b"]["test"] = _scored([(100, 100, 100)], [0, 0])      # the test set changes nothing
    assert choose_forest(forests) == "a"
    forests["a"]["phantom_validation"]["validation_clean_rate"] = 0.9   # misses the 95 % target on phantoms
    assert choose_forest(forests) == "b"


def test_choose_forest_counts_validation_dice_within_the_tie_as_equal_and_prefers_real_training_data():
    from benchmarks.real_anatomy import choose_forest

    def forest(tp, real_cases):
        return {"settings": {}, "phantom_validation": {"validation_clean_rate": 1.0}, "training_cases": real_cases,
                "validation": _scored([(tp, 100, 100)], [0, 0])}

    # Dice 0.404 vs 0.408: a tie, the forest with real anatomy wins
    assert choose_forest({"real": forest(40.4, 31), "phantoms": forest(40.8, 0)}) == "real"
    # Dice 0.39 vs 0.41: not a tie
    assert choose_forest({"real": forest(39, 31), "phantoms": forest(41, 0)}) == "phantoms"


def test_a_forest_is_reused_only_when_made_the_same_way():
    from types import SimpleNamespace

    from benchmarks.real_anatomy import command_values, same_forest_recipe

    command = "spinetumor train segmentation --out x --cases 32 --val-free 16 --extra runs/a/train --net n.safetensors"
    assert command_values(command, "--extra") == ["runs/a/train"]
    shipped = SimpleNamespace(manifest={"command": command, "tumor_net": {"sha256": "abc"}}, net_boundary=0.5)
    trained = {"command": command.replace("--out x", "--out y"), "tumor_net": {"sha256": "abc"},
               "settings": {"net_boundary": 0.5}}
    assert same_forest_recipe(trained, shipped, ["runs/a/train"])
    assert not same_forest_recipe(trained, shipped, ["runs/b/train"])          # another dataset
    assert not same_forest_recipe(trained, shipped, [])                         # phantoms only
    assert not same_forest_recipe({**trained, "settings": {}}, shipped, ["runs/a/train"])   # forest's own outline
    assert not same_forest_recipe({**trained, "tumor_net": {"sha256": "def"}}, shipped, ["runs/a/train"])


def test_the_real_anatomy_report_names_the_validation_scans_the_tumor_network_has_seen():
    from benchmarks.real_anatomy import network_scans, network_scans_sentence

    manifest = {"extra_datasets": {"runs/x": {"targets": ["chu_02", "chu_13"]}, "runs/missing": None},
                "training": {"negatives": ["../shared/data/chu_lumbar_t2/chu_14_t2.nii.gz"]}}
    seen = network_scans(manifest)
    assert seen == {"with_tumors": ["chu_02", "chu_13"], "tumor_free": ["chu_14"]}
    assert network_scans_sentence(seen).endswith(
        "of the validation scans it has seen chu_13, chu_14, of the test scans none.")
    unseen = network_scans({"extra_datasets": {"runs/x": {"targets": ["chu_02"]}}, "training": {"negatives": []}})
    assert network_scans_sentence(unseen).endswith("of the validation scans it has seen none, of the test scans none.")


def _oblique_pair():
    """A small oblique, anisotropic image with labels, stored in a non-canonical array order."""
    from spinetumor.volume import Volume

    rng = np.random.default_rng(3)
    theta = np.deg2rad(7)
    direction = np.array([[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]])
    direction = direction[:, [2, 0, 1]]                     # array axes not in canonical order
    image = rng.uniform(0, 255, (12, 30, 20)).astype(np.float32)
    labels = (rng.uniform(0, 1, image.shape) > 0.7).astype(np.uint8) * 3
    spacing = (0.8, 1.0, 1.0)
    return (Volume(image, spacing, (5.0, -3.0, 2.0), direction),
            Volume(labels, spacing, (5.0, -3.0, 2.0), direction))


def test_thick_slices_average_each_slab_and_keep_its_centre_slice_labels_in_place():
    from benchmarks.labeling_robustness import canonical_pair, thick_slices

    image, labels = _oblique_pair()
    ci, ct = canonical_pair(image, labels)                  # arrays [s, r, c], spacing (c, r, s)
    thick, thick_labels = thick_slices(image, labels, 3)
    assert thick.shape[0] == ci.shape[0] // 3 and thick.spacing[2] == 3 * ci.spacing[2]
    np.testing.assert_allclose(thick.array[1], ci.array[3:6].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(thick_labels.array[1], ct.array[4])
    # the thick slice's centre is where its centre thin slice was (indices in k, j, i order)
    np.testing.assert_allclose(thick.index_to_lps([1, 5, 2]), ci.index_to_lps([4, 5, 2]), atol=1e-9)


def test_in_plane_resampling_keeps_the_first_sample_and_the_field_of_view():
    from benchmarks.labeling_robustness import canonical_pair, in_plane_spacing

    image, labels = _oblique_pair()
    ci, ct = canonical_pair(image, labels)
    coarse, coarse_labels = in_plane_spacing(image, labels, 2.0)
    assert coarse.spacing == (2.0, 2.0, ci.spacing[2]) and coarse.shape[0] == ci.shape[0]
    np.testing.assert_allclose(coarse.index_to_lps([0, 0, 0]), ci.index_to_lps([0, 0, 0]), atol=1e-9)
    rows_mm, cols_mm = ci.shape[1] * ci.spacing[1], ci.shape[2] * ci.spacing[0]
    assert 0 <= rows_mm - 2.0 * coarse.shape[1] < 2.0 and 0 <= cols_mm - 2.0 * coarse.shape[2] < 2.0
    # labels by nearest sample: coarse pixel (row j, column i) holds the thin pixel at the same place
    j, i = 4, 3
    src_j, src_i = int(np.rint(j * 2.0 / ci.spacing[1])), int(np.rint(i * 2.0 / ci.spacing[0]))
    assert coarse_labels.array[2, j, i] == ct.array[2, src_j, src_i]
    # averaging, not sampling: a constant image stays constant
    flat, _ = in_plane_spacing(image.with_array(np.full(image.shape, 7.0, np.float32)), labels, 2.0)
    np.testing.assert_allclose(flat.array, 7.0, rtol=1e-5)


def test_reordered_volume_holds_the_same_voxels_at_the_same_places():
    from benchmarks.labeling_robustness import canonical_pair, reordered

    image, labels = _oblique_pair()
    ci, _ = canonical_pair(image, labels)
    moved, _ = reordered(image, labels)
    assert moved.shape != ci.shape
    for kji in ([0, 0, 0], [2, 7, 3], [s - 1 for s in ci.shape]):
        point = ci.index_to_lps(kji)
        ijk = np.linalg.solve(moved.direction @ np.diag(moved.spacing), point - np.asarray(moved.origin))
        k, j, i = np.rint(ijk[::-1]).astype(int)
        assert moved.array[k, j, i] == ci.array[tuple(kji)]


def test_thick_real_validation_summary_reads_validation_rows_only():
    from benchmarks.thick_real import validation_summary

    def scored(dice_tp, free_pred):          # one tumor of 100 voxels predicted as 100, tp given
        return {"tumors": [{"tp": dice_tp, "pred": 100, "truth": 100}], "free": [{"pred": p} for p in free_pred]}

    result = {"a|val|1": scored(80, [0, 0]), "a|val|5": scored(40, [0, 12]), "a|test|1": scored(100, [0, 0]),
              "b|test|1": scored(10, [5])}
    lines = validation_summary(result)
    assert lines == ["- a: validation tumor-free scans empty 3/4, mean validation Dice 0.600 (over 2 slice thicknesses)"]


def test_tumor_free_real_groups_scans_by_what_the_tumor_models_saw_and_lists_findings():
    from benchmarks.tumor_free_real import GROUPS, findings, scan_groups, totals

    groups = scan_groups(["chu_02", "chu_13", "chu_17", "chu_99"])
    assert groups == {"chu_02": GROUPS[0], "chu_13": GROUPS[1], "chu_17": GROUPS[2], "chu_99": "other"}
    from spinetumor.localization import DISC_CAUTION, ONE_SLICE_CAUTION

    disc = DISC_CAUTION.format(disc="L4-L5")
    report = {"tumors": [{"type": "extradural", "levels": ["L4", "L5"], "volume_ml": 0.374,
                          "cautions": [disc, ONE_SLICE_CAUTION]},
                         {"type": "extradural", "levels": ["L3"], "volume_ml": 0.445, "cautions": [ONE_SLICE_CAUTION]},
                         {"type": "intramedullary", "levels": [], "volume_ml": 1.0, "cautions": []}]}
    assert findings(report) == ["extradural at L4–L5, 0.37 ml, disc caution, one-slice caution",
                                "extradural at L3, 0.45 ml, one-slice caution",
                                "intramedullary at no labeled level, 1.00 ml"]
    assert totals(report["tumors"]) == ("False findings: 3 in all, 0.37-1.00 ml; 1 of them with the disc caution "
                                        "and 2 with the one-slice caution (`tumors[].cautions`).")
    assert totals([]) == "No false finding in any scan."


def test_other_findings_tell_fragments_of_the_true_tumor_from_extra_detections():
    from benchmarks.pipeline import other_findings

    truth = np.zeros((4, 10, 10), np.uint8)
    truth[1:3, 2:6, 2:6] = 1
    found = np.zeros_like(truth)
    found[1:3, 2:5, 2:5] = 1          # the scored finding
    found[2, 5, 5] = 2                # one voxel of the tumor, reported apart
    found[0, 8:10, 8:10] = 3          # nowhere near it
    tumors = [{"id": 1}, {"id": 2}, {"id": 3}]
    fragments, extra = other_findings(tumors, tumors[0], found, truth)
    assert [t["id"] for t in fragments] == [2] and [t["id"] for t in extra] == [3]
    fragments, extra = other_findings(tumors, None, found, np.zeros_like(truth))
    assert fragments == [] and [t["id"] for t in extra] == [1, 2, 3]

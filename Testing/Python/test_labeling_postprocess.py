"""Anatomy rules in 3D: swapped neighbours, duplicates, fragments, the sacrum called L5."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinetumor.labeling import postprocess

#: Voxel size (mm) of the synthetic stacks: bodies of 6 x 10 x 12 voxels are 8.6 ml.
SPACING = (3.0, 2.0, 2.0)


def enforce_anatomy(labels, probs=None, **kwargs):
    return postprocess.enforce_anatomy(labels, probs, SPACING, **kwargs)


def stacked_bodies(n=7, gap=4, height=10):
    """A [S, R, C] map with n bodies (values 1..n) stacked superior (row 0) to inferior."""
    rows = n * (height + gap) + 30
    labels = np.zeros((8, rows, 20), np.uint8)
    for level in range(1, n + 1):
        r0 = 2 + (level - 1) * (height + gap)
        labels[1:7, r0:r0 + height, 4:16] = level
    return labels


def probs_from(labels, confidence=0.8):
    """Probabilities that back the given labels with ``confidence`` (rest spread evenly)."""
    probs = np.full((8,) + labels.shape, (1 - confidence) / 7, np.float32)
    for v in range(8):
        probs[v][labels == v] = confidence
    return probs


def test_correct_labels_are_kept():
    truth = stacked_bodies()
    out, report = enforce_anatomy(truth, probs_from(truth))
    assert np.array_equal(out, truth)
    assert not report.relabeled and not report.dropped_candidates


def test_swapped_pair_is_relabeled_by_order():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[truth == 4], pred[truth == 5] = 5, 4
    out, report = enforce_anatomy(pred, probs_from(pred))
    assert np.array_equal(out, truth)
    assert sorted((a, b) for a, b, _ in report.relabeled) == [(4, 5), (5, 4)]


def test_duplicate_level_moves_to_the_free_one():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[truth == 3] = 2                       # L1 body also called T12
    out, _ = enforce_anatomy(pred, None)
    assert np.array_equal(out, truth)


def test_fragments_are_dropped_or_merged():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[3, -10:-8, 5:7] = 6                  # isolated fragment far below
    pred[7, 2:12, 4:16] = 1                   # one more slice of T11: part of its component
    pred[4, 2 + 14 * 2 + 3, 8] = 5            # one voxel of "L3" inside L1: part of the L1 body
    pred[0, 2 + 14 * 3: 2 + 14 * 3 + 2, 4:6] = 6   # "L4" voxels on the edge of L2: a touching fragment
    out, report = enforce_anatomy(pred, probs_from(pred))
    assert not out[3, -10:-8, 5:7].any()
    assert (out[7, 2:12, 4:16] == 1).all()
    assert out[4, 2 + 14 * 2 + 3, 8] == 3
    assert (out[0, 2 + 14 * 3: 2 + 14 * 3 + 2, 4:6] == 4).all()    # one body with L2
    assert report.dropped_fragments == 4
    for level in range(1, 8):
        from scipy import ndimage

        assert ndimage.label(out == level)[1] == 1


def test_a_body_found_in_separate_slices_is_one_body_and_keeps_its_level():
    """The network labels slice by slice: L1 found only in slices 1 and 6, each piece under the
    smallest body, is still L1 (its pieces share their sagittal footprint), not two fragments
    dropped with a gap left in the levels."""
    truth = stacked_bodies()
    pred = truth.copy()
    pred[2:6][truth[2:6] == 3] = 0             # L1's middle slices missed
    out, report = enforce_anatomy(pred, probs_from(pred))
    assert (out[[1, 6]][truth[[1, 6]] == 3] == 3).all()
    assert np.array_equal(out[truth != 3], truth[truth != 3])
    assert report.dropped_fragments == 0


def test_pieces_beside_a_body_are_not_joined_to_it():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[7, 2 + 14 * 2:2 + 14 * 2 + 10, 17:20] = 3   # at L1's height, but behind its footprint
    out, report = enforce_anatomy(pred, probs_from(pred))
    assert np.array_equal(out, truth)
    assert report.dropped_fragments == 30
    labels = postprocess.body_pieces(ndimage.label(pred > 0)[0], 200)
    assert labels[7, 2 + 14 * 2, 17] != labels[3, 2 + 14 * 2, 8]


def test_only_pieces_too_small_for_a_body_are_joined():
    mask = np.zeros((8, 20, 20), bool)
    mask[0, 2:12, 4:16] = True                 # 120 voxels
    mask[3:7, 2:12, 4:16] = True               # 480 voxels, same footprint
    mask[7, 14:18, 4:16] = True                # 48 voxels below them
    assert len(np.unique(postprocess.body_pieces(ndimage.label(mask)[0], 100))) == 4     # none joined: one piece is a body
    joined = postprocess.body_pieces(ndimage.label(mask)[0], 500)
    assert joined[0, 2, 4] == joined[3, 2, 4] != joined[7, 14, 4]     # fragments of one footprint join


def test_sacrum_called_l5_below_the_true_l5_is_dropped():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[1:7, -24:-14, 4:16] = 7              # the S1 body, also labelled L5
    out, report = enforce_anatomy(pred, probs_from(pred))
    assert np.array_equal(out, truth)
    assert report.dropped_candidates == [(7, 6 * 10 * 12)]


#: Voxels of the top of S1 that :func:`labeled_with_sacrum_top` adds (half a body).
SACRUM_TOP_VOXELS = 6 * 5 * 12


def labeled_with_sacrum_top(truth, up: float, right: float):
    """The network's view of a lumbar field of view (``truth``: L1..L5 or fewer) with the top of S1
    (half a body, 20 mm of image below it) labeled L5 at probability 0.9; each body gives ``right``
    to its own name and ``up`` to the name one level higher. Returns (labels, probabilities)."""
    pred = truth.copy()
    pred[1:7, 100:105, 4:16] = 7
    probs = np.zeros((8,) + truth.shape, np.float32)
    probs[0][truth == 0] = 1.0
    for level in range(3, 8):
        probs[level][truth == level] = right
        probs[level - 1][truth == level] = up
    probs[7][:, 100:105] = 0.9
    return pred, probs


def test_top_of_the_sacrum_does_not_push_the_names_up_when_the_top_is_cut_away():
    """chu_19 cut at the T12-L1 disc: the networks call the top of S1 (half a body) L5 with
    confidence and lean, less surely, one name up on the lumbar bodies. Kept as a body, the
    sacrum would take L5 and every body above it a name one too high."""
    truth = stacked_bodies()
    truth[truth <= 2] = 0                     # L1..L5 imaged
    out, report = enforce_anatomy(*labeled_with_sacrum_top(truth, up=0.40, right=0.55))
    assert np.array_equal(out, truth)
    assert report.dropped_candidates == [(7, SACRUM_TOP_VOXELS)]
    assert report.to_dict()["sacrum_top_voxels"] == SACRUM_TOP_VOXELS


def test_the_body_on_the_top_of_the_sacrum_is_l5_even_when_the_network_leans_one_name_up():
    """chu_19 cut at T12-L1 with gamma 1.6: with the sacrum dropped, the five bodies' names still
    lean one level up; the body sitting on the sacrum is L5, so the run is counted from it."""
    truth = stacked_bodies()
    truth[truth <= 2] = 0                     # L1..L5 imaged
    out, report = enforce_anatomy(*labeled_with_sacrum_top(truth, up=0.55, right=0.40))
    assert np.array_equal(out, truth)
    assert report.sacrum_top == SACRUM_TOP_VOXELS


def test_a_sacrum_top_below_a_gap_does_not_fix_the_names():
    """L5 missed by the network: the small blob two spacings below L4 is still not a body, but
    the body above the gap is not L5, so the names come from the network (here: right)."""
    truth = stacked_bodies()
    truth[(truth <= 2) | (truth == 7)] = 0    # L1..L4 found, L5 missed
    out, report = enforce_anatomy(*labeled_with_sacrum_top(truth, up=0.05, right=0.9))
    assert np.array_equal(out, truth)
    assert report.sacrum_top == SACRUM_TOP_VOXELS


def test_a_small_lowest_body_cut_by_the_field_of_view_is_kept():
    truth = stacked_bodies()[:, :91]          # the image ends halfway down L5 (rows 86..90)
    out, report = enforce_anatomy(truth, probs_from(truth))
    assert np.array_equal(out, truth)
    assert not report.dropped_candidates and report.sacrum_top == 0


def test_partial_field_of_view_keeps_what_is_there():
    truth = stacked_bodies()
    truth[truth <= 2] = 0                     # only L1..L5 imaged
    out, _ = enforce_anatomy(truth, probs_from(truth))
    assert np.array_equal(out, truth)
    assert set(np.unique(out)) == {0, 3, 4, 5, 6, 7}


def test_without_level_evidence_levels_are_counted_up_from_the_lowest_body():
    truth = stacked_bodies()
    truth[truth <= 2] = 0                     # L1..L5 imaged
    pred = np.where(truth > 0, 1, 0).astype(np.uint8)   # every body called T11
    uniform = np.full((8,) + truth.shape, 1 / 8, np.float32)
    out, _ = enforce_anatomy(pred, uniform)
    assert np.array_equal(out, truth)


def test_blobs_smaller_than_a_vertebral_body_are_never_levels():
    truth = stacked_bodies()
    tiny = np.zeros_like(truth)
    tiny[2:4, 10:14, 5:9] = 3                  # 32 voxels = 0.4 ml, alone in the image
    out, report = enforce_anatomy(tiny, probs_from(tiny))
    assert not out.any() and report.dropped_fragments == 32


def test_a_body_split_between_two_names_stays_one_body():
    truth = stacked_bodies()
    pred = truth.copy()
    body = truth == 4
    rows = np.nonzero(body)[1]
    pred[body & (np.arange(truth.shape[1])[None, :, None] >= rows.mean())] = 5   # lower half called L3
    out, _ = enforce_anatomy(pred, probs_from(pred, 0.5))
    assert np.array_equal(out, truth)


def test_bodies_bridged_across_thin_discs_are_separated():
    truth = stacked_bodies()
    pred = truth.copy()
    for level in (1, 2):                       # the network fills a thin column across two discs
        r = 2 + level * 14
        pred[3:5, r - 4:r, 9:11] = level
    out, _ = enforce_anatomy(pred, probs_from(pred))
    assert np.array_equal(out[truth > 0], truth[truth > 0])


def test_bodies_bridged_in_pairs_are_separated_when_pairs_are_the_typical_component():
    """Three of four components are two bodies each (52 mm tall, over MAX_BODY_HEIGHT_MM), each pair
    called by one name: their median height is a pair's, so only the absolute bound splits them."""
    truth = stacked_bodies(height=11)
    pred = truth.copy()
    for upper, name in ((1, 3), (3, 4), (6, 6)):
        pair = (truth == upper) | (truth == upper + 1)
        pred[pair] = name
        r = 2 + upper * 15                     # the disc between the two bodies
        pred[3:5, r - 4:r, 9:11] = name
    assert postprocess.MAX_BODY_HEIGHT_MM == 50.0 and (11 * 2 + 4) * SPACING[1] > 50.0
    out, _ = enforce_anatomy(pred, probs_from(pred))
    assert np.array_equal(out[truth > 0], truth[truth > 0])


def test_a_body_the_network_missed_leaves_a_gap_of_one_name():
    truth = stacked_bodies()
    pred = truth.copy()
    pred[truth == 4] = 0                       # L2 not found at all
    wrong = np.where(pred > 0, 1, 0).astype(np.uint8)
    probs = probs_from(pred)
    probs[1:] = 0.1                            # weak evidence everywhere ...
    for level in (6, 7):                       # ... except on L4 and L5
        probs[level][truth == level] = 0.9
    out, _ = enforce_anatomy(wrong, probs)
    expected = truth.copy()
    expected[truth == 4] = 0
    assert np.array_equal(out, expected)

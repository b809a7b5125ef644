"""An analysis made from a phantom's ground truth: what a perfect ``spinetumor run`` would report.

It lets the module show every output (segments, level and tumor labels, results table, report
files) without trained models: the Slicer Test class and the pytest suite use it, and so can a
demonstration. The tumors are located by the engine's own :func:`spinetumor.localization.localize_tumors`
on the true masks, and each is given its true type with probability 1.
"""

from __future__ import annotations

import numpy as np


def truth_masks(case):
    """``(canal, cord)`` Volumes of a :class:`spinetumor.phantom.PhantomCase`.

    The canal is the dural sac with everything inside it (CSF, cord, intradural tumors), as
    the engine's canal mask is; the cord includes an intramedullary tumor.
    """
    from spinetumor.labels import value

    anatomy = np.asarray(case.anatomy.array)
    sac = [value(k) for k in ("canal", "cord", "intramedullary", "intradural-extramedullary")]
    cord = [value(k) for k in ("cord", "intramedullary")]
    return (case.anatomy.with_array(np.isin(anatomy, sac).astype(np.uint8)),
            case.anatomy.with_array(np.isin(anatomy, cord).astype(np.uint8)))


def vertebra_entries(vertebrae) -> list[dict]:
    """``report["vertebrae"]`` of a true vertebra label map: presence, volume, centroid (RAS), confidence 1."""
    from spinetumor.labels import VERTEBRAE

    voxel_ml = float(np.prod(vertebrae.spacing)) / 1000.0
    entries = []
    for lab in VERTEBRAE:
        mask = np.asarray(vertebrae.array) == lab.value
        present = bool(mask.any())
        entries.append({"level": lab.key, "present": present, "volume_ml": float(mask.sum()) * voxel_ml,
                        "centroid_ras": vertebrae.index_to_ras(np.argwhere(mask).mean(axis=0)).tolist()
                        if present else None, "confidence": 1.0 if present else None})
    return entries


def analysis_from_truth(case, name: str = "phantom"):
    """The :class:`spinetumor.pipeline.Analysis` a perfect run would produce on a phantom case."""
    from spinetumor.labels import TUMOR_TYPE_NAMES
    from spinetumor.localization import localize_tumors
    from spinetumor.pipeline import Analysis, input_info, tumor_entry

    canal, cord = truth_masks(case)
    instances = case.tumor.with_array(np.asarray(case.tumor.array).astype(np.uint16))
    types = {t["id"]: t["type"] for t in case.truth.get("tumors", [])}
    tumors = [tumor_entry(location, types[location.id],
                           {kind: float(kind == types[location.id]) for kind in TUMOR_TYPE_NAMES})
              for location in localize_tumors(instances, case.vertebrae, canal, cord, instances=True)]
    report = {"schema": "spinetumor-report/1", "spinetumor_version": case.truth.get("spinetumor_version", ""),
              "created": "", "input": input_info(case.image, name), "tumors": tumors,
              "vertebrae": vertebra_entries(case.vertebrae), "models": {}, "timings_s": {},
              "notes": ["Built from the phantom's ground truth, not by the models."]}
    probability = case.image.with_array((np.asarray(instances.array) > 0).astype(np.float32))
    return Analysis(case.image, case.vertebrae, canal, cord, instances, probability, report)

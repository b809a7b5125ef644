"""The one label table: every label value the project writes, with name, color and SNOMED CT code.

Nothing else in the project hard-codes a label value: use :data:`LABELS`,
:func:`by_key`, :func:`by_value`, :data:`VERTEBRAE` and :data:`TUMOR_TYPES`.

Label maps by file:

* ``vertebrae.nii.gz``: vertebral bodies 1..7 = T11, T12, L1, L2, L3, L4, L5
  (the convention of the Chu et al. data the project trains on).
* ``anatomy.nii.gz`` (phantom ground truth): the anatomy labels (values 10..29).
* ``tumor.nii.gz``: 1 where there is tumor; the type labels (31..33) and the
  tumor-related tissue labels (34, 35) appear in combined segmentations.

Codes follow the DICOM/Slicer terminology triplet (coding scheme, code value, meaning).
Slicer reads them from the ``TerminologyEntry`` tag that :func:`terminology_entry` builds,
and ``python -m spinetumor.labels`` writes the matching Slicer color table and terminology
context (``spinetumor/resources/SpineTumor.ctbl``, ``spinetumor/resources/SpineTumor.term.json``).

Where the codes come from (checked 2026-11-22): the DICOM PS3.16 context groups as
pydicom 3.0.2 lists them (vertebrae, cord, vertebral canal, arch of vertebra,
subcutaneous tissue, subarachnoid space, erector spinae, neoplasm, cyst, tissue);
SlicerTotalSegmentator's SNOMED mapping and terminology file (sacrum, spinal cord,
erector spinae, neoplasm, cyst, Morphologically Altered Structure and Slicer's
Anatomical Structure 123037004, which DICOM codes 91723000); TotalSegmentator's DICOM
export (intervertebral disc); HL7 FHIR SNOMED value sets (cauda equina, edema).
The spinal epidural space code 281584009 was found in none of these sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: (scheme, value, meaning) triplets used as categories.
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
TISSUE = ("SCT", "85756007", "Tissue")
MORPHOLOGICALLY_ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
NEOPLASM = ("SCT", "108369006", "Neoplasm")

#: Name of the project's Slicer terminology context (``spinetumor/resources/SpineTumor.term.json``);
#: segments' ``TerminologyEntry`` tags refer to it.
TERMINOLOGY_CONTEXT = "Segmentation category and type - SpineTumor"


@dataclass(frozen=True)
class Label:
    """One label: its value in label maps, a stable key, a display name, RGB color and codes."""

    value: int
    key: str
    name: str
    color: tuple[int, int, int]
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    #: anatomic region for morphologic labels (e.g. where a tumor sits), else None
    region: tuple[str, str, str] | None = None

    @property
    def color_float(self) -> tuple[float, float, float]:
        """RGB in 0..1, as Slicer segment colors are stored."""
        return tuple(round(c / 255.0, 6) for c in self.color)


def _anat(value, key, name, color, code, meaning, category=ANATOMICAL_STRUCTURE):
    return Label(value, key, name, color, category, ("SCT", code, meaning))


LABELS: tuple[Label, ...] = (
    # Vertebral bodies, the values of ../shared/data/chu_lumbar_t2 and of vertebrae.nii.gz.
    _anat(1, "T11", "T11 vertebral body", (241, 214, 145), "12989004", "T11 vertebra"),
    _anat(2, "T12", "T12 vertebral body", (216, 101, 79), "23215003", "T12 vertebra"),
    _anat(3, "L1", "L1 vertebral body", (128, 174, 128), "66794005", "L1 vertebra"),
    _anat(4, "L2", "L2 vertebral body", (111, 184, 210), "14293000", "L2 vertebra"),
    _anat(5, "L3", "L3 vertebral body", (183, 156, 220), "36470004", "L3 vertebra"),
    _anat(6, "L4", "L4 vertebral body", (221, 130, 101), "11994002", "L4 vertebra"),
    _anat(7, "L5", "L5 vertebral body", (250, 250, 210), "49668003", "L5 vertebra"),
    # Anatomy the phantom draws (anatomy.nii.gz) and the pipeline segments.
    _anat(10, "T10", "T10 vertebral body", (200, 200, 235), "7610001", "T10 vertebra"),
    _anat(11, "sacrum", "Sacrum", (244, 214, 49), "54735007", "Sacrum"),
    _anat(12, "disc", "Intervertebral disc", (95, 170, 200), "360499006", "Intervertebral disc"),
    _anat(13, "posterior_elements", "Posterior elements", (177, 122, 101), "40265002", "Arch of vertebra"),
    _anat(14, "canal", "Thecal sac (CSF)", (85, 188, 255), "61853006", "Spinal canal"),
    _anat(15, "cord", "Spinal cord", (244, 214, 49), "2748008", "Spinal cord"),
    _anat(16, "cauda_equina", "Cauda equina", (255, 250, 160), "7173007", "Cauda equina"),
    _anat(17, "epidural_fat", "Epidural fat", (230, 220, 70), "281584009", "Spinal epidural space"),
    _anat(18, "subcutaneous_fat", "Subcutaneous fat", (230, 230, 180), "71966008", "Subcutaneous tissue"),
    _anat(19, "paraspinal_muscle", "Paraspinal muscle", (192, 104, 88), "44947003", "Erector spinae muscle"),
    # Tumor: one generic label and one per compartment (the region carries the compartment).
    Label(30, "tumor", "Tumor", (255, 0, 0), MORPHOLOGICALLY_ALTERED, NEOPLASM),
    Label(31, "intramedullary", "Intramedullary tumor", (230, 40, 40), MORPHOLOGICALLY_ALTERED, NEOPLASM,
          ("SCT", "2748008", "Spinal cord")),
    Label(32, "intradural-extramedullary", "Intradural-extramedullary tumor", (255, 140, 0),
          MORPHOLOGICALLY_ALTERED, NEOPLASM, ("SCT", "35951006", "Subarachnoid space")),
    Label(33, "extradural", "Extradural tumor", (200, 0, 200), MORPHOLOGICALLY_ALTERED, NEOPLASM,
          ("SCT", "281584009", "Spinal epidural space")),
    Label(34, "edema", "Peritumoral edema", (255, 200, 200), MORPHOLOGICALLY_ALTERED, ("SCT", "79654002", "Edema"),
          ("SCT", "2748008", "Spinal cord")),
    Label(35, "syrinx", "Syrinx", (150, 220, 255), MORPHOLOGICALLY_ALTERED, ("SCT", "367643001", "Cyst"),
          ("SCT", "2748008", "Spinal cord")),
)

_BY_KEY = {label.key: label for label in LABELS}
_BY_VALUE = {label.value: label for label in LABELS}

#: The seven labeled vertebral bodies, superior to inferior (values 1..7).
VERTEBRAE: tuple[Label, ...] = tuple(_BY_VALUE[v] for v in range(1, 8))
#: Level names in order, e.g. ``LEVEL_NAMES[0] == "T11"``.
LEVEL_NAMES: tuple[str, ...] = tuple(label.key for label in VERTEBRAE)
#: The three tumor compartments, in the order the classifier outputs them.
TUMOR_TYPES: tuple[Label, ...] = tuple(_BY_KEY[k] for k in ("intramedullary", "intradural-extramedullary", "extradural"))
TUMOR_TYPE_NAMES: tuple[str, ...] = tuple(label.key for label in TUMOR_TYPES)
#: Anatomy labels written to the phantom's anatomy.nii.gz.
ANATOMY: tuple[Label, ...] = tuple(label for label in LABELS if 10 <= label.value < 30)


def by_key(key: str) -> Label:
    """The label with this key (e.g. ``"L3"``, ``"cord"``, ``"extradural"``)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown label key {key!r}; known: {', '.join(_BY_KEY)}") from None


def by_value(value: int) -> Label:
    """The label with this value."""
    try:
        return _BY_VALUE[int(value)]
    except KeyError:
        raise KeyError(f"unknown label value {value}") from None


def value(key: str) -> int:
    """Shorthand: the label value of ``key``."""
    return by_key(key).value


def disc_level_name(upper: str, lower: str) -> str:
    """Name of the disc space between two levels, e.g. ``("L2", "L3") -> "L2-L3"``."""
    return f"{upper}-{lower}"


def terminology_entry(label: Label) -> str:
    """The Slicer terminology entry string for a segment's ``TerminologyEntry`` tag.

    Format: context~category~type~type modifier~anatomic context~region~region modifier,
    each code written as ``scheme^value^meaning``.
    """
    def code(triplet):
        return "^".join(triplet) if triplet else "^^"

    return "~".join([
        TERMINOLOGY_CONTEXT,
        code(label.category),
        code(label.type),
        "^^",
        "Anatomic codes - DICOM master list",
        code(label.region),
        "^^",
    ])


def color_table_lines(labels=LABELS) -> list[str]:
    """Lines of a Slicer color table file (``.ctbl``): ``value name R G B A``."""
    lines = ["# SpineTumor color table, generated from spinetumor.labels", "0 Background 0 0 0 0"]
    for label in labels:
        r, g, b = label.color
        lines.append(f"{label.value} {label.name.replace(' ', '_')} {r} {g} {b} 255")
    return lines


# --- Slicer resources generated from the table ----------------------------------------------

#: The dcmqi schema Slicer's ``*.term.json`` terminology files declare.
TERMINOLOGY_SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"


def _code(triplet) -> dict:
    """A (scheme, value, meaning) triplet as the code fields of a terminology JSON entry."""
    scheme, value, meaning = triplet
    return {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning}


def terminology_json(labels=LABELS) -> dict:
    """The Slicer terminology context (``SegmentationCategoryTypeModifier`` format) of the table.

    Categories and types appear in table order, each type once: labels that share a
    type (the tumor compartments are all "Neoplasm") differ only in their anatomic
    region, which the segment's terminology tag carries, so the type takes the name
    and color of its first label. Morphologically altered categories show the
    anatomy selector (``showAnatomy``), so the region can be picked in Slicer.
    """
    categories: dict[tuple, dict] = {}
    for label in labels:
        category = categories.setdefault(label.category, {
            **_code(label.category),
            "showAnatomy": label.category != ANATOMICAL_STRUCTURE and label.category != TISSUE,
            "Type": [],
        })
        if any(t["CodeValue"] == label.type[1] and t["CodingSchemeDesignator"] == label.type[0]
               for t in category["Type"]):
            continue
        category["Type"].append({
            **_code(label.type),
            "recommendedDisplayRGBValue": list(label.color),
            "3dSlicerLabel": label.name,
        })
    return {
        "SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
        "@schema": TERMINOLOGY_SCHEMA,
        "SegmentationCodes": {"Category": list(categories.values())},
    }


#: Where the generated Slicer files ship: inside the package, so Slicer modules find them installed.
RESOURCE_FOLDER = Path(__file__).resolve().parent / "resources"


def resource_texts(labels=LABELS) -> dict[str, str]:
    """File name -> exact text of every Slicer resource generated from the table."""
    import json

    return {
        "SpineTumor.ctbl": "\n".join(color_table_lines(labels)) + "\n",
        "SpineTumor.term.json": json.dumps(terminology_json(labels), indent=2) + "\n",
    }


def write_resources(folder) -> list:
    """Write the color table and terminology files into ``folder`` (atomically); return their paths.

    Run ``python -m spinetumor.labels`` after changing the table; a test checks that
    the committed ``spinetumor/resources/`` files equal what the table generates.
    """
    from .io import write_text

    return [write_text(text, Path(folder) / name) for name, text in resource_texts().items()]


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else RESOURCE_FOLDER
    for written in write_resources(target):
        print(written)

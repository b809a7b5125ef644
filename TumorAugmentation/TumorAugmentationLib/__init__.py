"""Qt-free scene work of the Tumor Augmentation module: every function takes and returns MRML nodes.

* :mod:`.scene` - the tumor source (a segment of a scene volume, a saved source folder or a
  phantom seed), target volumes with their vertebra labels, the in-process preview of one
  sample, and the background ``spinetumor augment`` job's work folder and arguments.

Nothing here imports Qt, so all of it runs under pytest with the ``slicer-core`` wheel;
``spinetumor`` is imported inside functions, so loading the module in Slicer stays cheap.
The choices below are what the GUI offers; they must match the engine's
(``spinetumor.labels.TUMOR_TYPE_NAMES``, ``spinetumor.augmentation.inpaint.FILL_METHODS``),
which the tests check: they are spelled out here because the parameter node needs them
when the module file is loaded, before ``spinetumor`` may be imported.
"""

#: Tumor compartments (= ``spinetumor.labels.TUMOR_TYPE_NAMES``).
TUMOR_TYPES = ("intramedullary", "intradural-extramedullary", "extradural")
#: Where the source tumor comes from.
SOURCE_KINDS = ("segment", "folder", "phantom")
#: Where the targets come from: checked scene volumes, or a folder the ``augment`` command reads.
TARGET_KINDS = ("scene", "folder")
#: Insertion modes of ``spinetumor augment --mode``.
MODES = ("2d", "3d")
#: Hole fill methods (= ``spinetumor.augmentation.inpaint.FILL_METHODS``); "default" lets the engine pick.
FILLS = ("default", "bicubic", "biharmonic")

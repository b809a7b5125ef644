"""Qt-free scene work of the Spine Tumor Segmentation module: every function takes and returns MRML nodes.

* :mod:`.scene` - showing a tumor segmentation (``spinetumor segment``: tumor, canal and cord)
  or a whole analysis (``spinetumor run``: vertebrae, canal, cord and typed tumors, with level
  and tumor-type labels in the views, a results table and the report files), the background
  jobs' work folders and arguments, the same runs in this process for the Python console.
* :mod:`.truth` - an analysis built from a phantom's ground truth (what a perfect run
  reports), which shows every output without trained models: tests and demonstrations.

Nothing here imports Qt, so all of it runs under pytest with the ``slicer-core`` wheel;
``spinetumor`` is imported inside functions, so loading the module in Slicer stays cheap.
The choices below are what the GUI offers; they are spelled out here because the parameter
node needs them when the module file is loaded, before ``spinetumor`` may be imported, and
the tests check them against the engine's.
"""

#: Devices offered for the analysis ("auto": CUDA, then Apple MPS, then CPU).
DEVICES = ("auto", "cpu")
#: Denoisers of the tumor segmentation: "model" (the one the model was trained with), then
#: ``spinetumor.segmentation.denoise.METHODS``.
DENOISERS = ("model", "shearlet", "none", "gaussian", "curvature", "bilateral")

"""Qt-free scene work of the Vertebra Labeling module: every function takes and returns MRML nodes.

* :mod:`.scene` - showing a labeling result (segmentation, level-name points, results
  table), the background job's input and output folder, reusing the output nodes.
* :mod:`.landmarks` - level-named landmark points in a markups node and the masks
  the engine draws from them.

Nothing here imports Qt, so all of it runs under pytest with the ``slicer-core`` wheel;
``spinetumor`` is imported inside functions, so loading the module in Slicer stays cheap.
"""

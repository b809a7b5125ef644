"""Tumor segmentation (paper Section III.B): denoising, fuzzy c-means clustering and the steps after them.

Modules:

* :mod:`~spinetumor.segmentation.shearlet` -- our FFT-based cone-adapted Parseval shearlet
  transform and shearlet-threshold denoising of sagittal slices.
* :mod:`~spinetumor.segmentation.denoise` -- one :func:`denoise` entry dispatching to the
  shearlet, Gaussian, curvature-flow and bilateral denoisers (or none).
* :mod:`~spinetumor.segmentation.fcm` -- fuzzy c-means: an exact histogram version for
  intensities and a torch version for several features per voxel, both reproducing
  ``skfuzzy.cluster.cmeans``.
"""

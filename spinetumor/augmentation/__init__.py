"""Tumor augmentation: insert tumors along the CSF of tumor-free scans (the source paper's section III.A).

The steps, one module each (all work in the canonical sagittal stack of
:mod:`spinetumor.volume`, ``array[s, r, c]``: left→right, superior→inferior,
anterior→posterior):

* :mod:`.inpaint` fills the hole a removed tumor leaves (bicubic, as the paper; or biharmonic).
* :mod:`.extract` separates a tumor from its image: the tumor patch and the image without it.
* :mod:`.csf_path` gives the CSF centerline from T11 to L5 in 1 mm steps with tangent and curvature.
* :mod:`.glide` places a patch at positions along a target's path, turned to the local tangent,
  inside its compartment, sized per sagittal slice, blended; :func:`~.glide.check_compartment`.
* :mod:`.rotate` rotates slices or volumes by a few degrees about the left-right axis.
* :mod:`.thick_slices` reconstructs intermediate sagittal slices of thick-slice scans.
* :mod:`.dataset` writes a resumable dataset folder; :mod:`.commands` is ``spinetumor augment``.
"""

"""The 3D picture's surfaces: built on each label's box, they are the surfaces of the whole volume."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor import render3d
from spinetumor.volume import Volume


def labelled_volume() -> Volume:
    """Two labelled blobs (one touching the array's edge) in an anisotropic, oblique volume."""
    array = np.zeros((12, 30, 25), np.uint8)
    array[3:8, 5:15, 4:12] = 2
    array[0:4, 20:30, 15:25] = 5
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return Volume(array, (0.8, 0.9, 3.5), (10.0, -5.0, 20.0), direction)


def test_label_boxes_grow_by_one_voxel_inside_the_array():
    boxes = render3d.label_boxes(labelled_volume().array)
    assert sorted(boxes) == [2, 5]
    assert boxes[2] == (slice(2, 9), slice(4, 16), slice(3, 13))
    assert boxes[5] == (slice(0, 5), slice(19, 30), slice(14, 25))


def test_surface_on_the_box_is_the_surface_on_the_whole_volume():
    pytest.importorskip("vtk")
    from vtk.util import numpy_support

    volume = labelled_volume()
    for value, box in render3d.label_boxes(volume.array).items():
        whole = render3d._surface(volume, value)
        cropped = render3d._surface(volume.crop(box), value)
        assert whole.GetNumberOfPoints() == cropped.GetNumberOfPoints() > 0
        a = numpy_support.vtk_to_numpy(whole.GetPoints().GetData())
        b = numpy_support.vtk_to_numpy(cropped.GetPoints().GetData())
        np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-3)

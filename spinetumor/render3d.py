"""Offscreen 3D pictures of label maps with VTK (surfaces colored by the label table).

Used by the clinical report. VTK is imported inside the functions; on a machine without
offscreen OpenGL (EGL or OSMesa) :func:`render_labels` raises :class:`RenderError` and the
report goes on without the picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import labels as label_table
from .io import atomic_path
from .volume import Volume


class RenderError(RuntimeError):
    """Offscreen rendering is not available here."""


def label_boxes(labels: np.ndarray) -> dict[int, tuple]:
    """Each nonzero label's bounding box grown by one voxel (within the array), as slices.

    A surface built on that box is the one built on the whole array (outside it the label
    is absent), for a fraction of the work.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    return {value: tuple(slice(max(sl.start - 1, 0), min(sl.stop + 1, n)) for sl, n in zip(box, labels.shape))
            for value, box in enumerate(ndimage.find_objects(labels), start=1) if box is not None}


def _surface(volume: Volume, value: int, smoothing_iterations: int = 15):
    """A smoothed closed surface (vtkPolyData, LPS mm) of the voxels equal to ``value``."""
    import vtk
    from vtk.util import numpy_support

    mask = np.ascontiguousarray((volume.array == value).astype(np.uint8))
    image = vtk.vtkImageData()
    image.SetDimensions(*mask.shape[::-1])
    image.SetSpacing(*volume.spacing)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True))
    cubes = vtk.vtkDiscreteFlyingEdges3D() if hasattr(vtk, "vtkDiscreteFlyingEdges3D") else vtk.vtkDiscreteMarchingCubes()
    cubes.SetInputData(image)
    cubes.SetValue(0, 1)
    smoother = vtk.vtkWindowedSincPolyDataFilter()
    smoother.SetInputConnection(cubes.GetOutputPort())
    smoother.SetNumberOfIterations(smoothing_iterations)
    smoother.SetPassBand(0.05)
    smoother.NormalizeCoordinatesOn()
    # index space (scaled by spacing) -> physical: rotate by direction, shift by origin
    transform = vtk.vtkTransform()
    matrix = np.eye(4)
    matrix[:3, :3] = volume.direction
    matrix[:3, 3] = volume.origin
    transform.SetMatrix(matrix.ravel().tolist())
    physical = vtk.vtkTransformPolyDataFilter()
    physical.SetInputConnection(smoother.GetOutputPort())
    physical.SetTransform(transform)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(physical.GetOutputPort())
    normals.Update()
    return normals.GetOutput()


def render_labels(volume: Volume, path, *, values=None, size=(600, 700), opacity=None, title: str = "") -> Path:
    """Write a PNG of the label map's surfaces seen from the patient's left (sagittal view).

    ``values`` selects labels (default: all present); ``opacity`` maps value -> opacity
    (e.g. a translucent canal around an opaque tumor).
    """
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import vtk
    from vtk.util import numpy_support

    boxes = label_boxes(volume.array)
    values = [v for v in (values or boxes) if v in boxes]
    opacity = opacity or {}
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    for value in values:
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(_surface(volume.crop(boxes[value]), value))
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*label_table.by_value(value).color_float)
        actor.GetProperty().SetOpacity(float(opacity.get(value, 1.0)))
        renderer.AddActor(actor)
    if title:
        text = vtk.vtkTextActor()
        text.SetInput(title)
        text.GetTextProperty().SetColor(0.1, 0.1, 0.1)
        text.GetTextProperty().SetFontSize(16)
        text.SetDisplayPosition(10, 10)
        renderer.AddViewProp(text)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.AddRenderer(renderer)
    window.SetSize(*size)
    camera = renderer.GetActiveCamera()
    # LPS: look from the patient's left (+x) towards the right, head up (+z)
    camera.SetPosition(1.0, 0.0, 0.0)
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.Azimuth(-25)
    renderer.ResetCamera()
    try:
        window.Render()
    except Exception as error:   # VTK raises only on some platforms; most just log
        raise RenderError(f"offscreen rendering failed: {error}") from None
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    if pixels.size == 0 or pixels.max() == pixels.min():
        raise RenderError("offscreen rendering produced an empty picture")
    return _write_png(np.flipud(pixels[..., :3]), path)


def _write_png(rgb: np.ndarray, path) -> Path:
    """Write an RGB uint8 array as PNG (through matplotlib, already a dependency of the figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.ascontiguousarray(rgb), format="png")
    return Path(path)

"""The installed environment: the constraints requirements.txt exists to hold."""
from importlib import metadata

import cv2


def test_exactly_one_opencv_distribution_below_5():
    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    opencv = sorted(n for n in names if n.startswith("opencv"))
    assert opencv == ["opencv-python"], f"OpenCV distributions installed: {opencv}"
    assert int(cv2.__version__.split(".")[0]) < 5
    assert cv2.HOGDescriptor_getDefaultPeopleDetector().size > 0


def test_clip_and_yolov5_import():
    import clip
    import yolov5  # noqa: F401

    assert "RN101" in clip.available_models()

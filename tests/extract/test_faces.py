"""extract/faces.py: Haar detection on a real face, gap filling and crop bounds."""

from __future__ import annotations

import numpy as np
import pytest

from common.options import replace
from extract.faces import FaceOptions, crop_faces, detect_largest_face, load_cascade, locate_faces, square_crop_box
from extract.synthetic import compose_frame, face_image

DETECTION = FaceOptions(detect_height=360, scale_factor=1.2, min_neighbors=10, min_neighbors_floor=4, min_face=0.125)


def _frame(centre=(0.5, 0.5), width=640, height=480):
    return compose_frame(face_image(), width, height, centre, face_height=0.9, brightness=1.0)


def test_cascade_is_loaded_once_per_process():
    assert load_cascade() is load_cascade()
    assert not load_cascade().empty()


def test_the_astronaut_face_is_found_where_it_is():
    frame = _frame(centre=(0.6, 0.5))
    box = detect_largest_face(frame, DETECTION)
    assert box is not None and box.dtype == np.int32
    x, y, w, h = box
    # The astronaut's face sits in the upper middle of the photograph.
    image_left = 0.6 * 640 - 0.45 * 480
    assert image_left < x < x + w < image_left + 0.9 * 480
    assert 0 < y < y + h < 480
    assert 30 < w < 300


def test_boxes_from_the_downscaled_copy_are_in_source_pixels():
    taller = replace(DETECTION, detect_height=480)
    small = detect_largest_face(_frame(width=640, height=480), taller)
    large = detect_largest_face(_frame(width=1280, height=960), taller)
    np.testing.assert_allclose(large, small * 2, atol=12)


def test_a_blank_frame_has_no_face():
    assert detect_largest_face(np.full((480, 640, 3), 128, np.uint8), DETECTION) is None


def test_faceless_frames_borrow_the_nearest_detection():
    face, blank = _frame(), np.full((480, 640, 3), 128, np.uint8)
    boxes = locate_faces(np.stack([blank, face, blank, blank]), DETECTION)
    assert boxes.found.tolist() == [False, True, False, False]
    assert np.all(boxes.detected[[0, 2, 3]] == -1)
    assert np.all(boxes.used == boxes.detected[1])


def test_a_video_without_any_face_uses_a_centred_square():
    boxes = locate_faces(np.full((3, 480, 640, 3), 128, np.uint8), DETECTION)
    assert not boxes.found.any()
    assert boxes.used.tolist() == [[80, 0, 480, 480]] * 3


@pytest.mark.parametrize("seed", range(5))
def test_square_crop_box_stays_inside_the_frame(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        height, width = rng.integers(20, 800, 2)
        w, h = rng.integers(1, 400, 2)
        box = np.array([rng.integers(-50, width), rng.integers(-50, height), w, h])
        left, top, side = square_crop_box(box, height, width, margin=float(rng.uniform(0, 0.5)))
        assert 0 <= left and left + side <= width
        assert 0 <= top and top + side <= height
        assert side >= 1


def test_crop_is_centred_on_the_box_when_there_is_room():
    left, top, side = square_crop_box(np.array([300, 200, 100, 100]), 720, 1280, margin=0.2)
    assert side == 140 and (left, top) == (280, 180)


def test_crops_have_the_requested_size():
    frames = np.stack([_frame(), _frame()])
    options = replace(DETECTION, crop_size=64)
    crops = crop_faces(frames, locate_faces(frames, options).used, options)
    assert crops.shape == (2, 64, 64, 3) and crops.dtype == np.uint8
    assert crops.std() > 10  # a face, not a flat patch


def test_a_face_missed_at_the_first_min_neighbors_is_found_by_lowering_it():
    from skimage import data

    # Downscaled to 240 px, the astronaut photograph gathers fewer than 10 neighbouring
    # detections: only the retry with a lower minNeighbors finds the face.
    photograph = data.astronaut()
    strict = replace(DETECTION, detect_height=240, min_neighbors_floor=10)
    assert detect_largest_face(photograph, strict) is None
    box = detect_largest_face(photograph, replace(strict, min_neighbors_floor=4))
    assert box is not None
    x, y, w, h = box
    assert 150 < x < x + w < 300 and 40 < y < y + h < 200  # the face, in the 512 px photograph's pixels

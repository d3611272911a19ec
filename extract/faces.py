"""Find the face in each sampled frame (OpenCV Haar cascade) and crop it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
NEIGHBOR_STEP = 2  # minNeighbors is lowered by this much per retry on a faceless frame


class FaceError(Exception):
    """The Haar cascade cannot be loaded."""


@functools.cache
def load_cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade shipped with OpenCV, loaded once per process."""
    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceError(f"cannot load Haar cascade {path}; install opencv-python-headless<5 (OpenCV 5 dropped it)")
    return cascade


@dataclass(frozen=True)
class FaceBoxes:
    """Per-frame face boxes of one video.

    Attributes
    ----------
    detected : np.ndarray
        (T, 4) int32 x, y, w, h of each frame's own detection in source pixels; -1 where none.
    found : np.ndarray
        (T,) bool, the frame had its own detection.
    used : np.ndarray
        (T, 4) int32 boxes to crop: own detection, else the nearest frame's, else
        the centre of the frame when the whole video has no face.
    """

    detected: np.ndarray
    found: np.ndarray
    used: np.ndarray


def detect_largest_face(
    frame: np.ndarray,
    detect_height: int,
    scale_factor: float,
    min_neighbors: int,
    min_neighbors_floor: int,
    min_face: float,
) -> np.ndarray | None:
    """The largest face in an RGB frame, searched on a downscaled grayscale copy.

    Parameters
    ----------
    frame : np.ndarray
        (H, W, 3) uint8 RGB.
    min_face : float
        Smallest face side searched, as a fraction of the frame height. The
        smallest scales hold most of the cascade's windows, so skipping faces too
        small for a talking head saves ~40% of the time.

    Returns
    -------
    np.ndarray or None
        (4,) int32 x, y, w, h in source pixels, or None when no face is found even
        with minNeighbors lowered to ``min_neighbors_floor``.
    """
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, detect_height / frame.shape[0])
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(frame.shape[1] * scale)), detect_height), interpolation=cv2.INTER_AREA)
    cascade = load_cascade()
    smallest = max(1, round(min_face * gray.shape[0]))
    for neighbors in range(min_neighbors, min_neighbors_floor - 1, -NEIGHBOR_STEP):
        boxes = cascade.detectMultiScale(
            gray, scaleFactor=scale_factor, minNeighbors=neighbors, minSize=(smallest, smallest)
        )
        if len(boxes):
            largest = max(boxes, key=lambda box: box[2] * box[3])
            return np.round(np.asarray(largest) / scale).astype(np.int32)
    return None


def locate_faces(
    frames: np.ndarray,
    detect_height: int = 240,
    scale_factor: float = 1.2,
    min_neighbors: int = 10,
    min_neighbors_floor: int = 4,
    min_face: float = 0.125,
) -> FaceBoxes:
    """Detect a face per frame and fill the gaps.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8 RGB.

    Returns
    -------
    FaceBoxes
        A frame without its own face borrows the box of the nearest frame that has
        one; with no face anywhere every frame uses a centred square.
    """
    num_frames, height, width = frames.shape[:3]
    detected = np.full((num_frames, 4), -1, dtype=np.int32)
    for index, frame in enumerate(frames):
        box = detect_largest_face(frame, detect_height, scale_factor, min_neighbors, min_neighbors_floor, min_face)
        if box is not None:
            detected[index] = box
    found = detected[:, 2] > 0
    if found.any():
        with_face = np.flatnonzero(found)
        nearest = with_face[np.abs(np.arange(num_frames)[:, None] - with_face[None, :]).argmin(axis=1)]
        used = detected[nearest]
    else:
        side = min(height, width)
        used = np.tile(
            np.array([(width - side) // 2, (height - side) // 2, side, side], dtype=np.int32), (num_frames, 1)
        )
    return FaceBoxes(detected, found, used)


def square_crop_box(box: np.ndarray, height: int, width: int, margin: float) -> tuple[int, int, int]:
    """Square around ``box`` enlarged by ``margin``, moved to lie inside the frame.

    Returns
    -------
    tuple of int
        x, y, side in source pixels with 0 <= x, x + side <= width (same for y).
    """
    x, y, w, h = (int(value) for value in box)
    side = min(round(max(w, h) * (1.0 + 2.0 * margin)), height, width)
    centre_x, centre_y = x + w / 2.0, y + h / 2.0
    left = int(np.clip(round(centre_x - side / 2.0), 0, width - side))
    top = int(np.clip(round(centre_y - side / 2.0), 0, height - side))
    return left, top, max(side, 1)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Cut a square crop around each box and resize it.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8.
    boxes : np.ndarray
        (T, 4) int32 x, y, w, h.

    Returns
    -------
    np.ndarray
        (T, size, size, 3) uint8.
    """
    height, width = frames.shape[1:3]
    crops = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for index, (frame, box) in enumerate(zip(frames, boxes)):
        left, top, side = square_crop_box(box, height, width, margin)
        patch = frame[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crops[index] = cv2.resize(patch, (size, size), interpolation=interpolation)
    return crops

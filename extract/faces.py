"""Find the face in each sampled frame (OpenCV Haar cascade) and crop it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from common.errors import OptionError, TraitcacheError
from common.options import option

CASCADE_FILE = "haarcascade_frontalface_default.xml"
NEIGHBOR_STEP = 2  # minNeighbors is lowered by this much per retry on a faceless frame
MIN_CROP_SIZE = 32  # pixels: ResNet50's smallest input
MIN_DETECT_HEIGHT = 32  # pixels: the cascade's 24-pixel window must fit in the downscaled frame


class FaceError(TraitcacheError):
    """The Haar cascade cannot be loaded."""


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found (a Haar cascade on a downscaled copy of each frame) and cropped.

    ``detect_height`` 240 finds the same talking-head boxes as 360 (within a few
    source pixels on the ChaLearn clips) at about half the cost. A frame with no face
    is retried with minNeighbors lowered in steps of ``NEIGHBOR_STEP`` down to
    ``min_neighbors_floor``.
    """

    crop_size: int = option(224, "Side of the square face crop in pixels (32 or more).", metavar="PIXELS")
    face_margin: float = option(0.2, "Border around the face box, fraction of its side.", metavar="FRACTION")
    detect_height: int = option(240, "Frame height (pixels) for face detection.", metavar="PIXELS")
    min_face: float = option(0.125, "Smallest face searched, as a fraction of the frame height.", metavar="FRACTION")
    scale_factor: float = option(1.2, "Haar cascade scaleFactor.", metavar="FACTOR")
    min_neighbors: int = option(10, "Haar cascade minNeighbors, first try.", metavar="N")
    min_neighbors_floor: int = option(4, "Lowest minNeighbors tried on a faceless frame.", metavar="N")

    def __post_init__(self):
        if self.crop_size < MIN_CROP_SIZE:
            raise OptionError(
                "crop_size", f"must be at least {MIN_CROP_SIZE} (ResNet50's smallest input), got {self.crop_size}"
            )
        if self.face_margin < 0.0:
            raise OptionError("face_margin", f"must be 0 or more, got {self.face_margin}")
        if self.detect_height < MIN_DETECT_HEIGHT:
            raise OptionError("detect_height", f"must be at least {MIN_DETECT_HEIGHT}, got {self.detect_height}")
        if not 0.0 < self.min_face <= 1.0:
            raise OptionError("min_face", f"must be a fraction of the frame height in (0, 1], got {self.min_face}")
        if self.scale_factor <= 1.0:
            raise OptionError("scale_factor", f"must be above 1 (the Haar pyramid's step), got {self.scale_factor}")
        if not 1 <= self.min_neighbors_floor <= self.min_neighbors:
            raise OptionError(
                "min_neighbors_floor",
                f"must be between 1 and min_neighbors ({self.min_neighbors}), got {self.min_neighbors_floor}",
            )


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


def detect_largest_face(frame: np.ndarray, options: FaceOptions) -> np.ndarray | None:
    """The largest face in an RGB frame, searched on a downscaled grayscale copy.

    Faces smaller than ``options.min_face`` of the frame height are not searched:
    the smallest scales hold most of the cascade's windows, so skipping faces too
    small for a talking head saves ~40% of the time.

    Parameters
    ----------
    frame : np.ndarray
        (H, W, 3) uint8 RGB.
    options : FaceOptions
        The detection options (the crop options are not used).

    Returns
    -------
    np.ndarray or None
        (4,) int32 x, y, w, h in source pixels, or None when no face is found even
        with minNeighbors lowered to ``options.min_neighbors_floor``.
    """
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, options.detect_height / frame.shape[0])
    if scale < 1.0:
        gray = cv2.resize(
            gray, (max(1, round(frame.shape[1] * scale)), options.detect_height), interpolation=cv2.INTER_AREA
        )
    cascade = load_cascade()
    smallest = max(1, round(options.min_face * gray.shape[0]))
    for neighbors in range(options.min_neighbors, options.min_neighbors_floor - 1, -NEIGHBOR_STEP):
        boxes = cascade.detectMultiScale(
            gray, scaleFactor=options.scale_factor, minNeighbors=neighbors, minSize=(smallest, smallest)
        )
        if len(boxes):
            largest = max(boxes, key=lambda box: box[2] * box[3])
            return np.round(np.asarray(largest) / scale).astype(np.int32)
    return None


def locate_faces(frames: np.ndarray, options: FaceOptions) -> FaceBoxes:
    """Detect a face per frame and fill the gaps.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8 RGB.
    options : FaceOptions
        The detection options.

    Returns
    -------
    FaceBoxes
        A frame without its own face borrows the box of the nearest frame that has
        one; with no face anywhere every frame uses a centred square.
    """
    num_frames, height, width = frames.shape[:3]
    detected = np.full((num_frames, 4), -1, dtype=np.int32)
    for index, frame in enumerate(frames):
        box = detect_largest_face(frame, options)
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


def crop_faces(frames: np.ndarray, boxes: np.ndarray, options: FaceOptions) -> np.ndarray:
    """Cut a square crop around each box, enlarged by ``options.face_margin``, and resize it.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8.
    boxes : np.ndarray
        (T, 4) int32 x, y, w, h.
    options : FaceOptions
        The crop options (``face_margin``, ``crop_size``).

    Returns
    -------
    np.ndarray
        (T, S, S, 3) uint8, S = ``options.crop_size``.
    """
    size = options.crop_size
    height, width = frames.shape[1:3]
    crops = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for index, (frame, box) in enumerate(zip(frames, boxes)):
        left, top, side = square_crop_box(box, height, width, options.face_margin)
        patch = frame[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crops[index] = cv2.resize(patch, (size, size), interpolation=interpolation)
    return crops

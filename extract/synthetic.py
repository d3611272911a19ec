"""Make talking-head-like test clips with PyAV: a real face image plus a tone.

Used by the tests, the benchmark and ``make demo``, so that every part of the
pipeline can run on data the project produces itself.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

AUDIO_RATE = 44100  # Hz, like the ChaLearn clips' AAC tracks


def face_image() -> np.ndarray:
    """scikit-image's astronaut photograph: (512, 512, 3) uint8 RGB with a real face."""
    from skimage import data

    return data.astronaut()


def compose_frame(face: np.ndarray, width: int, height: int, centre: tuple[float, float], face_height: float, brightness: float) -> np.ndarray:
    """A (height, width, 3) uint8 frame with ``face`` scaled and placed on grey.

    ``centre`` is the face image's centre as fractions of the frame; ``face_height``
    the face image's height as a fraction of the frame's.
    """
    frame = np.full((height, width, 3), 96, dtype=np.uint8)
    side = max(8, round(face_height * height))
    scaled = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    left = round(centre[0] * width - side / 2)
    top = round(centre[1] * height - side / 2)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, width), min(top + side, height)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return np.clip(frame.astype(np.float32) * brightness, 0, 255).astype(np.uint8)


def tone(seconds: float, frequency: float, amplitude: float, onset: float = 0.0, rate: int = AUDIO_RATE) -> np.ndarray:
    """(num_samples,) float32 sine in [-1, 1], silent before ``onset`` seconds, with faint noise."""
    times = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(round(frequency * 1000 + amplitude * 100))
    signal = amplitude * np.sin(2 * np.pi * frequency * times) * (times >= onset)
    return (signal + rng.normal(0.0, 0.002, times.shape)).astype(np.float32)


def write_clip(path: Path, frames, audio: np.ndarray | None = None, fps: int = 25, audio_rate: int = AUDIO_RATE, codec: str = "libx264", pixel_format: str = "yuv420p") -> Path:
    """Encode RGB frames (an iterable of (H, W, 3) uint8) and mono audio into a video file.

    Parameters
    ----------
    frames : iterable of np.ndarray
        Frames of equal shape; H and W must be even for yuv420p.
    audio : np.ndarray, optional
        (num_samples,) float32 in [-1, 1]; no audio stream when None.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = first.shape[1], first.shape[0]
        video.pix_fmt = pixel_format
        sound = container.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for frame in [first, *frames]:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            chunk = 1024  # AAC frame size in samples
            for start in range(0, len(audio), chunk):
                block = audio[start : start + chunk].reshape(1, -1)
                audio_frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="flt", layout="mono")
                audio_frame.sample_rate = audio_rate
                audio_frame.pts = start
                audio_frame.time_base = Fraction(1, audio_rate)
                for packet in sound.encode(audio_frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def talking_head_clip(path: Path, seconds: float = 3.0, width: int = 320, height: int = 240, fps: int = 25, brightness: float = 1.0, centre: tuple[float, float] = (0.5, 0.5), face_height: float = 0.9, frequency: float = 220.0, amplitude: float = 0.3, onset: float = 0.0, with_audio: bool = True) -> Path:
    """Write a clip of the astronaut's face drifting slightly, with a tone.

    Returns
    -------
    Path
        ``path``, an h264 + AAC file of ``seconds * fps`` frames.
    """
    face = face_image()
    num_frames = round(seconds * fps)
    drift = 0.02  # fraction of the frame the face sways, so frames differ

    def frames():
        for index in range(num_frames):
            phase = np.sin(2 * np.pi * index / max(num_frames, 1))
            yield compose_frame(face, width, height, (centre[0] + drift * phase, centre[1]), face_height, brightness)

    audio = tone(seconds, frequency, amplitude, onset) if with_audio else None
    return write_clip(path, frames(), audio, fps=fps)

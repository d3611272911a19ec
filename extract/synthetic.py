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
LONG_CLIP_LOOKS = 8  # distinct frames a long clip cycles through
LONG_CLIP_PITCH = 220.0  # Hz: a whole number of cycles per second
MILLISECONDS_PER_SECOND = 1000  # time base of the clips written with explicit timestamps
CHALEARN_RATE = Fraction(30000, 1001)  # frames per second of the ChaLearn clips (NTSC 29.97)
# The ChaLearn clips' x264 settings, read from their SEI: P-frames reference B-frames
# (b-pyramid), so skipping every B-frame changes them while skipping only the
# non-reference ones does not. x264's faster presets (ref=1) would hide that.
CHALEARN_X264 = {"x264-params": "ref=3:bframes=3:b-pyramid=normal:weightp=2:keyint=250"}


def face_image() -> np.ndarray:
    """scikit-image's astronaut photograph: (512, 512, 3) uint8 RGB with a real face."""
    from skimage import data

    return data.astronaut()


def compose_frame(
    face: np.ndarray, width: int, height: int, centre: tuple[float, float], face_height: float, brightness: float
) -> np.ndarray:
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


def write_clip(
    path: Path,
    frames,
    audio: np.ndarray | None = None,
    fps: int | Fraction = 25,
    audio_rate: int = AUDIO_RATE,
    codec: str = "libx264",
    pixel_format: str = "yuv420p",
    options: dict | None = None,
) -> Path:
    """Encode RGB frames (an iterable of (H, W, 3) uint8) and mono audio into a video file.

    Parameters
    ----------
    frames : iterable of np.ndarray
        Frames of equal shape; H and W must be even for yuv420p.
    audio : np.ndarray, optional
        (num_samples,) float32 in [-1, 1]; no audio stream when None.
    options : dict, optional
        Encoder options, e.g. ``CHALEARN_X264``.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps, options=options or {})
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


def write_timed_clip(
    path: Path,
    frames,
    times_ms,
    fps: int = 25,
    codec: str = "libx264",
    pixel_format: str = "yuv420p",
    rotation: int | None = None,
    options: dict | None = None,
) -> Path:
    """Write a video-only clip, each frame at its own presentation time in milliseconds.

    Parameters
    ----------
    frames : sequence of np.ndarray
        (H, W, 3) uint8 RGB frames of equal shape.
    times_ms : sequence of int
        One presentation time per frame, increasing; gaps of any length make a
        variable frame rate, a first time above 0 a late start.
    fps : int
        The frame rate the stream declares.
    rotation : int, optional
        Degrees of the display-rotation tag, as phones write for portrait video.
    options : dict, optional
        Encoder options.
    """
    time_base = Fraction(1, MILLISECONDS_PER_SECOND)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pixel_format
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for pixels, time in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = int(time), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)


def talking_head_clip(
    path: Path,
    seconds: float = 3.0,
    width: int = 320,
    height: int = 240,
    fps: int | Fraction = 25,
    brightness: float = 1.0,
    centre: tuple[float, float] = (0.5, 0.5),
    face_height: float = 0.9,
    frequency: float = 220.0,
    amplitude: float = 0.3,
    onset: float = 0.0,
    with_audio: bool = True,
    options: dict | None = None,
) -> Path:
    """Write a clip of the astronaut's face drifting slightly, with a tone.

    ``options`` go to the x264 encoder: `chalearn_like_clip` passes the data set's.

    Returns
    -------
    Path
        ``path``, an h264 + AAC file of ``round(seconds * fps)`` frames.
    """
    face = face_image()
    num_frames = round(seconds * fps)
    drift = 0.02  # fraction of the frame the face sways, so frames differ

    def frames():
        for index in range(num_frames):
            phase = np.sin(2 * np.pi * index / max(num_frames, 1))
            yield compose_frame(face, width, height, (centre[0] + drift * phase, centre[1]), face_height, brightness)

    audio = tone(seconds, frequency, amplitude, onset) if with_audio else None
    return write_clip(path, frames(), audio, fps=fps, options=options)


def chalearn_like_clip(path: Path, seconds: float = 15.3, width: int = 1280, height: int = 720) -> Path:
    """A talking-head clip with the ChaLearn clips' frame rate and GOP structure (``CHALEARN_X264``).

    The defaults give their length and size (459 frames of 1280x720); tests pass
    smaller ones, which keep the structure.
    """
    return talking_head_clip(
        path, seconds=seconds, width=width, height=height, fps=CHALEARN_RATE, options=CHALEARN_X264
    )


def long_clip_with_sound(
    path: Path, seconds: int, fps: int = 1, width: int = 64, height: int = 48, audio_rate: int = 16000
) -> Path:
    """A long recording that is cheap to make: tiny frames at a low rate, and a full sound track.

    What grows with its length is the sound (mono at ``audio_rate``), as in long
    interviews; used to check that memory stays flat.

    Returns
    -------
    Path
        ``path``, an h264 + AAC file of ``seconds * fps`` frames.
    """
    face = face_image()
    looks = [
        compose_frame(face, width, height, (0.5, 0.5), 0.9, 0.8 + 0.05 * index) for index in range(LONG_CLIP_LOOKS)
    ]
    frames = (looks[index % LONG_CLIP_LOOKS] for index in range(seconds * fps))
    # One second of tone repeated (a whole number of cycles, so the repeats join smoothly): 4 bytes a sample to make.
    audio = np.tile(tone(1.0, LONG_CLIP_PITCH, 0.3, rate=audio_rate), seconds)
    return write_clip(path, frames, audio, fps=fps, audio_rate=audio_rate, options={"preset": "ultrafast"})

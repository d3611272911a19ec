"""Decode the sampled frames and the sound track of one video with PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

AUDIO_SAMPLE_FORMAT = "s16"  # pyAudioAnalysis expects int16-range samples


class VideoError(Exception):
    """A video cannot be used; the message is the one-line reason."""


@dataclass(frozen=True)
class DecodedVideo:
    """The sampled frames and the sound of one video.

    Attributes
    ----------
    frames : np.ndarray
        (T*k, H, W, 3) uint8 RGB, the frame nearest each sample time.
    frame_times : np.ndarray
        (T*k,) float32 seconds from the first frame.
    duration : float
        Seconds of video.
    audio : np.ndarray or None
        (num_samples,) float64 mono samples in int16 range, None without a sound track.
    """

    frames: np.ndarray
    frame_times: np.ndarray
    duration: float
    audio: np.ndarray | None


def sample_times(duration: float, segments: int, per_segment: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Times to sample: T equal segments, each cut into k equal sub-segments.

    Parameters
    ----------
    duration : float
        Seconds of video.
    segments, per_segment : int
        T and k.
    mode : str
        ``centre`` takes each sub-segment's centre; ``random`` a uniform position
        inside it drawn from ``rng``.

    Returns
    -------
    np.ndarray
        (T*k,) float64 increasing times in [0, duration), segment-major.
    """
    slots = segments * per_segment
    offsets = np.full(slots, 0.5) if mode == "centre" else rng.uniform(0.0, 1.0, slots)
    return (np.arange(slots) + offsets) * (duration / slots)


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _frame_time(frame: av.VideoFrame, start: float, index: int, rate: float) -> float:
    return frame.time - start if frame.time is not None else index / rate


def decode(path: Path, segments: int, per_segment: int, mode: str, audio_rate: int, rng: np.random.Generator | None = None) -> DecodedVideo:
    """Decode the frames nearest to the sample times, and the whole sound track.

    One pass over the container's packets: video packets are decoded until every
    sample time is passed, audio packets to the end. Only the chosen frames are
    converted to RGB and kept, so memory does not grow with the video's length.
    A packet that fails to decode is skipped; too few frames is an error.

    Parameters
    ----------
    path : Path
        The video file.
    segments, per_segment, mode, rng
        Sampling, as in `sample_times`.
    audio_rate : int
        Hz the sound track is resampled to (mono).

    Raises
    ------
    VideoError
        With a one-line reason (not a video, no video stream, too few frames...).
    """
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoError(f"not a readable video ({error.strerror})") from error
    except (OSError, UnicodeDecodeError) as error:
        raise VideoError(f"cannot open: {error}") from error
    with container:
        if not container.streams.video:
            raise VideoError("no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        duration = _stream_duration(container, video)
        if not duration or duration <= 0:
            raise VideoError("unknown or zero duration")
        rate = float(video.average_rate or video.guessed_rate or 25)
        start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        targets = sample_times(duration, segments, per_segment, mode, rng)
        picker = _NearestFramePicker(targets)
        resampler = av.AudioResampler(format=AUDIO_SAMPLE_FORMAT, layout="mono", rate=audio_rate) if audio_stream else None
        audio_chunks: list[np.ndarray] = []
        streams = [video] + ([audio_stream] if audio_stream else [])
        decoded_frames = 0
        bad_packets = 0
        for packet in container.demux(*streams):
            if packet.stream.type == "video" and picker.done:
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                bad_packets += 1
                if bad_packets > max(10, segments):
                    raise VideoError(f"too many corrupt packets ({error})") from error
                continue
            for frame in frames:
                if packet.stream.type == "video":
                    picker.offer(frame, _frame_time(frame, start, decoded_frames, rate))
                    decoded_frames += 1
                else:
                    audio_chunks.extend(chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(frame))
        picker.finish()
        if resampler is not None:
            audio_chunks.extend(chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(None))
    if decoded_frames < len(targets):
        raise VideoError(f"only {decoded_frames} decodable frames, fewer than the {len(targets)} to sample (--frames x --frames-per-segment)")
    audio = np.concatenate(audio_chunks).astype(np.float64) if audio_chunks else None
    return DecodedVideo(picker.frames(), picker.times(), duration, audio)


class _NearestFramePicker:
    """Keep, for each target time, the decoded frame closest to it."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.chosen: list[np.ndarray] = []
        self.chosen_times: list[float] = []
        self.previous: tuple[av.VideoFrame, float] | None = None

    @property
    def done(self) -> bool:
        return len(self.chosen) == len(self.targets)

    def _take(self, frame: av.VideoFrame, time: float) -> None:
        self.chosen.append(frame.to_ndarray(format="rgb24"))
        self.chosen_times.append(time)

    def offer(self, frame: av.VideoFrame, time: float) -> None:
        while not self.done and time >= self.targets[len(self.chosen)]:
            target = self.targets[len(self.chosen)]
            if self.previous is not None and target - self.previous[1] < time - target:
                self._take(*self.previous)
            else:
                self._take(frame, time)
        self.previous = (frame, time)

    def finish(self) -> None:
        """Targets beyond the last decoded frame take that frame."""
        while not self.done and self.previous is not None:
            self._take(*self.previous)

    def frames(self) -> np.ndarray:
        return np.stack(self.chosen)

    def times(self) -> np.ndarray:
        return np.asarray(self.chosen_times, dtype=np.float32)

"""Decode the sampled frames and the sound track of one video with PyAV."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from common.errors import OptionError, TraitcacheError
from common.options import option

SAMPLING_MODES = ("centre", "random")
MIN_AUDIO_RATE = 8000  # Hz: pyAudioAnalysis' filter bank needs at least this
AUDIO_SAMPLE_FORMAT = "s16"  # pyAudioAnalysis expects int16-range samples
FALLBACK_RATE = 25.0  # frames per second assumed for a stream that states none (the PAL rate)
# Seconds the packets may end before the duration a header declares: more than the
# frame or two by which streams and headers usually differ, far less than a cut or a
# damaged file loses.
TRUNCATION_TOLERANCE = 0.5
# Share of the video packets read that may fail to decode. Below it every sample still
# gets a real frame near its time (20 KB of garbage in a ChaLearn clip spoils 5 of 459
# packets); above it too much of the video is missing to trust its samples.
MAX_CORRUPT_SHARE = 0.1
QUARTER_TURN = 90  # degrees turned by one np.rot90 step
# Codecs whose decoder skips exactly the frames no other frame references under
# skip_frame="NONREF" (h264: NAL units with nal_ref_idc 0), so that every frame it
# still decodes is pixel-identical to the full decode. Others are decoded in full.
SKIPPABLE_CODECS = frozenset({"h264"})
# Seconds around a sample time's two neighbouring frames within which frames are
# decoded too: far above the rounding of timestamps converted to seconds (~1e-15 s),
# far below any frame period, so it guards ties without costing frames.
TIME_SLACK = 1e-6
SOUND_SLACK = 2.0  # seconds of sound room beyond the video's length: AAC priming, a sound track a little longer
SOUND_GROWTH = 1.5  # factor the sound buffer grows by when a track runs longer still


class VideoError(TraitcacheError):
    """A video cannot be used; the message is the one-line reason."""


@dataclass(frozen=True)
class DecodeOptions:
    """Which frames of a video are sampled, and the rate its sound is resampled to.

    Each of the T segments is cut into k equal sub-segments; ``centre`` takes the
    centre of each, ``random`` a position within each drawn from the generator that
    `decode` is given (the run seeds it with ``seed`` and the video's content hash).
    """

    frames: int = option(10, "T, equal segments per video.", metavar="T")
    frames_per_segment: int = option(1, "k frames stored per segment (training picks one per epoch).", metavar="K")
    sampling: str = option("centre", "centre | random (seeded position in each segment).", metavar="MODE")
    audio_rate: int = option(16000, "Hz every sound track is resampled to.", metavar="HZ")

    def __post_init__(self):
        if self.frames < 1:
            raise OptionError("frames", f"must be at least 1, got {self.frames}")
        if self.frames_per_segment < 1:
            raise OptionError("frames_per_segment", f"must be at least 1, got {self.frames_per_segment}")
        if self.sampling not in SAMPLING_MODES:
            raise OptionError("sampling", f"must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.audio_rate < MIN_AUDIO_RATE:
            raise OptionError(
                "audio_rate",
                f"must be at least {MIN_AUDIO_RATE} Hz (pyAudioAnalysis' filter bank needs it), got {self.audio_rate}",
            )


@dataclass(frozen=True)
class DecodedVideo:
    """The sampled frames and the sound of one video.

    Attributes
    ----------
    frames : np.ndarray
        (T*k, H, W, 3) uint8 RGB, the frame nearest each sample time, upright (turned
        as the stream's rotation tag says) and all of the first sampled frame's size.
    frame_times : np.ndarray
        (T*k,) float32 seconds from the first frame.
    duration : float
        Seconds of video, from the first frame to the end of the last.
    audio : np.ndarray or None
        (num_samples,) int16 mono samples, None without a sound track.
    decoded_frames : int
        Video frames the decoder produced; fewer than the stream holds when frames
        that cannot be chosen were skipped, or after the last sample time.
    """

    frames: np.ndarray
    frame_times: np.ndarray
    duration: float
    audio: np.ndarray | None
    decoded_frames: int


def sample_times(
    duration: float, segments: int, per_segment: int, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
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


def _open(path: Path) -> av.container.InputContainer:
    """Open a video for reading, or raise VideoError saying why it cannot be."""
    try:
        return av.open(str(path))
    # PyAV's errors from system calls are OSErrors too: caught first, so that a
    # permission or disk problem is not reported as a bad video.
    except OSError as error:
        raise VideoError(f"cannot open: {error.strerror or error}") from error
    except av.error.FFmpegError as error:
        if path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes)") from error
        raise VideoError(
            f"cannot be read as a video ({error.strerror}): not a video, or truncated or damaged"
        ) from error


def _streams(
    container: av.container.InputContainer,
) -> tuple[av.video.stream.VideoStream, av.audio.stream.AudioStream | None]:
    """The first video stream and the first sound stream (None when there is none)."""
    if not container.streams:
        raise VideoError("no streams at all: a truncated or damaged header")
    if not container.streams.video:
        raise VideoError(f"no video stream, only {', '.join(sorted({stream.type for stream in container.streams}))}")
    audio = container.streams.audio[0] if container.streams.audio else None
    return container.streams.video[0], audio


class _Demuxer:
    """A container's packets in file order.

    A demuxer error ends the iteration like the end of the file and is kept in
    ``error``, so that what lies before the damage can still be judged and used.
    """

    def __init__(self, container: av.container.InputContainer, streams: list[av.stream.Stream]):
        self.packets = container.demux(*streams)
        self.error: str | None = None

    def __iter__(self) -> Iterator[av.Packet]:
        while True:
            try:
                packet = next(self.packets)
            except StopIteration:
                return
            except av.error.FFmpegError as error:
                self.error = error.strerror
                return
            yield packet


@dataclass(frozen=True)
class _PacketSpan:
    """Where a video's packets lie, from one pass over them without decoding.

    Attributes
    ----------
    video_packets : int
        Video packets that hold data.
    start, end : float or None
        Seconds (stream time) of the earliest video frame and of the end of the
        latest; None when the video packets carry no timestamps.
    data_end : float or None
        Seconds (stream time) where the latest packet of any scanned stream ends.
    error : str or None
        The demuxer's complaint when it stopped before the end of the file.
    video_timestamps : np.ndarray or None
        (video_packets,) int64 pts of the video packets in file order; None when one
        has none, or when the edit list discards some (frames that are decoded but
        never shown).
    """

    video_packets: int
    start: float | None
    end: float | None
    data_end: float | None
    error: str | None
    video_timestamps: np.ndarray | None


def _scan_packets(container: av.container.InputContainer, streams: list[av.stream.Stream], rate: float) -> _PacketSpan:
    """Read every packet of ``streams`` without decoding it (milliseconds per clip).

    Parameters
    ----------
    rate : float
        Frames per second, for video packets that state no duration.
    """
    video_packets = 0
    video_starts: list[float] = []
    video_ends: list[float] = []
    packet_ends: list[float] = []
    timestamps: list[int | None] = []
    discarded_video = False
    demuxer = _Demuxer(container, streams)
    for packet in demuxer:
        # Empty packets only flush decoders.
        if not packet.size:
            continue
        is_video = packet.stream.type == "video"
        # Discarded packets lie outside the edit list: never shown, but maybe referenced.
        if packet.is_discard:
            discarded_video |= is_video
            continue
        if is_video:
            video_packets += 1
            timestamps.append(packet.pts)
        if packet.pts is None:
            continue
        start = float(packet.pts * packet.time_base)
        # A video packet without a duration still shows its frame for one frame period.
        length = float(packet.duration * packet.time_base) if packet.duration else (1.0 / rate if is_video else 0.0)
        packet_ends.append(start + length)
        if is_video:
            video_starts.append(start)
            video_ends.append(start + length)
    usable = not discarded_video and None not in timestamps
    return _PacketSpan(
        video_packets,
        min(video_starts, default=None),
        max(video_ends, default=None),
        max(packet_ends, default=None),
        demuxer.error,
        np.asarray(timestamps, dtype=np.int64) if usable else None,
    )


def _timeline(
    container: av.container.InputContainer, video: av.video.stream.VideoStream, span: _PacketSpan, rate: float
) -> tuple[float, float]:
    """Origin and duration in seconds of the video's frames, checked against its header.

    Raises
    ------
    VideoError
        When there are no video packets, or they end well before the duration the
        header declares (a truncated or damaged file).
    """
    cause = f" ({span.error})" if span.error else ""
    if not span.video_packets:
        raise VideoError(f"the video stream holds no frames: truncated or empty{cause}")
    if span.start is None:
        return 0.0, span.video_packets / rate
    duration = span.end - span.start
    if video.duration and video.time_base:
        declared = float(video.duration * video.time_base)
        if duration < declared - TRUNCATION_TOLERANCE:
            raise VideoError(
                f"truncated or damaged: video data ends after {duration:.2f} s of the {declared:.2f} s its header declares{cause}"
            )
    elif container.duration and span.data_end is not None:
        # Without per-stream durations (Matroska, WebM) the container's duration runs
        # from timestamp zero, so it is compared with where the data ends in stream time.
        declared = container.duration / av.time_base
        if span.data_end < declared - TRUNCATION_TOLERANCE:
            raise VideoError(
                f"truncated or damaged: data ends at {span.data_end:.2f} s of the {declared:.2f} s its header declares{cause}"
            )
    return span.start, duration


def decode(
    path: Path,
    options: DecodeOptions,
    rng: np.random.Generator | None = None,
    threads: int = 0,
    skip_frames: bool = True,
    times: np.ndarray | None = None,
) -> DecodedVideo:
    """Decode the frames nearest to the sample times, and the whole sound track.

    A first pass reads the packets without decoding them, to learn where the frames
    lie whatever the container's conventions (timestamps not starting at zero, no
    duration in the header) and to refuse a truncated file. The second pass decodes
    video packets until every sample time is passed and audio packets to the end.
    Only the chosen frames are converted to RGB and kept, so memory for frames does
    not grow with the video's length, and the sound is kept as int16 (2 bytes per
    sample). A video packet that fails to decode is skipped (up to
    ``MAX_CORRUPT_SHARE`` of them); an audio packet that fails becomes silence of its
    length, so the sound stays aligned with the frames.

    With ``skip_frames`` the decoder skips the frames that no other frame references
    and that lie next to no sample time (``skip_frame="NONREF"`` for their packets),
    which changes neither which frames are chosen nor their pixels. Where the stream
    gives no ground for that (a codec outside ``SKIPPABLE_CODECS``, packets without
    timestamps or discarded by an edit list, two packets at one time), or where the
    decoding departs from what the packets promised (a corrupt packet, frames out of
    order, without timestamps or missing), every frame is decoded instead, exactly
    as with ``skip_frames=False``.

    Parameters
    ----------
    path : Path
        The video file.
    options : DecodeOptions
        Sampling (as in `sample_times`) and the rate in Hz the sound track is
        resampled to (mono).
    rng : np.random.Generator, optional
        Draws the positions of ``random`` sampling.
    threads : int
        Decoder threads; 0 lets FFmpeg use every core.
    skip_frames : bool
        Skip the frames that cannot be chosen where that is safe; False decodes
        every frame up to the last sample time (the reference that skipping is
        tested against).
    times : np.ndarray, optional
        (T*k,) increasing seconds from the first frame to sample instead of those
        ``options`` draw: a cache's ``frame_times`` give the frames it was built from.

    Raises
    ------
    VideoError
        With a one-line reason (not a video, no video stream, truncated, too many
        corrupt packets, too few frames...).
    """
    with _open(path) as container:
        video, sound = _streams(container)
        rate = float(video.average_rate or video.guessed_rate or FALLBACK_RATE)
        span = _scan_packets(container, [stream for stream in (video, sound) if stream is not None], rate)
        origin, duration = _timeline(container, video, span, rate)
        if times is None:
            targets = sample_times(duration, options.frames, options.frames_per_segment, options.sampling, rng)
        else:
            targets = np.asarray(times, dtype=np.float64)
        needed = _frames_to_decode(video, span.video_timestamps, origin, targets) if skip_frames else None
    if needed is not None:
        try:
            return _decode_pass(path, targets, origin, duration, rate, options.audio_rate, threads, needed)
        except _SkippingUnsafe:
            pass
    return _decode_pass(path, targets, origin, duration, rate, options.audio_rate, threads, None)


def _frames_to_decode(
    video: av.video.stream.VideoStream, timestamps: np.ndarray | None, origin: float, targets: np.ndarray
) -> frozenset[int] | None:
    """The pts of the frames that the nearest-frame choice of `_NearestFramePicker` can depend on.

    For each target these are the last frame before it and the first at or after it
    in presentation order (the two it is chosen from; the last frame alone when the
    target lies beyond it), plus any frame within ``TIME_SLACK`` of either side.

    Parameters
    ----------
    timestamps : np.ndarray or None
        (num_frames,) int64 pts of every video packet, as `_PacketSpan` holds them.
    origin : float
        Seconds of the first frame, subtracted from every frame's time.
    targets : np.ndarray
        (T*k,) increasing sample times in seconds from ``origin``.

    Returns
    -------
    frozenset of int or None
        None when skipping is not safe for this stream: its codec is not in
        ``SKIPPABLE_CODECS``, or its packets lack timestamps, or two share one.
    """
    if video.codec_context.name not in SKIPPABLE_CODECS or timestamps is None or not video.time_base:
        return None
    ordered = np.unique(timestamps)
    if len(ordered) != len(timestamps):
        return None
    # The same arithmetic as PyAV's frame.time, so that ties fall the same way.
    times = ordered.astype(np.float64) * video.time_base.numerator / video.time_base.denominator - origin
    before = np.maximum(np.searchsorted(times, targets - TIME_SLACK) - 1, 0)
    after = np.minimum(np.searchsorted(times, targets + TIME_SLACK), len(times) - 1)
    return frozenset(int(pts) for low, high in zip(before, after) for pts in ordered[low : high + 1])


class _SkippingUnsafe(Exception):
    """Decoding with skipped frames met something that the packets did not promise."""


def _decode_pass(
    path: Path,
    targets: np.ndarray,
    origin: float,
    duration: float,
    rate: float,
    audio_rate: int,
    threads: int,
    needed: frozenset[int] | None,
) -> DecodedVideo:
    """The second pass of `decode`: decode, pick the frames, collect the sound.

    Parameters
    ----------
    needed : frozenset of int or None
        With a set (from `_frames_to_decode`), non-reference frames whose pts is not
        in it are skipped, and anything that would make the result differ from the
        full decode raises `_SkippingUnsafe`; None decodes every frame.
    """
    picker = _NearestFramePicker(targets)
    decoded_frames = read_packets = corrupt_packets = 0
    last_error = ""
    seen: set[int] = set()
    last_pts: int | None = None
    with _open(path) as container:
        video, sound = _streams(container)
        video.thread_type = "AUTO"
        video.thread_count = threads
        resampler = av.AudioResampler(format=AUDIO_SAMPLE_FORMAT, layout="mono", rate=audio_rate) if sound else None
        # Room for the video's length and a little more; pages never written cost no memory.
        sound_track = _SoundTrack(round((duration + SOUND_SLACK) * audio_rate)) if sound else None
        for packet in _Demuxer(container, [stream for stream in (video, sound) if stream is not None]):
            is_video = packet.stream.type == "video"
            if is_video and picker.done:
                continue
            if is_video and packet.size:
                read_packets += 1
                if needed is not None:
                    # Read by the decoder when the packet is sent, so it may change from packet to packet.
                    video.codec_context.skip_frame = "DEFAULT" if packet.pts in needed else "NONREF"
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                if is_video:
                    if needed is not None:
                        raise _SkippingUnsafe(f"packet at pts {packet.pts}: {error.strerror}") from error
                    corrupt_packets += 1
                    last_error = error.strerror
                elif packet.duration:
                    sound_track.append(
                        np.zeros(round(float(packet.duration * packet.time_base) * audio_rate), dtype=np.int16)
                    )
                continue
            for frame in frames:
                if is_video:
                    if needed is not None:
                        # The full decode hands frames over in presentation order, each with its packet's pts.
                        if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                            raise _SkippingUnsafe(f"frame pts {frame.pts} after {last_pts}")
                        last_pts = frame.pts
                        seen.add(frame.pts)
                    picker.offer(frame, frame.time - origin if frame.time is not None else decoded_frames / rate)
                    decoded_frames += 1
                else:
                    for chunk in resampler.resample(frame):
                        sound_track.append(chunk.to_ndarray().reshape(-1))
        if needed is not None:
            # Once every target is taken, the frames after the last one offered no longer matter.
            expected = {pts for pts in needed if pts <= last_pts} if picker.done else needed
            if not expected <= seen:
                raise _SkippingUnsafe(f"frames at pts {sorted(expected - seen)} next to a sample time were not decoded")
        if needed is not None and decoded_frames < len(targets):
            raise _SkippingUnsafe("fewer frames than samples: counted again by the full decode")
        picker.finish()
        if resampler is not None:
            for chunk in resampler.resample(None):
                sound_track.append(chunk.to_ndarray().reshape(-1))
    if corrupt_packets > MAX_CORRUPT_SHARE * read_packets:
        raise VideoError(
            f"{corrupt_packets} of {read_packets} video packets read are corrupt, more than {MAX_CORRUPT_SHARE:.0%} ({last_error})"
        )
    if decoded_frames < len(targets):
        raise VideoError(
            f"only {decoded_frames} decodable frame(s), fewer than the {len(targets)} to sample (--frames x --frames-per-segment)"
        )
    return DecodedVideo(
        picker.frames(),
        picker.times(),
        duration,
        sound_track.samples() if sound_track is not None and sound_track.length else None,
        decoded_frames,
    )


class _SoundTrack:
    """Mono int16 samples appended chunk by chunk into one array, so that a long track is held once."""

    def __init__(self, capacity: int):
        self.buffer = np.empty(capacity, dtype=np.int16)
        self.length = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.length + len(chunk)
        if end > len(self.buffer):
            grown = np.empty(max(end, round(len(self.buffer) * SOUND_GROWTH)), dtype=np.int16)
            grown[: self.length] = self.buffer[: self.length]
            self.buffer = grown
        self.buffer[self.length : end] = chunk
        self.length = end

    def samples(self) -> np.ndarray:
        """(num_samples,) int16: the samples appended so far."""
        return self.buffer[: self.length]


class _NearestFramePicker:
    """Keep, for each target time, the decoded frame closest to it."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.chosen: list[np.ndarray] = []
        self.chosen_times: list[float] = []
        self.previous: tuple[av.VideoFrame, float] | None = None
        self.size: tuple[int, int] | None = None  # width, height of the first chosen frame

    @property
    def done(self) -> bool:
        return len(self.chosen) == len(self.targets)

    def _take(self, frame: av.VideoFrame, time: float) -> None:
        # A stream may change resolution mid-way (concatenated recordings): every frame
        # is scaled to the first one's size so that they stack.
        if self.size is None:
            self.size = (frame.width, frame.height)
        pixels = frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1])
        # Phones store portrait video as landscape pixels plus a counter-clockwise
        # display rotation; np.rot90 turns counter-clockwise too.
        self.chosen.append(np.rot90(pixels, k=round(frame.rotation / QUARTER_TURN)))
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

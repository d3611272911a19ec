"""Hostile inputs: every broken, odd or extreme file is either cached correctly or
recorded as a failure with a one-line reason, and the run goes on either way.

The corpus is made here with PyAV and plain byte manipulation. Most cases go
through one real extraction run (`extract_to_cache`); the ones that need a closer
look (rotation, timestamps, truncation points, memory) also call `decode` directly.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bench.memory_bench import extraction_growths
from cache.reader import CacheReader
from extract.config import ExtractOptions
from extract.faces import FaceOptions, locate_faces
from extract.inputs import discover
from extract.run import extract_to_cache
from extract.synthetic import compose_frame, face_image, long_clip_with_sound, talking_head_clip, write_timed_clip
from extract.video import TRUNCATION_TOLERANCE, DecodeOptions, VideoError, decode

FRAMES = 4  # T of every run here
RATE = 16000  # Hz, the default --audio-rate
DECODING = DecodeOptions(frames=FRAMES, audio_rate=RATE)
LONG_SECONDS = 600  # the "long video" of the issue: 10 minutes
LONG_FPS = 1  # frames per second of the long clip, so that it encodes in about a second
# The memory test's clips: frames large enough that keeping all 600 of the long clip (RGB:
# 414 MiB) or 10 minutes of sound as float32 beside the int16 track (37 MiB) breaks the bound.
MEMORY_CLIP_SIZE = (640, 360)
# Peak resident memory the 10-minute clip may add over the 10-second one, beyond the sound
# track held once as int16 (2 bytes a sample: 18 MiB at 16 kHz): decoder and resampler
# buffers, the audio windows of one batch. Measured: 5-7 MiB.
LONG_MEMORY_BUDGET = 16 * 2**20
SOUND_SAMPLE_BYTES = 2  # int16
SPLIT = "data"
NON_UTF8_NAME = os.fsdecode(b"caf\xe9 latin-1.mp4")  # a Latin-1 name, as old Windows tools write them
QUOTED_NAME = "interview 'take 2' \"final\" ñandú 日本.mp4"


def _looks(width: int, height: int, count: int, face_height: float = 0.9) -> list[np.ndarray]:
    """``count`` RGB frames of the astronaut's face, each a little brighter than the last."""
    face = face_image()
    return [
        compose_frame(face, width, height, (0.5, 0.5), face_height, 0.8 + 0.2 * index / max(count - 1, 1))
        for index in range(count)
    ]


def _encode(
    path: Path,
    frames,
    times_ms=None,
    fps: int = 25,
    codec: str = "libx264",
    pixel_format: str = "yuv420p",
    rotation: int | None = None,
) -> Path:
    """Write a video-only clip, each frame at its own presentation time in milliseconds."""
    frames = list(frames)
    times_ms = list(times_ms) if times_ms is not None else [round(index * 1000 / fps) for index in range(len(frames))]
    options = {"preset": "ultrafast"} if codec == "libx264" else {}
    return write_timed_clip(path, frames, times_ms, fps, codec, pixel_format, rotation, options)


def _remux(source: Path, target: Path, options: dict | None = None) -> Path:
    """Copy every packet into another container (or the same one with other muxer options)."""
    with av.open(str(source)) as reader, av.open(str(target), "w", options=options or {}) as writer:
        streams = {stream.index: writer.add_stream_from_template(stream) for stream in reader.streams}
        for packet in reader.demux():
            if packet.dts is None:  # the demuxer's closing empty packets
                continue
            packet.stream = streams[packet.stream.index]
            writer.mux(packet)
    return target


def _garble(source: Path, target: Path, start: float, size: int) -> Path:
    """Overwrite ``size`` bytes from fraction ``start`` of the file with seeded random bytes."""
    data = bytearray(source.read_bytes())
    offset = int(len(data) * start)
    data[offset : offset + size] = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def _cut(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate = RATE
        container.mux([*stream.encode(frame), *stream.encode()])
    return path


def _long_clip(path: Path) -> Path:
    looks = _looks(320, 240, 8)
    return _encode(path, (looks[index % len(looks)] for index in range(LONG_SECONDS * LONG_FPS)), fps=LONG_FPS)


# Cases cached correctly: file name -> seconds from the first frame to the end of the last.
PROCESSED = {
    "clip.mp4": 3.0,
    "no-audio.mp4": 1.0,
    "short.mp4": 0.4,
    "long.mp4": float(LONG_SECONDS),
    "portrait.mp4": 1.0,
    "tiny.mp4": 1.0,
    "odd.mp4": 1.0,
    "gray.mkv": 1.0,
    "ten-bit.mp4": 1.0,
    "variable-rate.mp4": 2.8,
    "rotated.mp4": 1.0,
    "late-start.mkv": 2.0,
    "late-start.mp4": 2.0,
    "garbled-lightly.mp4": 3.0,
    "fast-cut-in-last-packets.mp4": 3.0,
    QUOTED_NAME: 1.0,
}
# Cases recorded as failures: printable file name -> words the reason must contain.
FAILED = {
    "empty.mp4": "empty file (0 bytes)",
    "random.mp4": "cannot be read as a video",
    "text.mp4": "cannot be read as a video",
    "cut-in-header.mp4": "cannot be read as a video",
    "cut-in-middle.mp4": "cannot be read as a video",
    "cut-in-last-packets.mp4": "cannot be read as a video",
    "fast-cut-in-header.mp4": "no streams at all",
    "fast-cut-in-middle.mp4": "truncated or damaged: video data ends after",
    "garbled-heavily.mp4": "video packets read are corrupt",
    "garbled.mkv": "truncated or damaged: data ends at",
    "audio-only.mp4": "no video stream, only audio",
    "one-frame.mp4": "only 1 decodable frame(s), fewer than the 4 to sample",
    "three-frames.mp4": "only 3 decodable frame(s), fewer than the 4 to sample",
    "loop.mp4": "symbolic link loop",
    "dangling.mp4": "broken symbolic link",
    "io-error.mp4": "cannot read: Input/output error",
    "caf\\xe9 latin-1.mp4": "path is not valid UTF-8",
    "other/clip.mp4": "video_id clip.mp4 is already taken by",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """``data/`` with one file per case (and a folder named like a video), and
    ``other/clip.mp4``: a different file with the name of ``data/clip.mp4``."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / SPLIT
    data.mkdir()
    (root / "other").mkdir()
    clip = talking_head_clip(data / "clip.mp4", seconds=3.0)
    fast = _remux(clip, root / "fast.mp4", {"movflags": "faststart"})  # index first, as web downloads have it
    index_start = clip.read_bytes().rfind(b"moov") - 4  # PyAV writes the index last
    files = {
        "no-audio.mp4": talking_head_clip(data / "no-audio.mp4", seconds=1.0, with_audio=False),
        "short.mp4": talking_head_clip(data / "short.mp4", seconds=0.4, frequency=330.0),
        "long.mp4": _long_clip(data / "long.mp4"),
        "portrait.mp4": _encode(data / "portrait.mp4", _looks(180, 320, 25, face_height=0.6)),
        "tiny.mp4": _encode(
            data / "tiny.mp4", _looks(97, 61, 25), pixel_format="yuv444p"
        ),  # x264 takes odd sizes only without chroma subsampling
        "odd.mp4": _encode(
            data / "odd.mp4", _looks(161, 119, 25), codec="mpeg4"
        ),  # 4:2:0 at odd sizes: mpeg4 pads internally
        "gray.mkv": _encode(
            data / "gray.mkv", _looks(64, 48, 25), codec="ffv1", pixel_format="gray"
        ),  # h264 decoders hand gray back as yuv420p
        "ten-bit.mp4": _encode(data / "ten-bit.mp4", _looks(64, 48, 25), pixel_format="yuv420p10le"),
        "variable-rate.mp4": _encode(
            data / "variable-rate.mp4",
            _looks(64, 48, 30),
            times_ms=np.cumsum([0] + [200 if index % 3 == 0 else 40 for index in range(29)]),
        ),
        # Portrait content stored as landscape pixels plus a rotation tag, as phones record it.
        "rotated.mp4": _encode(
            data / "rotated.mp4",
            [np.ascontiguousarray(np.rot90(frame, k=-1)) for frame in _looks(180, 320, 25, face_height=0.9)],
            rotation=90,
        ),
        # Timestamps from 10 s on, as in a clip cut from a longer recording without re-timing.
        "late-start.mkv": _encode(data / "late-start.mkv", _looks(64, 48, 50), times_ms=range(10000, 12000, 40)),
        "late-start.mp4": _encode(data / "late-start.mp4", _looks(64, 48, 50), times_ms=range(10000, 12000, 40)),
        "garbled-lightly.mp4": _garble(clip, data / "garbled-lightly.mp4", 0.55, 300),
        "fast-cut-in-last-packets.mp4": _cut(fast, data / "fast-cut-in-last-packets.mp4", fast.stat().st_size - 300),
        QUOTED_NAME: talking_head_clip(data / QUOTED_NAME, seconds=1.0, frequency=250.0),
        "empty.mp4": _cut(clip, data / "empty.mp4", 0),
        "random.mp4": data / "random.mp4",
        "text.mp4": data / "text.mp4",
        "cut-in-header.mp4": _cut(clip, data / "cut-in-header.mp4", 100),
        "cut-in-middle.mp4": _cut(clip, data / "cut-in-middle.mp4", clip.stat().st_size // 2),
        "cut-in-last-packets.mp4": _cut(clip, data / "cut-in-last-packets.mp4", index_start - 200),
        "fast-cut-in-header.mp4": _cut(fast, data / "fast-cut-in-header.mp4", 100),
        "fast-cut-in-middle.mp4": _cut(fast, data / "fast-cut-in-middle.mp4", fast.stat().st_size // 2),
        "garbled-heavily.mp4": _garble(clip, data / "garbled-heavily.mp4", 0.3, clip.stat().st_size // 3),
        "garbled.mkv": _garble(_remux(clip, root / "clip.mkv"), data / "garbled.mkv", 0.5, 2000),
        "audio-only.mp4": _audio_only(data / "audio-only.mp4"),
        "one-frame.mp4": _encode(data / "one-frame.mp4", _looks(64, 48, 1)),
        "three-frames.mp4": _encode(data / "three-frames.mp4", _looks(64, 48, 3)),
        "loop.mp4": data / "loop.mp4",
        "dangling.mp4": data / "dangling.mp4",
        "io-error.mp4": data / "io-error.mp4",
        "caf\\xe9 latin-1.mp4": data / NON_UTF8_NAME,
        "other/clip.mp4": talking_head_clip(root / "other" / "clip.mp4", seconds=1.0, brightness=0.7),
    }
    files["random.mp4"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["text.mp4"].write_text("This is a text file renamed .mp4.\n" * 100)
    files["loop.mp4"].symlink_to("loop.mp4")
    files["dangling.mp4"].symlink_to(root / "gone.mp4")
    # Root reads any file whatever its mode; the kernel refuses to read the start of a
    # process's own memory to everyone, with a real I/O error.
    files["io-error.mp4"].symlink_to("/proc/self/mem")
    shutil.copyfile(files["no-audio.mp4"], files["caf\\xe9 latin-1.mp4"])
    (data / "folder.mp4").mkdir()
    (data / "folder.mp4" / "notes.txt").write_text("a folder named like a video")
    return {"root": root, "clip": clip, "fast": fast, **files}


@pytest.fixture(scope="module")
def extraction(corpus, tmp_path_factory):
    """One real extraction run over the whole corpus."""
    cache_dir = tmp_path_factory.mktemp("cache")
    options = ExtractOptions.from_dict({"frames": FRAMES, "crop_size": 32, "weights": "none", "jobs": 1})
    summary = extract_to_cache(
        [str(corpus["root"] / SPLIT), str(corpus["root"] / "other")], cache_dir, [], options, show_progress=False
    )
    arrays = CacheReader(cache_dir).read(
        SPLIT, ("video_id", "frame_times", "face_boxes", "face_found", "face_crops", "audio_features", "has_audio")
    )
    records = {
        video_id: {name: values[row] for name, values in arrays.items()}
        for row, video_id in enumerate(arrays["video_id"])
    }
    return summary, records


def _case(failure_path: str, root: Path) -> str:
    """The corpus key of a failure: the file name inside ``data/``, else the path from the root."""
    relative = Path(failure_path).relative_to(root)
    return relative.name if relative.parent.name == SPLIT else str(relative)


def test_the_run_caches_every_usable_video_and_records_every_other(extraction, corpus):
    summary, records = extraction
    assert sorted(records) == sorted(PROCESSED)
    assert sorted(_case(failure.path, corpus["root"]) for failure in summary.failures) == sorted(FAILED)
    assert summary.extracted == len(PROCESSED) and not summary.interrupted


@pytest.mark.parametrize("name", sorted(FAILED))
def test_a_failure_has_a_one_line_reason_saying_what_went_wrong(extraction, corpus, name):
    summary, _ = extraction
    (failure,) = [failure for failure in summary.failures if _case(failure.path, corpus["root"]) == name]
    assert FAILED[name] in failure.reason
    assert "\n" not in failure.reason and len(failure.reason) < 200


@pytest.mark.parametrize("name", sorted(PROCESSED))
def test_a_processed_video_has_sane_frames_and_times_from_its_first_frame(extraction, name):
    _, records = extraction
    record = records[name]
    duration = PROCESSED[name]
    segment = duration / FRAMES
    times = record["frame_times"]
    assert times.shape == (FRAMES,) and np.all(np.diff(times) > 0)
    # Each sample lies in its own segment, counted from the first frame.
    assert np.all(times >= np.arange(FRAMES) * segment - 0.05) and np.all(
        times <= (np.arange(FRAMES) + 1) * segment + 0.05
    )
    crops = record["face_crops"]
    assert crops.shape == (FRAMES, 32, 32, 3) and crops.dtype == np.uint8
    assert np.all(crops.reshape(FRAMES, -1).std(axis=1) > 1.0)  # real pictures, not blank or constant
    assert record["audio_features"].shape == (FRAMES, 68) and np.all(np.isfinite(record["audio_features"]))


def test_a_video_without_sound_gets_zero_audio_features(extraction):
    _, records = extraction
    assert not records["no-audio.mp4"]["has_audio"] and not records["no-audio.mp4"]["audio_features"].any()
    assert records["clip.mp4"]["has_audio"] and records["clip.mp4"]["audio_features"].any()


def test_a_grayscale_source_gives_gray_rgb_crops(extraction):
    _, records = extraction
    crops = records["gray.mkv"]["face_crops"].astype(int)
    assert np.array_equal(crops[..., 0], crops[..., 1]) and np.array_equal(crops[..., 1], crops[..., 2])


def test_a_rotated_video_is_searched_upright(extraction):
    _, records = extraction
    record = records["rotated.mp4"]
    # The Haar cascade finds only upright faces; the boxes lie in the upright 180x320
    # frame, not in the stored 320x180 one.
    assert record["face_found"].any()
    boxes = record["face_boxes"]
    assert np.all(boxes[:, 0] + boxes[:, 2] <= 180) and np.all(boxes[:, 1] + boxes[:, 3] <= 320)


def test_the_second_file_of_one_name_is_refused_naming_the_first(extraction, corpus):
    summary, records = extraction
    (failure,) = [failure for failure in summary.failures if failure.path == str(corpus["other/clip.mp4"])]
    assert str(corpus["clip"]) in failure.reason and "rename one of them" in failure.reason
    assert records["clip.mp4"]["has_audio"]  # the first one keeps the name


def test_upright_frames_match_opencv_which_applies_the_rotation_tag_itself(corpus):
    decoded = decode(corpus["rotated.mp4"], DECODING)
    assert decoded.frames.shape == (FRAMES, 320, 180, 3)
    assert locate_faces(decoded.frames, FaceOptions()).found.any()
    stored = np.ascontiguousarray(np.rot90(decoded.frames, k=-1, axes=(1, 2)))
    assert not locate_faces(stored, FaceOptions()).found.any()  # as stored
    capture = cv2.VideoCapture(str(corpus["rotated.mp4"]))
    reference = []
    while (grabbed := capture.read())[0]:
        reference.append(cv2.cvtColor(grabbed[1], cv2.COLOR_BGR2RGB))
    capture.release()
    for time, frame in zip(decoded.frame_times, decoded.frames):
        assert np.array_equal(frame, reference[round(time * 25)])


@pytest.mark.parametrize("name", ["late-start.mkv", "late-start.mp4"])
def test_timestamps_starting_late_count_from_the_first_frame(corpus, name):
    decoded = decode(corpus[name], DECODING)
    assert decoded.duration == pytest.approx(2.0)
    np.testing.assert_allclose(decoded.frame_times, (np.arange(FRAMES) + 0.5) * 0.5, atol=0.021)


def test_variable_frame_rate_takes_the_frame_showing_at_each_sample_time(corpus):
    path = corpus["variable-rate.mp4"]
    with av.open(str(path)) as container:
        shown = np.array([frame.time for frame in container.decode(video=0)])
    decoded = decode(path, DECODING)
    for target, time in zip((np.arange(FRAMES) + 0.5) * decoded.duration / FRAMES, decoded.frame_times):
        assert time == pytest.approx(shown[np.abs(shown - target).argmin()], abs=1e-4)


@pytest.mark.parametrize("keep", [0.01, 0.05, 0.25, 0.5, 0.75])
def test_an_index_first_file_cut_short_is_refused_as_truncated(corpus, tmp_path, keep):
    fast = corpus["fast"]
    path = _cut(fast, tmp_path / "cut.mp4", int(fast.stat().st_size * keep))
    with pytest.raises(VideoError, match="no streams at all|truncated"):
        decode(path, DECODING)


def test_an_index_first_file_missing_only_its_tail_is_decoded(corpus, tmp_path):
    fast = corpus["fast"]
    path = _cut(fast, tmp_path / "cut.mp4", int(fast.stat().st_size * 0.97))
    decoded = decode(path, DECODING)
    assert 3.0 - TRUNCATION_TOLERANCE <= decoded.duration <= 3.0


def test_an_index_last_file_cut_anywhere_cannot_be_opened(corpus, tmp_path):
    clip = corpus["clip"]
    for keep in (0.05, 0.5, 0.95):
        path = _cut(clip, tmp_path / "cut.mp4", int(clip.stat().st_size * keep))
        with pytest.raises(VideoError, match="cannot be read as a video"):
            decode(path, DECODING)


def test_a_lightly_garbled_file_decodes_what_it_can(corpus):
    with av.open(str(corpus["garbled-lightly.mp4"])) as container:
        video = container.streams.video[0]
        undecodable = 0
        for packet in container.demux(video):
            try:
                packet.decode()
            except av.error.InvalidDataError:
                undecodable += 1
    assert undecodable > 0  # the damage is real: some packets cannot be decoded
    decoded = decode(corpus["garbled-lightly.mp4"], DECODING)
    assert decoded.frames.shape == (FRAMES, 240, 320, 3) and decoded.duration == pytest.approx(3.0)


def test_a_resolution_change_mid_stream_keeps_the_first_size(tmp_path):
    path = tmp_path / "switch.ts"
    looks = {size: _looks(*size, 25) for size in ((64, 48), (96, 64))}
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        # Transport streams repeat the codec parameters in-band, so a second encoder of
        # another size can continue the same stream, as when recordings are concatenated.
        second = av.CodecContext.create("libx264", "w")
        second.width, second.height, second.pix_fmt = 96, 64, "yuv420p"
        second.time_base, second.framerate = Fraction(1, 25), Fraction(25)
        second.options = {"preset": "ultrafast"}  # no B-frames: timestamps stay in order across the switch
        for index, pixels in enumerate(looks[(64, 48)] + looks[(96, 64)]):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            if index < 25:
                container.mux(stream.encode(frame))
                continue
            if index == 25:
                container.mux(stream.encode())
            for packet in second.encode(frame):
                packet.stream = stream
                container.mux(packet)
        for packet in second.encode(None):
            packet.stream = stream
            container.mux(packet)
    decoded = decode(path, DECODING)
    assert decoded.frames.shape == (FRAMES, 48, 64, 3)
    assert decoded.duration == pytest.approx(2.0)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads and resets peak memory in Linux's /proc")
def test_decoding_ten_minutes_keeps_memory_bounded(tmp_path):
    width, height = MEMORY_CLIP_SIZE
    warm_up = long_clip_with_sound(tmp_path / "a-warm-up.mp4", FRAMES, fps=LONG_FPS, width=width, height=height)
    short = long_clip_with_sound(tmp_path / "b-ten-seconds.mp4", 10, fps=LONG_FPS, width=width, height=height)
    long = long_clip_with_sound(tmp_path / "c-ten-minutes.mp4", LONG_SECONDS, fps=LONG_FPS, width=width, height=height)
    # One process extracts the three in turn, one video per shard and per batch; see extraction_growths.
    flags = [
        "--weights",
        "none",
        "--crop-size",
        "32",
        "--frames",
        str(FRAMES),
        "--batch-size",
        str(FRAMES),
        "--jobs",
        "1",
    ]
    sound_track = SOUND_SAMPLE_BYTES * RATE * (LONG_SECONDS - 10)
    # Decoding, the audio features and, when the track is kept, the record and its shard's
    # writing all hold it once.
    for keep in ("--no-audio", "--keep-audio"):
        work = tmp_path / keep.lstrip("-")
        work.mkdir()
        short_growth, long_growth = extraction_growths([warm_up, short, long], work, [*flags, keep])
        assert long_growth - short_growth < sound_track + LONG_MEMORY_BUDGET, (
            f"{keep}: 10 minutes with sound took {(long_growth - short_growth) / 2**20:.0f} MiB more than 10 s "
            f"(the int16 sound itself: {sound_track / 2**20:.0f} MiB, allowed once"
            f" and {LONG_MEMORY_BUDGET / 2**20:.0f} MiB beyond)"
        )
        assert CacheReader(work / "cache").splits() == {tmp_path.name: 3}


def _decode_outcome(path: Path, skip_frames: bool):
    """What `decode` makes of a file: the decoded video, or its one-line reason."""
    try:
        return decode(path, DECODING, skip_frames=skip_frames)
    except VideoError as error:
        return str(error)


@pytest.mark.parametrize("name", sorted({**PROCESSED, **FAILED}))
def test_skipping_frames_gives_the_full_decodes_result_or_reason(corpus, name):
    path = corpus.get(name, corpus["root"] / SPLIT / name)  # data/clip.mp4 is the corpus' "clip"
    skipped, full = _decode_outcome(path, True), _decode_outcome(path, False)
    if isinstance(full, str):
        assert skipped == full
        return
    assert skipped.frames.shape == full.frames.shape and skipped.frames.tobytes() == full.frames.tobytes()
    assert skipped.frame_times.tobytes() == full.frame_times.tobytes() and skipped.duration == full.duration
    assert (skipped.audio is None and full.audio is None) or skipped.audio.tobytes() == full.audio.tobytes()


def _fails_within(seconds: float, work) -> object:
    """Run ``work`` in a daemon thread, so a read that blocks fails the test instead of hanging it."""
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(work()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_a_named_pipe_called_like_a_video_is_refused_without_reading_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "pipe.mp4")
    videos, failures = _fails_within(10, lambda: discover([str(data), str(data / "pipe.mp4")]))
    assert videos == []
    assert [failure.reason for failure in failures] == ["a named pipe, not a regular file"] * 2


IDENTIFY_AND_PRINT = """
import json, sys
from extract.inputs import discover, identify
videos, failures = discover(sys.argv[1:])
jobs, unreadable = identify(videos)
print(json.dumps([len(jobs), [failure.reason for failure in failures + unreadable]]))
"""


def test_a_file_without_read_permission_is_a_failure(tmp_path, run_obeying_file_modes):
    locked = talking_head_clip(tmp_path / "locked.mp4", seconds=0.4)
    locked.chmod(0)
    try:
        jobs, reasons = json.loads(run_obeying_file_modes(IDENTIFY_AND_PRINT, str(locked)))
    finally:
        locked.chmod(0o644)
    assert jobs == 0 and reasons == ["cannot read: Permission denied"]


def test_a_folder_named_like_a_video_given_as_input_is_an_empty_folder(corpus):
    videos, failures = discover([str(corpus["root"] / SPLIT / "folder.mp4")])
    assert videos == [] and failures[0].reason.startswith("folder holds no videos")

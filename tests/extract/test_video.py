"""extract/video.py: sampling times and PyAV decoding of the sampled frames."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from extract.synthetic import (
    CHALEARN_X264,
    chalearn_like_clip,
    compose_frame,
    face_image,
    talking_head_clip,
    tone,
    write_clip,
    write_timed_clip,
)
from extract.video import DecodeOptions, VideoError, decode, sample_times


@pytest.mark.parametrize("segments,per_segment", [(1, 1), (10, 1), (4, 3)])
def test_centre_sampling_takes_each_sub_segment_centre(segments, per_segment):
    duration = 15.3
    times = sample_times(duration, segments, per_segment, "centre")
    slot = duration / (segments * per_segment)
    assert times.shape == (segments * per_segment,)
    np.testing.assert_allclose(times, (np.arange(segments * per_segment) + 0.5) * slot)


def test_random_sampling_stays_inside_its_sub_segment_and_is_seeded():
    duration, segments, per_segment = 12.0, 6, 2
    first = sample_times(duration, segments, per_segment, "random", np.random.default_rng(7))
    again = sample_times(duration, segments, per_segment, "random", np.random.default_rng(7))
    other = sample_times(duration, segments, per_segment, "random", np.random.default_rng(8))
    slot = duration / (segments * per_segment)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.all(np.floor(first / slot) == np.arange(segments * per_segment))


def _all_frames(path):
    with av.open(str(path)) as container:
        return [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def test_decode_returns_the_frame_nearest_each_sample_time(face_clip):
    decoded = decode(face_clip, DecodeOptions(frames=10))
    reference = _all_frames(face_clip)
    reference_times = np.array([time for time, _ in reference])
    assert decoded.frames.shape == (10, 240, 320, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_times.dtype == np.float32
    for target, time, frame in zip(
        sample_times(decoded.duration, 10, 1, "centre"), decoded.frame_times, decoded.frames
    ):
        nearest = int(np.abs(reference_times - target).argmin())
        assert time == pytest.approx(reference_times[nearest], abs=1e-4)
        assert np.array_equal(frame, reference[nearest][1])


def test_decode_resamples_the_sound_to_mono_at_the_requested_rate(face_clip):
    decoded = decode(face_clip, DecodeOptions(frames=4))
    assert decoded.audio.ndim == 1
    assert len(decoded.audio) / 16000 == pytest.approx(decoded.duration, abs=0.1)
    assert (
        decoded.audio.dtype == np.int16
    )  # pyAudioAnalysis expects int16-range samples; 2 bytes each keeps long tracks small
    assert np.abs(decoded.audio.astype(np.int32)).max() > 1000


def _sound_as_pyav_decodes_it(path, rate):
    """(num_samples,) int16: the whole sound track decoded and resampled by PyAV in one go."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(str(path)) as container:
        chunks = [
            chunk.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for chunk in resampler.resample(frame)
        ]
    return np.concatenate(chunks + [chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(None)])


@pytest.mark.parametrize("sound_seconds", [3.0, 9.0])
def test_the_sound_track_is_kept_whole_as_int16_even_when_it_outlasts_the_video(tmp_path, sound_seconds):
    # 9 s of sound under 3 s of video outgrows the room made for the video's length.
    frames = [compose_frame(face_image(), 64, 48, (0.5, 0.5), 0.9, 0.8 + 0.01 * index) for index in range(75)]
    path = write_clip(tmp_path / "sound.mp4", frames, tone(sound_seconds, 300.0, 0.4), options={"preset": "ultrafast"})
    decoded = decode(path, DecodeOptions(frames=4))
    assert decoded.duration == pytest.approx(3.0)
    assert decoded.audio.dtype == np.int16 and np.array_equal(decoded.audio, _sound_as_pyav_decodes_it(path, 16000))
    assert len(decoded.audio) / 16000 == pytest.approx(sound_seconds, abs=0.1)


def test_k_frames_per_segment_are_segment_major(face_clip):
    decoded = decode(face_clip, DecodeOptions(frames=4, frames_per_segment=3))
    assert decoded.frames.shape[0] == 12
    assert np.all(np.diff(decoded.frame_times) > 0)
    segment = np.floor(decoded.frame_times / (decoded.duration / 4))
    assert np.array_equal(segment, np.repeat(np.arange(4), 3))


def test_video_without_sound_track_has_no_audio(tmp_path):
    path = talking_head_clip(tmp_path / "silent.mp4", seconds=1.0, with_audio=False)
    assert decode(path, DecodeOptions(frames=4)).audio is None


def test_fewer_frames_than_samples_is_an_error(tmp_path):
    frames = [np.full((64, 64, 3), 100, np.uint8)] * 3
    path = write_clip(tmp_path / "three-frames.mp4", frames)
    with pytest.raises(VideoError, match="fewer than the 10"):
        decode(path, DecodeOptions(frames=10))


@pytest.mark.parametrize("content", [b"", b"this is not a video\n", bytes(range(256)) * 40])
def test_not_a_video_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as raised:
        decode(path, DecodeOptions(frames=4))
    assert "\n" not in str(raised.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        decode(path, DecodeOptions(frames=4))


def test_a_stream_without_timestamps_is_timed_by_its_frame_rate(tmp_path):
    path = tmp_path / "raw.h264"  # an Annex B elementary stream: packets carry no timestamps
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(50):
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 2 * index, np.uint8), format="rgb24"))
            )
        container.mux(stream.encode())
    decoded = decode(path, DecodeOptions(frames=4))
    assert decoded.duration == pytest.approx(2.0)
    np.testing.assert_allclose(decoded.frame_times, [0.24, 0.76, 1.24, 1.76], atol=1e-6)


def test_corrupt_audio_packets_become_silence_of_their_length(face_clip, tmp_path):
    with av.open(str(face_clip)) as container:
        audio_packets = [
            (packet.pos, packet.size) for packet in container.demux(container.streams.audio[0]) if packet.size
        ]
    data = bytearray(face_clip.read_bytes())
    for position, size in audio_packets[10:13]:
        data[position : position + size] = (
            np.random.default_rng(position).integers(0, 256, size, dtype=np.uint8).tobytes()
        )
    damaged = tmp_path / "damaged-sound.mp4"
    damaged.write_bytes(bytes(data))
    clean = decode(face_clip, DecodeOptions(frames=4))
    decoded = decode(damaged, DecodeOptions(frames=4))
    # Dropping the three packets would shorten the sound by ~1100 samples and shift
    # everything after them; silence in their place keeps the length and the rest.
    assert abs(len(decoded.audio) - len(clean.audio)) < 10
    later, lags = slice(30000, 38000), range(-20, 21)  # samples well after the damage
    damaged_sound, clean_sound = (
        decoded.audio.astype(np.float64),
        clean.audio.astype(np.float64),
    )  # int16 products overflow
    matches = [np.dot(damaged_sound[later.start + lag : later.stop + lag], clean_sound[later]) for lag in lags]
    assert abs(lags[int(np.argmax(matches))]) <= 2  # the sound after the damage is where it was
    assert np.array_equal(decoded.frames, clean.frames)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_read_error_is_reported_as_one_not_as_a_bad_video(tmp_path):
    # Reading the start of a process's own memory fails with EIO even for root.
    (tmp_path / "io-error.mp4").symlink_to("/proc/self/mem")
    (tmp_path / "folder.mp4").mkdir()
    for name, reason in (
        ("io-error.mp4", "cannot open: Input/output error"),
        ("folder.mp4", "cannot open: Is a directory"),
    ):
        with pytest.raises(VideoError, match=reason):
            decode(tmp_path / name, DecodeOptions(frames=4))


# Decoding only what sampling needs: skipping must never change the result.


def _assert_same_result(skipped, full):
    """Byte for byte: chosen frames, their times, the duration and the sound."""
    assert skipped.frames.shape == full.frames.shape and skipped.frames.tobytes() == full.frames.tobytes()
    assert skipped.frame_times.tobytes() == full.frame_times.tobytes()
    assert skipped.duration == full.duration
    assert (skipped.audio is None) == (full.audio is None)
    assert skipped.audio is None or skipped.audio.tobytes() == full.audio.tobytes()


def _both_ways(path, segments, per_segment, mode, threads=0):
    """(skipping, full) decodes of one video, random sampling drawn from the same seed."""
    sampling = DecodeOptions(frames=segments, frames_per_segment=per_segment, sampling=mode)
    return [decode(path, sampling, np.random.default_rng(5), threads, skip_frames=skip) for skip in (True, False)]


def _moving_faces(width, height, count):
    """Frames of the astronaut's face drifting and brightening, so that x264 chooses B-frames."""
    face = face_image()
    return [
        compose_frame(face, width, height, (0.5 + 0.03 * np.sin(index / 4), 0.5), 0.8, 0.8 + 0.2 * index / count)
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory):
    """6 s of 320x240 at 29.97 fps with the ChaLearn clips' x264 settings, and sound."""
    return chalearn_like_clip(tmp_path_factory.mktemp("gop") / "gop.mp4", seconds=6.0, width=320, height=240)


def _decode_all(path, skip):
    """(pts, RGB pixels) of every frame PyAV decodes with ``skip_frame=skip``."""
    with av.open(str(path)) as container:
        container.streams.video[0].codec_context.skip_frame = skip
        return [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def test_the_generated_clip_has_the_data_sets_trap_where_p_frames_reference_b_frames(gop_clip):
    every = dict(_decode_all(gop_clip, "DEFAULT"))
    without_b = dict(_decode_all(gop_clip, "BIDIR"))
    without_nonref = dict(_decode_all(gop_clip, "NONREF"))
    # Skipping every B-frame changes frames that are still decoded; skipping the
    # non-reference ones changes none: the case the skipping must get right.
    assert any(not np.array_equal(pixels, every[pts]) for pts, pixels in without_b.items())
    assert len(without_nonref) < len(every) and all(
        np.array_equal(pixels, every[pts]) for pts, pixels in without_nonref.items()
    )


@pytest.mark.parametrize(
    "segments, per_segment, mode, threads",
    [(10, 1, "centre", 1), (4, 3, "random", 0), (30, 1, "centre", 0), (1, 1, "centre", 1)],
)
def test_skipping_frames_picks_exactly_the_frames_of_the_full_decode(gop_clip, segments, per_segment, mode, threads):
    skipped, full = _both_ways(gop_clip, segments, per_segment, mode, threads)
    _assert_same_result(skipped, full)
    assert skipped.decoded_frames < full.decoded_frames


def test_skipping_frames_on_the_chalearn_clips_changes_nothing(chalearn):
    clips = sorted(chalearn.glob("*/*.mp4"))
    assert clips
    for clip in clips:
        for segments, per_segment, mode in ((10, 1, "centre"), (4, 3, "random")):
            skipped, full = _both_ways(clip, segments, per_segment, mode, threads=1)
            _assert_same_result(skipped, full)
            assert skipped.decoded_frames < full.decoded_frames, clip.name


# Variable frame rate (a long pause every third frame), a rotation tag, and timestamps
# starting at 10 s in both containers that keep them, all with B-frames that reference B-frames.
ODD_TIMINGS = {
    "variable-rate.mp4": (np.cumsum([0] + [200 if index % 3 == 0 else 40 for index in range(89)]), None),
    "rotated.mp4": (range(0, 3600, 40), 90),
    "late-start.mp4": (range(10000, 13600, 40), None),
    "late-start.mkv": (range(10000, 13600, 40), None),
}


@pytest.mark.parametrize("name", sorted(ODD_TIMINGS))
def test_skipping_frames_changes_nothing_with_odd_timing_or_rotation(tmp_path, name):
    times_ms, rotation = ODD_TIMINGS[name]
    path = write_timed_clip(
        tmp_path / name, _moving_faces(160, 96, len(times_ms)), times_ms, rotation=rotation, options=CHALEARN_X264
    )
    skipped, full = _both_ways(path, 10, 1, "centre")
    _assert_same_result(skipped, full)
    assert skipped.decoded_frames < full.decoded_frames


def _annex_b_clip(path):
    """An h264 elementary stream with B-frames: its packets carry no timestamps."""
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25, options=CHALEARN_X264)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for pixels in _moving_faces(160, 96, 60):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


FALLBACK_CLIPS = {
    # Another codec, whose "non-reference" the decoder defines its own way.
    "mpeg4-with-b-frames.mp4": lambda path: write_timed_clip(
        path, _moving_faces(160, 96, 60), range(0, 2400, 40), codec="mpeg4", options={"bf": "2"}
    ),
    "no-timestamps.h264": _annex_b_clip,
}


@pytest.mark.parametrize("name", sorted(FALLBACK_CLIPS))
def test_a_stream_without_safe_structure_is_decoded_in_full(tmp_path, name):
    path = FALLBACK_CLIPS[name](tmp_path / name)
    skipped, full = _both_ways(path, 10, 1, "centre")
    _assert_same_result(skipped, full)
    assert skipped.decoded_frames == full.decoded_frames
    assert len(_decode_all(path, "NONREF")) < len(_decode_all(path, "DEFAULT"))  # there were frames to skip


def test_a_corrupt_reference_frame_falls_back_to_the_full_decode(gop_clip, tmp_path):
    with av.open(str(gop_clip)) as container:
        types = {frame.pts: frame.pict_type for frame in container.decode(video=0)}
    with av.open(str(gop_clip)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
        (position, size) = next(
            (packet.pos, packet.size) for packet in packets[len(packets) // 2 :] if types[packet.pts] == PictureType.P
        )
    data = bytearray(gop_clip.read_bytes())
    data[position + 8 : position + size] = (
        np.random.default_rng(size).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    )
    damaged = tmp_path / "damaged-p-frame.mp4"
    damaged.write_bytes(bytes(data))
    skipped, full = _both_ways(damaged, 10, 1, "centre")
    _assert_same_result(skipped, full)
    # The decoder's complaint stopped the skipping, so every frame was decoded and counted.
    assert skipped.decoded_frames == full.decoded_frames

"""extract/video.py: sampling times and PyAV decoding of the sampled frames."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from extract.synthetic import talking_head_clip, write_clip
from extract.video import VideoError, decode, sample_times


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
    decoded = decode(face_clip, 10, 1, "centre", 16000)
    reference = _all_frames(face_clip)
    reference_times = np.array([time for time, _ in reference])
    assert decoded.frames.shape == (10, 240, 320, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_times.dtype == np.float32
    for target, time, frame in zip(sample_times(decoded.duration, 10, 1, "centre"), decoded.frame_times, decoded.frames):
        nearest = int(np.abs(reference_times - target).argmin())
        assert time == pytest.approx(reference_times[nearest], abs=1e-4)
        assert np.array_equal(frame, reference[nearest][1])


def test_decode_resamples_the_sound_to_mono_at_the_requested_rate(face_clip):
    decoded = decode(face_clip, 4, 1, "centre", 16000)
    assert decoded.audio.ndim == 1
    assert len(decoded.audio) / 16000 == pytest.approx(decoded.duration, abs=0.1)
    assert 1000 < np.abs(decoded.audio).max() <= 32768  # int16 range, as pyAudioAnalysis expects


def test_k_frames_per_segment_are_segment_major(face_clip):
    decoded = decode(face_clip, 4, 3, "centre", 16000)
    assert decoded.frames.shape[0] == 12
    assert np.all(np.diff(decoded.frame_times) > 0)
    segment = np.floor(decoded.frame_times / (decoded.duration / 4))
    assert np.array_equal(segment, np.repeat(np.arange(4), 3))


def test_video_without_sound_track_has_no_audio(tmp_path):
    path = talking_head_clip(tmp_path / "silent.mp4", seconds=1.0, with_audio=False)
    assert decode(path, 4, 1, "centre", 16000).audio is None


def test_fewer_frames_than_samples_is_an_error(tmp_path):
    frames = [np.full((64, 64, 3), 100, np.uint8)] * 3
    path = write_clip(tmp_path / "three-frames.mp4", frames)
    with pytest.raises(VideoError, match="fewer than the 10"):
        decode(path, 10, 1, "centre", 16000)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n", bytes(range(256)) * 40])
def test_not_a_video_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as raised:
        decode(path, 4, 1, "centre", 16000)
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
        decode(path, 4, 1, "centre", 16000)


def test_a_stream_without_timestamps_is_timed_by_its_frame_rate(tmp_path):
    path = tmp_path / "raw.h264"  # an Annex B elementary stream: packets carry no timestamps
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(50):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 2 * index, np.uint8), format="rgb24")))
        container.mux(stream.encode())
    decoded = decode(path, 4, 1, "centre", 16000)
    assert decoded.duration == pytest.approx(2.0)
    np.testing.assert_allclose(decoded.frame_times, [0.24, 0.76, 1.24, 1.76], atol=1e-6)


def test_corrupt_audio_packets_become_silence_of_their_length(face_clip, tmp_path):
    with av.open(str(face_clip)) as container:
        audio_packets = [(packet.pos, packet.size) for packet in container.demux(container.streams.audio[0]) if packet.size]
    data = bytearray(face_clip.read_bytes())
    for position, size in audio_packets[10:13]:
        data[position : position + size] = np.random.default_rng(position).integers(0, 256, size, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged-sound.mp4"
    damaged.write_bytes(bytes(data))
    clean = decode(face_clip, 4, 1, "centre", 16000)
    decoded = decode(damaged, 4, 1, "centre", 16000)
    # Dropping the three packets would shorten the sound by ~1100 samples and shift
    # everything after them; silence in their place keeps the length and the rest.
    assert abs(len(decoded.audio) - len(clean.audio)) < 10
    later, lags = slice(30000, 38000), range(-20, 21)  # samples well after the damage
    matches = [np.dot(decoded.audio[later.start + lag : later.stop + lag], clean.audio[later]) for lag in lags]
    assert abs(lags[int(np.argmax(matches))]) <= 2  # the sound after the damage is where it was
    assert np.array_equal(decoded.frames, clean.frames)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_read_error_is_reported_as_one_not_as_a_bad_video(tmp_path):
    # Reading the start of a process's own memory fails with EIO even for root.
    (tmp_path / "io-error.mp4").symlink_to("/proc/self/mem")
    (tmp_path / "folder.mp4").mkdir()
    for name, reason in (("io-error.mp4", "cannot open: Input/output error"), ("folder.mp4", "cannot open: Is a directory")):
        with pytest.raises(VideoError, match=reason):
            decode(tmp_path / name, 4, 1, "centre", 16000)

"""extract/run.py: the whole extraction into a real cache, resume, failures, backends."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from dask.distributed import Client

from bench.cluster_bench import loopback_cluster
from bench.extract_bench import extract_command
from cache.labels import load_label_file
from cache.manifest import Index, shard_entry
from cache.reader import CacheReader
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, LABEL_NAMES, SCHEMA_VERSION, TRAITS
from cache.verify import repair, verify
from cache.writer import shard_name, shard_number
from common.errors import CacheError, ExitCode
from common.options import replace
from extract.config import ExtractOptions
from extract.run import extract_to_cache
from extract.synthetic import talking_head_clip

ALL = (
    "video_id",
    "face_embeddings",
    "audio_features",
    "frame_times",
    "face_boxes",
    "face_found",
    "has_audio",
    "face_crops",
    "source",
    "content_hash",
)


def _run(inputs, cache_dir, options, labels=()):
    return extract_to_cache([str(path) for path in inputs], cache_dir, list(labels), options, show_progress=False)


def _shard_digests(cache_dir: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(cache_dir.glob("shard-*.h5"))}


@pytest.fixture(scope="module")
def built(clip_folder, tmp_path_factory):
    """A cache of the four generated clips (4 frames, 32 px crops, random weights)."""
    options = ExtractOptions.from_dict(
        {"frames": 4, "crop_size": 32, "weights": "none", "jobs": 1, "videos_per_shard": 3}
    )
    cache_dir = tmp_path_factory.mktemp("cache")
    summary = _run([clip_folder / "train", clip_folder / "validation"], cache_dir, options)
    return cache_dir, options, summary


def test_every_video_is_cached_with_the_schema_shapes(built):
    cache_dir, options, summary = built
    assert (summary.extracted, summary.skipped, summary.failures) == (4, 0, [])
    reader = CacheReader(cache_dir)
    assert reader.splits() == {"train": 3, "validation": 1}
    arrays = reader.read("train", ALL)
    assert list(arrays["video_id"]) == ["train0.mp4", "train1.mp4", "train2.mp4"]
    assert arrays["face_embeddings"].shape == (3, 4, EMBEDDING_DIM) and arrays["face_embeddings"].dtype == np.float16
    assert arrays["audio_features"].shape == (3, 4, AUDIO_DIM) and arrays["audio_features"].dtype == np.float32
    assert arrays["frame_times"].shape == (3, 4) and arrays["face_boxes"].dtype == np.int32
    assert arrays["face_crops"].shape == (3, 4, 32, 32, 3) and arrays["face_crops"].dtype == np.uint8
    assert arrays["face_found"].mean() > 0.9 and arrays["has_audio"].all()
    assert np.all(arrays["face_boxes"][arrays["face_found"]][:, 2] > 0)


def test_shards_carry_schema_config_and_library_versions(built):
    cache_dir, options, _ = built
    reader = CacheReader(cache_dir)
    attributes = reader.shard_attributes()
    assert attributes["schema_version"] == SCHEMA_VERSION
    assert attributes["config_hash"] == reader.config_hash
    assert {"tensorflow", "keras", "av", "h5py"} <= set(attributes["library_versions"])
    assert reader.config == options.feature_config()
    assert len(list(cache_dir.glob("shard-*.h5"))) == 2  # 4 videos, 3 per shard


def test_cached_embeddings_equal_resnet50_run_directly_on_the_cached_crops(clip_folder, tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    weights = tmp_path / "resnet.weights.h5"
    model.save_weights(weights)
    options = ExtractOptions.from_dict({"frames": 4, "crop_size": 32, "weights": str(weights), "jobs": 1})
    _run([clip_folder / "validation"], tmp_path / "cache", options)
    arrays = CacheReader(tmp_path / "cache").read("validation", ("face_crops", "face_embeddings"))
    crops = arrays["face_crops"].reshape(-1, 32, 32, 3)
    expected = model.predict(keras.applications.resnet50.preprocess_input(crops.astype(np.float32)), verbose=0)
    np.testing.assert_allclose(
        arrays["face_embeddings"].reshape(-1, EMBEDDING_DIM).astype(np.float32), expected, rtol=2e-3, atol=2e-3
    )


def test_a_second_run_extracts_nothing_and_leaves_shards_byte_identical(built, clip_folder):
    cache_dir, options, _ = built
    before = _shard_digests(cache_dir)
    summary = _run([clip_folder / "train", clip_folder / "validation"], cache_dir, options)
    assert (summary.extracted, summary.skipped) == (0, 4)
    assert _shard_digests(cache_dir) == before


def test_a_different_config_is_refused_naming_the_difference(built, clip_folder):
    cache_dir, options, _ = built
    with pytest.raises(CacheError, match="frames: 4 -> 5"):
        _run([clip_folder / "train"], cache_dir, replace(options, frames=5))


def test_a_foreign_shard_in_the_index_is_refused_and_its_videos_extracted_after_repair(
    clip_folder, tiny_options, tmp_path
):
    inputs = [clip_folder / "train", clip_folder / "validation"]
    cache_dir = tmp_path / "cache"
    _run([clip_folder / "train"], cache_dir, tiny_options)
    _run([clip_folder / "validation"], tmp_path / "other", replace(tiny_options, frames=3))
    foreign = cache_dir / shard_name(1 + max(shard_number(path.name) for path in cache_dir.glob("shard-*.h5")))
    shutil.copyfile(next((tmp_path / "other").glob("shard-*.h5")), foreign)
    index = Index.load(cache_dir)
    index.shards.append(shard_entry(foreign))  # what a version that did not check config hashes indexed
    index.save(cache_dir)
    before = _shard_digests(cache_dir)

    with pytest.raises(CacheError) as caught:  # its video would count as cached, with 3 frames in a 4-frame cache
        _run(inputs, cache_dir, tiny_options)
    assert caught.value.exit_code == ExitCode.USAGE
    assert str(caught.value).startswith(f"{foreign}: foreign shard: built with config ")
    assert f"python -m cache verify {cache_dir} --repair" in str(caught.value)
    assert _shard_digests(cache_dir) == before

    repair(cache_dir, verify(cache_dir))  # the advice in the refusal
    summary = _run(inputs, cache_dir, tiny_options)
    assert (summary.extracted, summary.skipped, summary.cached) == (1, 3, 4)
    _run([clip_folder / "validation"], tmp_path / "clean", tiny_options)
    fields = ALL[1:-2]
    again, clean = (CacheReader(folder).read("validation", fields) for folder in (cache_dir, tmp_path / "clean"))
    for name in fields:
        np.testing.assert_array_equal(again[name], clean[name])


def test_renamed_copies_are_reused_and_changed_files_redone(clip_folder, tiny_options, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    shutil.copyfile(clip_folder / "train" / "train0.mp4", data / "a.mp4")
    shutil.copyfile(clip_folder / "train" / "train1.mp4", data / "b.mp4")
    cache_dir = tmp_path / "cache"
    _run([data], cache_dir, tiny_options)
    original = CacheReader(cache_dir).read("train", ("video_id", "face_embeddings"))
    (data / "a.mp4").rename(data / "renamed.mp4")
    talking_head_clip(data / "b.mp4", seconds=2.0, brightness=0.4, frequency=500.0)
    summary = _run([data], cache_dir, tiny_options)
    assert (summary.extracted, summary.reused, summary.skipped) == (1, 1, 0)
    after = CacheReader(cache_dir).read("train", ("video_id", "face_embeddings"))
    assert list(after["video_id"]) == ["a.mp4", "b.mp4", "renamed.mp4"]
    assert np.array_equal(after["face_embeddings"][2], original["face_embeddings"][0])
    assert not np.array_equal(after["face_embeddings"][1], original["face_embeddings"][1])


def test_broken_files_are_reported_and_good_videos_cached(clip_folder, tiny_options, tmp_path):
    data = tmp_path / "mixed"
    shutil.copytree(clip_folder / "train", data)
    (data / "empty.mp4").write_bytes(b"")
    (data / "text.mp4").write_text("hello\n")
    good = (clip_folder / "train" / "train0.mp4").read_bytes()
    (data / "truncated.mp4").write_bytes(good[: len(good) // 2])
    summary = _run([data], tmp_path / "cache", tiny_options)
    assert summary.extracted == 3
    assert sorted(Path(failure.path).name for failure in summary.failures) == ["empty.mp4", "text.mp4", "truncated.mp4"]
    assert all(failure.reason and "\n" not in failure.reason for failure in summary.failures)
    rows = (tmp_path / "cache" / "failures.csv").read_text().splitlines()
    assert rows[0] == "path,reason" and len(rows) == 4


def test_labels_are_attached_and_unlabelled_videos_kept(clip_folder, tiny_options, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,openness,neuroticism\ntrain0.mp4,0.25,0.75\n")
    _run([clip_folder / "train"], tmp_path / "cache", tiny_options, [labels])
    reader = CacheReader(tmp_path / "cache")
    matrix = reader.labels(["train0.mp4", "train1.mp4"])
    assert matrix[0, LABEL_NAMES.index("openness")] == 0.25 and matrix[0, LABEL_NAMES.index("neuroticism")] == 0.75
    assert np.isnan(matrix[0, LABEL_NAMES.index("extraversion")]) and np.isnan(matrix[1]).all()
    assert reader.splits() == {"train": 3}


def test_k_frames_per_segment_and_random_sampling_are_reproducible(clip_folder, tiny_options, tmp_path):
    options = replace(tiny_options, frames_per_segment=2, sampling="random", seed=4)
    _run([clip_folder / "validation"], tmp_path / "first", options)
    _run([clip_folder / "validation"], tmp_path / "second", options)
    first = CacheReader(tmp_path / "first").read("validation", ("frame_times", "face_embeddings", "audio_features"))
    second = CacheReader(tmp_path / "second").read("validation", ("frame_times", "face_embeddings", "audio_features"))
    assert first["face_embeddings"].shape == (1, 8, EMBEDDING_DIM) and first["audio_features"].shape == (
        1,
        4,
        AUDIO_DIM,
    )
    assert all(np.array_equal(first[name], second[name]) for name in first)
    slot, frame_period = 2.0 / 8, 1 / 25  # sub-segment and frame spacing of the 2 s, 25 fps clip
    times = first["frame_times"][0]
    assert np.all(times >= np.arange(8) * slot - frame_period) and np.all(
        times <= (np.arange(8) + 1) * slot + frame_period
    )


def _assert_same_cache(expected_dir: Path, actual_dir: Path) -> None:
    """Equal caches, except embeddings computed in other batches: equal within float16 precision."""
    expected_cache, actual_cache = CacheReader(expected_dir), CacheReader(actual_dir)
    assert expected_cache.splits() == actual_cache.splits() and expected_cache.config_hash == actual_cache.config_hash
    for split in expected_cache.splits():
        expected, actual = expected_cache.read(split, ALL[:-2]), actual_cache.read(split, ALL[:-2])
        for name in expected:
            if name == "face_embeddings":
                np.testing.assert_allclose(
                    actual[name].astype(np.float32), expected[name].astype(np.float32), rtol=2e-3, atol=2e-3
                )
            else:
                np.testing.assert_array_equal(actual[name], expected[name])


def test_dask_backend_on_a_local_cluster_gives_the_same_cache_as_loky(clip_folder, tiny_options, tmp_path):
    inputs = [clip_folder / "train", clip_folder / "validation"]
    _run(inputs, tmp_path / "loky", replace(tiny_options, jobs=2))
    _run(inputs, tmp_path / "dask", replace(tiny_options, jobs=2, backend="dask"))
    _assert_same_cache(tmp_path / "loky", tmp_path / "dask")


def test_a_scheduler_and_workers_started_with_the_dask_command_line(clip_folder, tiny_options, tmp_path):
    inputs = [clip_folder / "train", clip_folder / "validation"]
    with loopback_cluster(tmp_path, workers=2) as address:
        summary = _run(inputs, tmp_path / "cluster", replace(tiny_options, backend="dask", scheduler=address))
        with Client(address) as client:  # the named cluster's own count of the tasks its workers ran
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert (summary.extracted, len(summary.failures)) == (4, 0), (tmp_path / "workers.log").read_text()[-2000:]
    assert len(executed) == 2 and sum(executed.values()) >= 1, executed
    _run(inputs, tmp_path / "loky", tiny_options)
    _assert_same_cache(tmp_path / "loky", tmp_path / "cluster")


def _extract_command(data: Path, cache_dir: Path, *flags: str) -> list[str]:
    return extract_command(data, cache_dir, "--jobs", "1", *flags)


# `python -m extract` in a fresh process that signals itself at one moment of its run. The
# moment is the COUNT-th occurrence of its phase's event, seen through the interpreter's
# own instrumentation, the code under test unchanged: audit events (an import, opening a
# file, a rename) and, from hashing on, a profile function (calls and returns).
# Just before signalling it writes the phase, what it hit and the ids then in index.json
# (the videos finished) to MARKS; after a first Ctrl-C it adds every video decoded later.
SIGNAL_AT_A_MOMENT = """
import atexit, json, os, runpy, signal, sys
from pathlib import Path

marks, phase, count, number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), getattr(signal, sys.argv[4])
cache_dir = Path(sys.argv[sys.argv.index("--cache") + 1])
del sys.argv[1:5]
seen, decoded, record = [], [], {}


def indexed():
    index = cache_dir / "index.json"
    return [name for shard in json.loads(index.read_text())["shards"] for name in shard["video_ids"]] if index.exists() else []


def hit(detail):
    seen.append(detail)
    if len(seen) == count:
        record.update(phase=phase, detail=detail, finished=indexed(), decoded=list(decoded))
        marks.write_text(json.dumps(record))
        os.kill(os.getpid(), number)


def audit(event, arguments):
    if phase == "start-up" and event == "import" and arguments[0] == "tensorflow":
        hit("import tensorflow")
    elif event == "open" and str(arguments[0]).endswith(".mp4"):
        if phase == "hashing":
            hit(f"open {Path(arguments[0]).name}")
        elif phase in PROFILED and sys.getprofile() is None:
            sys.setprofile(profile)  # from hashing on: imports run at full speed
    elif phase == "renaming" and event == "os.rename" and str(arguments[0]).endswith(".h5.tmp"):
        hit(f"rename {Path(arguments[0]).name}")
    elif phase == "rewriting the index" and event == "os.rename" and str(arguments[1]).endswith("index.json"):
        hit(f"rename {Path(arguments[0]).name}")


def profile(frame, event, argument):
    code = frame.f_code
    if event == "call" and code.co_name == "decode" and code.co_filename.endswith("video.py"):
        if phase == "decoding":
            hit(f"decode {Path(frame.f_locals['path']).name}")
    elif event == "c_call" and argument is os.fsync and code.co_name == "write_shard" and phase == "writing a shard":
        hit(f"fsync {Path(frame.f_locals['path']).name}")
    elif event == "return" and code.co_name == "prepare_video" and code.co_filename.endswith("worker.py"):
        decoded.append(frame.f_locals["job"].video_id)
        if phase == "decoded":
            hit(f"decoded {decoded[-1]}")


def after_the_signal():
    if record:
        marks.write_text(json.dumps({**record, "decoded_after": decoded[len(record["decoded"]) :]}))


PROFILED = ("decoding", "writing a shard", "decoded")
sys.addaudithook(audit)
atexit.register(after_the_signal)
runpy.run_module("extract", run_name="__main__", alter_sys=True)
"""
KILL_PHASES = ("start-up", "hashing", "decoding", "writing a shard", "renaming", "rewriting the index")
RUN_TIMEOUT = 300  # seconds for one tiny extraction on a busy 2-core machine


def _signalling(command: list[str], marks: Path, phase: str, count: int, signal_name: str) -> list[str]:
    """``command`` (a ``python -m extract`` command line) made to send itself ``signal_name``
    at the ``count``-th event of ``phase`` (see SIGNAL_AT_A_MOMENT)."""
    return [sys.executable, "-c", SIGNAL_AT_A_MOMENT, str(marks), phase, str(count), signal_name, *command[3:]]


def _signal_at(
    command: list[str], marks: Path, phase: str, count: int, signal_name: str
) -> subprocess.CompletedProcess:
    """Run ``_signalling(...)`` to its end (killed after RUN_TIMEOUT)."""
    wrapped = _signalling(command, marks, phase, count, signal_name)
    return subprocess.run(wrapped, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def _start_signalling(command: list[str], marks: Path, phase: str, count: int, signal_name: str) -> subprocess.Popen:
    """Start ``_signalling(...)``; the caller waits for it with a timeout and kills it."""
    wrapped = _signalling(command, marks, phase, count, signal_name)
    return subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _datasets(cache_dir: Path, split: str) -> dict[str, dict[str, np.ndarray]]:
    """video id -> every dataset of its record in the cache."""
    arrays = CacheReader(cache_dir).read(split, ALL)
    return {video_id: {name: arrays[name][row] for name in ALL} for row, video_id in enumerate(arrays["video_id"])}


def _assert_same_videos(actual: dict, expected: dict) -> None:
    for video_id, datasets in actual.items():
        for name in ALL:
            np.testing.assert_array_equal(datasets[name], expected[video_id][name], err_msg=f"{video_id} {name}")


def test_runs_killed_in_each_phase_keep_what_was_finished_and_resume_with_every_video_once(
    clip_folder, tiny_options, tmp_path
):
    data = tmp_path / "train"
    data.mkdir()
    for index in range(2):
        shutil.copyfile(clip_folder / "train" / f"train{index}.mp4", data / f"clip{index}.mp4")
    options = replace(tiny_options, videos_per_shard=1, batch_size=tiny_options.decode.frames)  # a shard per video
    base = tmp_path / "base"
    _run([data], base, options)  # the state every trial starts from: two videos cached
    for index in range(2, 6):
        talking_head_clip(data / f"clip{index}.mp4", seconds=1.0, brightness=0.4 + 0.07 * index)
    expected_cache = tmp_path / "unkilled"
    shutil.copytree(base, expected_cache)
    _run([data], expected_cache, options)
    expected = _datasets(expected_cache, "train")
    assert sorted(expected) == [f"clip{index}.mp4" for index in range(6)]
    for phase in KILL_PHASES:
        cache_dir, marks = tmp_path / phase, tmp_path / f"{phase}.json"
        shutil.copytree(base, cache_dir)
        command = _extract_command(data, cache_dir, "--frames", "4", "--crop-size", "32")
        command += ["--videos-per-shard", "1", "--batch-size", "4"]
        count = 1 if phase in ("start-up", "hashing") else 2  # past the start, one new video finished first
        killed = _signal_at(command, marks, phase, count, "SIGKILL")
        assert killed.returncode == -signal.SIGKILL, f"{phase}: {killed.returncode} {killed.stderr[-2000:]}"
        moment = json.loads(marks.read_text())
        assert moment["phase"] == phase and len(moment["finished"]) == (2 if count == 1 else 3), moment
        # A reader sees whole shards only: exactly the videos finished before the kill, each as the unkilled run made it.
        after_kill = _datasets(cache_dir, "train")
        assert sorted(after_kill) == sorted(moment["finished"]), moment
        _assert_same_videos(after_kill, expected)
        summary = _run([data], cache_dir, options)
        assert summary.cached == 6 and not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))
        resumed = _datasets(cache_dir, "train")
        assert sorted(resumed) == sorted(expected)  # every video exactly once: ids are the keys
        assert len(CacheReader(cache_dir).read("train", ("video_id",))["video_id"]) == 6
        _assert_same_videos(resumed, expected)


def test_real_chalearn_clips_end_to_end(chalearn, tiny_options, tmp_path):
    pickles = [
        chalearn / "annotations" / "annotation_training.pkl",
        chalearn / "annotations" / "annotation_validation.pkl",
    ]
    summary = _run(
        [f"train={chalearn / 'train'}", f"validation={chalearn / 'validation'}"],
        tmp_path / "cache",
        tiny_options,
        pickles,
    )
    assert summary.extracted == 2 and not summary.failures
    reader = CacheReader(tmp_path / "cache")
    expected = {}
    for path in pickles:
        expected.update(load_label_file(path))
    for split in ("train", "validation"):
        arrays = reader.read(split, ("video_id", "face_found", "frame_times"))
        assert arrays["face_found"].mean() >= 0.75
        assert arrays["frame_times"].max() < 15.4
        labels = reader.labels(arrays["video_id"])
        for column, trait in enumerate(TRAITS):
            assert labels[0, column] == pytest.approx(expected[arrays["video_id"][0]][trait], abs=1e-6)


def _clips(folder: Path, count: int) -> None:
    folder.mkdir()
    for index in range(count):
        talking_head_clip(folder / f"clip{index}.mp4", seconds=2.0, brightness=0.5 + 0.05 * index)


def test_ctrl_c_with_the_defaults_writes_every_decoded_video_and_says_how_to_resume(tmp_path):
    data, cache_dir, marks = tmp_path / "train", tmp_path / "cache", tmp_path / "marks.json"
    _clips(data, 12)
    # Default --frames 10, --batch-size 32 and 224 px crops: one batch finishes three videos
    # at once. Ctrl-C comes as the fifth video is decoded: the fourth is half embedded and the
    # fifth waits for its batch. One job, so that decoding happens in the process watched.
    command = _extract_command(data, cache_dir, "--videos-per-shard", "1")
    stopped = _signal_at(command, marks, "decoded", 5, "SIGINT")
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 130, output[-2000:]
    moment = json.loads(marks.read_text())
    in_order = sorted(path.name for path in data.glob("*.mp4"))
    # Written at the signal: the first batch's three; decoded: two more, not yet written.
    assert (moment["decoded"], moment["finished"]) == (in_order[:5], in_order[:3]), moment
    assert moment["decoded_after"] == []  # no video started after the Ctrl-C
    assert sorted(CacheReader(cache_dir).read("train", ("video_id",))["video_id"]) == moment["decoded"]
    assert "run the same command again to resume" in output and "UserWarning" not in output
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))
    assert "5 extracted" in output and "(5 videos in the cache, 0 labelled)" in output
    summary = _run([data], cache_dir, ExtractOptions.from_dict({"weights": "none", "jobs": 1, "videos_per_shard": 1}))
    assert (summary.extracted, summary.skipped) == (7, 5)
    ids = list(CacheReader(cache_dir).read("train", ("video_id",))["video_id"])
    assert sorted(ids) == in_order


SECOND_CTRL_C_BOUND = 10  # seconds, the README's: one ResNet50 batch, writing what is done, and TensorFlow's exit


def test_a_second_ctrl_c_stops_within_the_bound_and_leaves_a_readable_cache(tmp_path):
    data, cache_dir, marks = tmp_path / "train", tmp_path / "cache", tmp_path / "marks.json"
    _clips(data, 12)
    command = _extract_command(data, cache_dir, "--videos-per-shard", "1")
    process = _start_signalling(command, marks, "decoded", 5, "SIGINT")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not marks.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # two pending SIGINTs count as one: let the first one's handler run (at its next bytecode)
        process.send_signal(signal.SIGINT)
        second = time.monotonic()
        output = "".join(process.communicate(timeout=RUN_TIMEOUT))
        stopped_after = time.monotonic() - second
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=RUN_TIMEOUT)
    assert process.returncode == 130, output[-2000:]
    assert "stopped at once by a second Ctrl-C" in output and "Traceback" not in output
    assert stopped_after < SECOND_CTRL_C_BOUND, f"{stopped_after:.1f} s"
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))
    ids = list(CacheReader(cache_dir).read("train", ("video_id",))["video_id"])
    assert 1 <= len(ids) <= 5 and len(ids) == len(set(ids))


def test_byte_identical_copies_are_decoded_once_and_each_name_kept(clip_folder, tiny_options, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        shutil.copyfile(clip_folder / "train" / "train0.mp4", data / name)
    summary = _run([data], tmp_path / "cache", tiny_options)
    assert (summary.extracted, summary.copied, summary.cached) == (1, 4, 5)
    assert (
        summary.line()
        == "1 extracted, 4 identical copies, 0 reused, 0 already cached, 0 failed (5 videos in the cache, 0 labelled)"
    )
    arrays = CacheReader(tmp_path / "cache").read("train", ("video_id", "face_embeddings", "source"))
    assert list(arrays["video_id"]) == ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"]
    assert all(np.array_equal(embeddings, arrays["face_embeddings"][0]) for embeddings in arrays["face_embeddings"])
    assert [Path(source).name for source in arrays["source"]] == list(arrays["video_id"])
    again = _run([data], tmp_path / "cache", tiny_options)
    assert (again.extracted, again.copied, again.skipped) == (0, 0, 5)

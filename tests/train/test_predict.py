"""``python -m train predict``: the run's recorded extraction on real clips, then its head."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cache.schema import TRAITS
from cache.sets import set_folder, stored_sets, write_descriptor
from common.errors import ExitCode
from extract.adding import AddOptions, add_sets
from extract.backbones import build_backbone
from extract.config import ExtractOptions
from extract.run import extract_to_cache
from train.cli import app
from train.config import FitOptions
from train.fit import fit
from train.predict import records_to_split
from train.run import RunError
from train.synthetic import add_synthetic_set, write_synthetic_cache

FRAMES = 4
# The real pipeline at test size: FRAMES frames, 32 px crops, random ResNet50 weights.
EXTRACTION = ExtractOptions.from_dict({"frames": FRAMES, "crop_size": 32, "weights": "none", "jobs": 1})


def fit_tiny_head(cache: Path, out: Path, **options) -> None:
    """One epoch of a narrow seed head: a real run folder in seconds (``options``: further FitOptions)."""
    options = FitOptions(
        cache=str(cache),
        out=str(out),
        epochs=1,
        visual_units=8,
        visual_projection=4,
        audio_units=4,
        lstm_units=4,
        verbose=0,
        **options,
    )
    fit(options, echo=lambda line: None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A seed head trained on a cache that records EXTRACTION as its config."""
    root = tmp_path_factory.mktemp("predict")
    cache = write_synthetic_cache(
        root / "cache", {"train": 24, "validation": 8}, frames=FRAMES, config=EXTRACTION.feature_config()
    )
    fit_tiny_head(cache, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def broken_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "broken.mp4"
    path.write_bytes(b"this is not a video" * 50)
    return path


def read_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def scores_of(result) -> np.ndarray:
    """The traits of the one row a successful ``predict`` printed."""
    assert result.exit_code == 0, result.output
    (row,) = read_rows(result.stdout)
    return np.array([float(row[trait]) for trait in TRAITS])


def evaluated_scores(run: Path, clip_cache: Path) -> np.ndarray:
    """The scores ``evaluate`` predicted for the one video of a cache that labels it 0 on every trait:
    its per-trait accuracy 1 - |0 - score| gives the score back."""
    evaluated = CliRunner().invoke(app, ["evaluate", str(run), "--cache", str(clip_cache), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    accuracies = json.loads(evaluated.stdout)["new"]["traits"]
    return np.array([1.0 - accuracies[trait] for trait in TRAITS])


def zero_labels(path: Path, clip: Path) -> Path:
    """A label file giving ``clip`` 0 on every trait."""
    path.write_text(",".join(("video_id", *TRAITS)) + f"\n{clip.name}" + ",0" * len(TRAITS) + "\n")
    return path


def test_predict_scores_good_videos_and_names_the_broken_one(run, face_clip, broken_clip):
    result = CliRunner().invoke(app, ["predict", str(run), str(face_clip), str(broken_clip)])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    rows = read_rows(result.stdout)
    assert [row["video_id"] for row in rows] == [face_clip.name]
    assert list(rows[0]) == ["video_id", *TRAITS]
    scores = np.array([float(rows[0][trait]) for trait in TRAITS])
    assert np.all((scores > 0) & (scores < 1))
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(broken_clip) in error_lines[0]
    assert "--weights none" in result.stderr


def test_predict_writes_a_csv_and_repeats_itself(run, face_clip, tmp_path):
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["predict", str(run), str(face_clip), "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = read_rows(out.read_text())
    again = CliRunner().invoke(app, ["predict", str(run), str(face_clip)])
    assert read_rows(again.stdout) == first and len(first) == 1


def test_predict_loads_models_in_safe_mode(run, face_clip, tmp_path):
    """A Lambda whose code writes a canary file: an unsafe load would run it, predict must not."""
    unsafe = tmp_path / "unsafe"
    shutil.copytree(run, unsafe)
    canary = tmp_path / "canary.txt"
    inputs = keras.Input((FRAMES, 68), name="audio")
    # A source-free lambda with the path inside its code, so the saved bytecode carries it.
    write_canary = eval(f"lambda values: (open({str(canary)!r}, 'w').write('unsafe code ran'), values[:, 0, :5])[1]")
    keras.Model(inputs, keras.layers.Lambda(write_canary)(inputs)).save(unsafe / "model.keras")
    canary.unlink()  # building the model above ran the lambda once

    result = CliRunner().invoke(app, ["predict", str(unsafe), str(face_clip)])
    assert result.exit_code == ExitCode.USAGE
    assert "safe mode" in result.stderr and "Traceback" not in result.output
    assert not canary.exists(), "predict ran the model file's code"

    keras.saving.load_model(unsafe / "model.keras", safe_mode=False)
    assert canary.read_text() == "unsafe code ran", (
        "the canary must fire on an unsafe load, or this test proves nothing"
    )


def test_predict_with_an_ensemble_averages_its_members(run, face_clip, tmp_path):
    cache = FitOptions.from_dict(json.loads((run / "options.json").read_text())).cache
    other = tmp_path / "other"
    options = FitOptions(cache=cache, out=str(other), head="audio", epochs=1, audio_units=4, lstm_units=4, verbose=0)
    fit(options, echo=lambda line: None)
    assert CliRunner().invoke(app, ["ensemble", str(run), str(other), "--out", str(tmp_path / "ens")]).exit_code == 0
    scores = {}
    for folder in (run, other, tmp_path / "ens"):
        result = CliRunner().invoke(app, ["predict", str(folder), str(face_clip)])
        assert result.exit_code == 0, result.output
        scores[folder] = np.array([float(read_rows(result.stdout)[0][trait]) for trait in TRAITS])
    assert scores[tmp_path / "ens"] == pytest.approx((scores[run] + scores[other]) / 2, abs=2e-6)


def test_predict_on_a_folder_that_is_no_run(face_clip, tmp_path):
    result = CliRunner().invoke(app, ["predict", str(tmp_path), str(face_clip)])
    assert result.exit_code == ExitCode.USAGE and "not a finished run" in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_model_file_is_a_clear_error(run, face_clip, tmp_path, damage):
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    model = damaged / "model.keras"
    data = bytearray(model.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["predict", str(damaged), str(face_clip)])
    assert result.exit_code == ExitCode.USAGE
    assert str(model) in result.stderr and "train the run again" in result.stderr
    assert "Traceback" not in result.output


def test_every_input_path_gets_a_row_even_copies_and_same_names(run, face_clip, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(face_clip, tmp_path / folder / "clip.mp4")
    shutil.copyfile(face_clip, tmp_path / "a" / "copy.mp4")
    paths = [tmp_path / "a" / "clip.mp4", tmp_path / "a" / "copy.mp4", tmp_path / "b" / "clip.mp4"]
    result = CliRunner().invoke(app, ["predict", str(run), *map(str, paths)])
    assert result.exit_code == 0, result.output
    rows = read_rows(result.stdout)
    assert [row["video_id"] for row in rows] == ["clip.mp4", "copy.mp4", "clip.mp4"]
    # Identical content gets the same scores; a video's row in the head's batch may move the last float32 bit.
    scores = np.array([[float(row[trait]) for trait in TRAITS] for row in rows])
    np.testing.assert_allclose(scores[1:], scores[[0, 0]], atol=1e-5)


def test_a_changed_weights_file_is_refused_and_the_original_can_be_given_from_elsewhere(face_clip, tmp_path):
    weights = tmp_path / "resnet.weights.h5"
    build_backbone("resnet50", "none", 32, seed=1).save_weights(weights)
    extraction = ExtractOptions.from_dict(
        {"frames": FRAMES, "crop_size": 32, "weights": str(weights), "jobs": 1}
    ).resolved()
    cache = write_synthetic_cache(
        tmp_path / "cache", {"train": 16, "validation": 8}, frames=FRAMES, config=extraction.feature_config()
    )
    fit_tiny_head(cache, tmp_path / "run")
    scores = scores_of(CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(face_clip)]))
    moved = tmp_path / "elsewhere.weights.h5"
    shutil.copyfile(weights, moved)
    build_backbone("resnet50", "none", 32, seed=2).save_weights(weights)  # other weights at the recorded path
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(face_clip)])
    assert result.exit_code == ExitCode.USAGE and "weights file changed" in result.stderr
    assert "--weights face:resnet50=FILE" in result.stderr
    # A process of its own: this one holds the model it built from the recorded path, by that path.
    given = subprocess.run(
        [sys.executable, "-m", "train", "predict", str(tmp_path / "run"), str(face_clip)]
        + ["--weights", f"face:resnet50={moved}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert given.returncode == 0, given.stderr
    (row,) = read_rows(given.stdout)
    np.testing.assert_allclose([float(row[trait]) for trait in TRAITS], scores, atol=2e-6)


def test_predict_on_a_run_trained_with_several_frames_per_segment(face_clip, tmp_path):
    """k = 2 frames per segment: predict extracts T*k frames as the cache did and scores them."""
    extraction = ExtractOptions.from_dict(
        {"frames": FRAMES, "frames_per_segment": 2, "crop_size": 32, "weights": "none", "jobs": 1}
    )
    cache = write_synthetic_cache(
        tmp_path / "cache",
        {"train": 24, "validation": 8},
        frames=FRAMES,
        frames_per_segment=2,
        config=extraction.feature_config(),
    )
    fit_tiny_head(cache, tmp_path / "run")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(face_clip)])
    assert result.exit_code == 0, result.output
    rows = read_rows(result.stdout)
    assert [row["video_id"] for row in rows] == [face_clip.name]
    again = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(face_clip)])
    assert read_rows(again.stdout) == rows
    # The same video extracted into a cache and scored by `evaluate`.
    labels = zero_labels(tmp_path / "zeros.csv", face_clip)
    extract_to_cache([f"new={face_clip}"], tmp_path / "new-cache", [labels], extraction, show_progress=False)
    np.testing.assert_allclose(scores_of(result), evaluated_scores(tmp_path / "run", tmp_path / "new-cache"), atol=2e-6)


def test_predict_writes_the_targets_the_run_was_trained_on(face_clip, tmp_path):
    cache = write_synthetic_cache(
        tmp_path / "cache",
        {"train": 24, "validation": 8},
        frames=FRAMES,
        config=EXTRACTION.feature_config(),
        interview=True,
    )
    options = FitOptions(
        cache=str(cache),
        out=str(tmp_path / "run"),
        head="audio",
        epochs=1,
        targets=("interview", "openness"),
        verbose=0,
    )
    fit(options, echo=lambda line: None)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(face_clip)])
    assert result.exit_code == 0, result.output
    rows = read_rows(result.stdout)
    assert list(rows[0]) == ["video_id", "interview", "openness"]
    assert all(0 < float(rows[0][target]) < 1 for target in ("interview", "openness"))


def test_predict_computes_face_and_audio_sets_equal_to_computing_them_directly(face_clip):
    from extract.backbones import embed_images
    from extract.parallel import featurize
    from extract.smile import smile_features

    (record,) = list(featurize([face_clip], EXTRACTION))
    split = records_to_split([record], TRAITS, ("face:vgg16", "audio:pyaa"), {"face:vgg16": {"weights": "none"}})
    direct = embed_images(record.face_crops, "vgg16", weights="none")
    assert split.visual.shape == (1, FRAMES, 512) and split.audio.shape == (1, FRAMES, 68)
    np.testing.assert_array_equal(split.sets["face:vgg16"][0], direct)
    np.testing.assert_array_equal(split.visual[0], direct.astype(np.float16))
    np.testing.assert_array_equal(split.sets["audio:pyaa"][0], record.audio_features)
    rate = EXTRACTION.decode.audio_rate
    voice = records_to_split(
        [record], TRAITS, ("face:resnet50", "audio:egemaps"), {"audio:egemaps": {"audio_rate": rate}}
    )
    assert record.has_audio and voice.audio.shape == (1, FRAMES, 88)
    np.testing.assert_array_equal(
        voice.audio[0], smile_features(record.sound_track, rate, record.duration, FRAMES, "egemaps")
    )
    np.testing.assert_array_equal(voice.visual[0], record.face_embeddings)
    with pytest.raises(RunError, match="featurized without its whole frames, which scene:vgg16 is computed from"):
        records_to_split([record], TRAITS, ("scene:vgg16", "audio:pyaa"), {"scene:vgg16": {"weights": "none"}})


ADDED_SETS = ("scene:vgg16", "face:vgg16")  # the first added with weights none, the second with a weights file


@pytest.fixture(scope="module")
def added_sets(tmp_path_factory, face_clip):
    """A run reading a scene set and a face set added with a weights file, and the clip in a cache holding both.

    The clip is extracted with its whole frames into a cache that labels it 0 on every trait, and
    both sets are added to it by ``python -m extract add``'s function. The run trains on a synthetic
    cache holding those sets under the same descriptors (identity and options), as the cache of a
    real run would, so that ``evaluate`` accepts the clip's cache.

    Returns
    -------
    (Path, Path, Path)
        The run folder, the clip's cache and the face set's weights file.
    """
    root = tmp_path_factory.mktemp("added-sets")
    weights = root / "vgg16-seed7.weights.h5"
    build_backbone("vgg16", "none", 32, seed=7).save_weights(weights)
    clip_cache = root / "clip-cache"
    with_frames = ExtractOptions.from_dict({**EXTRACTION.feature_config(), "keep_frames": True, "jobs": 1})
    labels = zero_labels(root / "zeros.csv", face_clip)
    extract_to_cache([f"new={face_clip}"], clip_cache, [labels], with_frames, show_progress=False)
    add_sets(clip_cache, AddOptions(features=ADDED_SETS[0], weights="none"), show_progress=False)
    add_sets(clip_cache, AddOptions(features=ADDED_SETS[1], weights=str(weights)), show_progress=False)
    training = write_synthetic_cache(
        root / "cache", {"train": 24, "validation": 8}, frames=FRAMES, config=EXTRACTION.feature_config()
    )
    for found in stored_sets(clip_cache):
        folder = set_folder(training, found.name, found.identity)
        add_synthetic_set(training, found.name, found.dimension).rename(folder)
        write_descriptor(folder, found.descriptor)
    fit_tiny_head(training, root / "run", features=(*ADDED_SETS, "audio:pyaa"))
    return root / "run", clip_cache, weights


def test_predict_computes_scene_sets_and_sets_added_with_a_weights_file_as_evaluate_reads_them(added_sets, face_clip):
    run, clip_cache, weights = added_sets
    result = CliRunner().invoke(app, ["predict", str(run), str(face_clip), "--weights", f"face:vgg16={weights}"])
    np.testing.assert_allclose(scores_of(result), evaluated_scores(run, clip_cache), atol=2e-6)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            [],
            ("error: set face:vgg16 was computed with a weights file", "pass that file with --weights face:vgg16=FILE"),
        ),
        (["face:vgg16={other}"], ("error: --weights face:vgg16={other}: not the file face:vgg16 was computed with",)),
        (["face:vgg16={missing}"], ("error: --weights face:vgg16={missing}: no such file",)),
        (["scene:vgg16={weights}"], ("error: --weights names scene:vgg16, which was computed with weights none",)),
        (["face:vgg19={weights}"], ("error: --weights names face:vgg19, which the run does not read",)),
        (["face:vgg16"], ("error: --weights 'face:vgg16' is not SET=FILE",)),
    ],
    ids=["no file", "another file", "missing file", "set of named weights", "set not read", "no equals sign"],
)
def test_a_weights_file_given_or_missing_for_a_set_is_one_line_and_exit_2(
    added_sets, face_clip, tmp_path, flags, expected
):
    run, _, weights = added_sets
    other = tmp_path / "vgg16-seed8.weights.h5"
    build_backbone("vgg16", "none", 32, seed=8).save_weights(other)
    paths = {"weights": weights, "other": other, "missing": tmp_path / "gone.weights.h5"}
    given = [argument for flag in flags for argument in ("--weights", flag.format(**paths))]
    result = CliRunner().invoke(app, ["predict", str(run), str(face_clip), *given])
    assert result.exit_code == ExitCode.USAGE, result.output
    (line,) = result.stderr.splitlines()
    assert all(part.format(**paths) in line for part in expected), line
    assert result.stdout == ""

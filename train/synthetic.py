"""Synthetic caches with known answers, for tests and the training benchmark.

Features are random but the labels can be an exact function of them, so a head that
learns must beat the mean baseline on held-out videos; shuffled labels keep the same
distribution with no relation left to learn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cache.labels import write_labels
from cache.reader import CacheReader
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, TRAITS, VideoRecord
from cache.sets import part_name, set_folder, write_descriptor, write_part
from cache.writer import CacheWriter

LABEL_MODES = ("features", "shuffled", "none")
NO_FACE_RATE = 0.1  # fraction of frames without a face, so the mask is exercised
LABEL_SPREAD = 0.15  # trait scores stay within 0.5 ± this (tanh-squashed), inside [0, 1]
MIXING_SEED = 20161  # fixes the hidden directions, so every synthetic cache shares one label function
SIGNAL_SCALE = 1.0  # size of the hidden factors in the embedding, against FEATURE_NOISE per dimension
FRAME_NOISE = 0.5  # per-frame wobble of a video's factors (std, factor units)
FEATURE_NOISE = 0.3  # independent noise per feature dimension (std)
AUDIO_SCALE = 3.0  # audio features vary more than embeddings, as pyAudioAnalysis ones do
CHUNK = 256  # videos generated at a time: bounds memory for benchmark-size caches (~80 MB at T*k = 10)


def synthetic_config(frames: int, frames_per_segment: int = 1) -> dict:
    """An extraction config for synthetic features (random-weights embeddings)."""
    return {"frames": frames, "frames_per_segment": frames_per_segment, "weights": "none", "synthetic": True}


def _directions(width: int, salt: int) -> np.ndarray:
    """(5, width) fixed unit directions along which each trait's signal lies."""
    directions = np.random.default_rng(MIXING_SEED + salt).normal(size=(len(TRAITS), width))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def synthetic_features(
    rng: np.random.Generator, videos: int, frames: int, frames_per_segment: int
) -> dict[str, np.ndarray]:
    """Random features shaped like the cache's, with a few hidden factors per video.

    Each video has five visual and five audio factors; every frame shows its
    video's factors along fixed directions plus noise, so the information is
    spread over many dimensions as in real embeddings.

    Returns
    -------
    dict
        ``face_embeddings`` (videos, T*k, 2048) float16, non-negative like pooled
        ReLU outputs and zero where no face was found; ``audio_features``
        (videos, T, 68) float32; ``face_found`` (videos, T*k) bool.
    """
    stored = frames * frames_per_segment
    traits = len(TRAITS)
    face_found = rng.random((videos, stored)) >= NO_FACE_RATE
    visual_factors = rng.normal(size=(videos, 1, traits)) + FRAME_NOISE * rng.normal(size=(videos, stored, traits))
    embeddings = np.abs(
        1.0
        + SIGNAL_SCALE * visual_factors @ _directions(EMBEDDING_DIM, 0)
        + FEATURE_NOISE * rng.normal(size=(videos, stored, EMBEDDING_DIM))
    )
    embeddings[~face_found] = 0.0
    audio_factors = rng.normal(size=(videos, 1, traits)) + FRAME_NOISE * rng.normal(size=(videos, frames, traits))
    audio = 1.0 + AUDIO_SCALE * (
        audio_factors @ _directions(AUDIO_DIM, 1) + FEATURE_NOISE * rng.normal(size=(videos, frames, AUDIO_DIM))
    )
    return {
        "face_embeddings": embeddings.astype(np.float16),
        "audio_features": audio.astype(np.float32),
        "face_found": face_found,
    }


def feature_labels(features: dict[str, np.ndarray]) -> np.ndarray:
    """Trait scores that are a fixed function of what can be seen and heard.

    Projecting a video's face embeddings (averaged over face frames) on visual
    direction j, less the projection of the constant offset, recovers its hidden
    visual factor j; likewise for audio. Trait j rises with the visual factor and
    falls with the audio one. The function holds per video, whatever the batch.

    Returns
    -------
    np.ndarray
        (videos, 5) float32 in (0.5 - LABEL_SPREAD, 0.5 + LABEL_SPREAD).
    """
    visual_directions = _directions(EMBEDDING_DIM, 0)
    audio_directions = _directions(AUDIO_DIM, 1)
    found = features["face_found"][..., None]
    embeddings = features["face_embeddings"].astype(np.float32) * found
    visual_mean = embeddings.sum(axis=1) / np.maximum(found.sum(axis=1), 1)
    visual = (visual_mean @ visual_directions.T - visual_directions.sum(axis=1)) / SIGNAL_SCALE
    audio = (features["audio_features"].mean(axis=1) @ audio_directions.T - audio_directions.sum(axis=1)) / AUDIO_SCALE
    return (0.5 + LABEL_SPREAD * np.tanh((visual - audio) / 2.0)).astype(np.float32)


def write_synthetic_cache(
    cache_dir: Path,
    splits: dict[str, int],
    frames: int = 4,
    frames_per_segment: int = 1,
    labels: str = "features",
    seed: int = 0,
    config: dict | None = None,
    clips_per_source: int = 1,
    copied: int = 0,
    shared_sources: int = 0,
    interview: bool = False,
) -> Path:
    """Write a synthetic cache with CacheWriter and attach labels.

    Parameters
    ----------
    cache_dir : Path
        New cache folder.
    splits : dict of str to int
        Videos per split, e.g. ``{"train": 120, "validation": 40}``.
    frames, frames_per_segment : int
        T and k.
    labels : str
        ``features`` (a function of the features), ``shuffled`` (those labels
        permuted across videos) or ``none`` (no labels attached).
    seed : int
        Seeds features and shuffling.
    config : dict, optional
        Extraction config to record instead of ``synthetic_config``; must agree
        with ``frames`` and ``frames_per_segment``.
    clips_per_source : int
        Above 1, ids are ChaLearn-like clips of shared source videos:
        ``train-00000.000.mp4``, ``train-00000.001.mp4``, ... (else ``train-00000.mp4``).
    copied : int
        The first ``copied`` videos of every split after the first carry the content
        hash of the first split's first videos, as files copied into another split
        under new names would (only the hash is shared: it is all a leak check reads).
    shared_sources : int
        The first ``shared_sources`` videos of every split after the first are further
        clips of the first split's first videos' sources (``train-00000.validation-000.mp4``
        is a clip of ``train-00000``), as ChaLearn's official splits share YouTube videos.
    interview : bool
        Also label ChaLearn's ``interview`` score, as the mean of the five traits
        (a function of the features too, so a head can learn it).

    Returns
    -------
    Path
        ``cache_dir``.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    if max(copied, shared_sources) > next(iter(splits.values()), 0):
        raise ValueError(
            f"copied ({copied}) and shared_sources ({shared_sources}) must not exceed the first split's size"
        )
    rng = np.random.default_rng(seed)
    table: dict[str, dict[str, float]] = {}
    stored = frames * frames_per_segment
    times = np.linspace(0.0, 15.0, stored, endpoint=False, dtype=np.float32)
    first_ids: list[str] = []
    with CacheWriter(Path(cache_dir), config or synthetic_config(frames, frames_per_segment)) as writer:
        for split, count in splits.items():
            if clips_per_source > 1:
                video_ids = [
                    f"{split}-{index // clips_per_source:05d}.{index % clips_per_source:03d}.mp4"
                    for index in range(count)
                ]
            else:
                video_ids = [f"{split}-{index:05d}.mp4" for index in range(count)]
            if first_ids:
                video_ids[:shared_sources] = [
                    f"{source.split('.', 1)[0]}.{split}-{index:03d}.mp4"
                    for index, source in enumerate(first_ids[:shared_sources])
                ]
            first_ids = first_ids or video_ids
            # The id whose content each video holds: its own, or a first-split video's for the copies.
            contents = video_ids if video_ids is first_ids else first_ids[:copied] + video_ids[copied:]
            scores = []
            for start in range(0, count, CHUNK):
                features = synthetic_features(rng, min(CHUNK, count - start), frames, frames_per_segment)
                scores.append(feature_labels(features))
                for row, video_id in enumerate(video_ids[start : start + CHUNK]):
                    found = features["face_found"][row]
                    content = contents[start + row]
                    writer.add(
                        VideoRecord(
                            video_id=video_id,
                            split=split,
                            content_hash=hashlib.sha256(f"{seed}/{content}".encode()).hexdigest(),
                            source=f"synthetic/{video_id}",
                            face_embeddings=features["face_embeddings"][row],
                            audio_features=features["audio_features"][row],
                            frame_times=times,
                            face_boxes=np.where(found[:, None], np.array([10, 10, 64, 64], np.int32), np.int32(-1)),
                            face_found=found,
                            has_audio=True,
                        )
                    )
            split_scores = np.concatenate(scores) if scores else np.zeros((0, len(TRAITS)), np.float32)
            if labels == "shuffled":
                split_scores = split_scores[rng.permutation(count)]
            names = (*TRAITS, "interview") if interview else TRAITS
            if interview:
                split_scores = np.column_stack([split_scores, split_scores.mean(axis=1)])
            table.update(
                {video_id: dict(zip(names, map(float, row))) for video_id, row in zip(video_ids, split_scores)}
            )
    if labels != "none":
        write_labels(Path(cache_dir), table)
    return Path(cache_dir)


def add_synthetic_set(cache_dir: Path, name: str, dimension: int, seed: int = 0) -> Path:
    """Store a feature set of random values beside a cache's shards, as ``python -m extract add`` lays one out.

    Parameters
    ----------
    cache_dir : Path
        A cache (``write_synthetic_cache``).
    name : str
        ``SOURCE:EXTRACTOR``; an ``audio`` set has T rows per video, the others T*k.
    dimension : int
        D, values per row.
    seed : int
        Seeds the values.

    Returns
    -------
    Path
        The set's folder.
    """
    reader = CacheReader(Path(cache_dir))
    audio = name.startswith("audio:")
    rows = reader.frames if audio else reader.frames * reader.frames_per_segment
    folder = set_folder(Path(cache_dir), name, f"synthetic{seed}")
    write_descriptor(
        folder,
        {"name": name, "source": name.partition(":")[0], "dimension": dimension, "identity": f"synthetic{seed}"},
    )
    rng = np.random.default_rng(seed)
    for entry in reader.index.shards:
        values = rng.normal(size=(len(entry.video_ids), rows, dimension)).astype(np.float32 if audio else np.float16)
        write_part(folder / part_name(entry.name), list(entry.video_ids), list(entry.content_hashes), values)
    return folder

"""Summaries of a cache: what ``python -m cache info`` and ``export`` print."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cache.errors import CacheError
from cache.labels import read_label_table
from cache.lock import lock_holder
from cache.manifest import read_failures
from cache.reader import CacheReader
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, LABEL_NAMES


def describe(cache_dir: Path) -> dict:
    """Everything ``info`` reports, as one JSON-able dict.

    Keys include ``videos`` (int), ``splits`` ({name: count}), ``frames`` (T),
    ``frames_per_segment``, ``embedding_dim``, ``audio_dim``, ``face_found_rate``,
    ``labelled``, ``config``, ``config_hash``, ``library_versions``, ``failures``
    (list of {path, reason}), ``run_in_progress`` (the lock holder, e.g.
    ``"pid 1234"``, while an extraction writes; None otherwise) and ``feature_sets``
    (one {name, source, dimension, identity, videos, bytes} per set: the default sets in
    the shards, with ``identity`` the cache's config hash and ``bytes`` None, then the
    sets added beside them).
    """
    reader = CacheReader(cache_dir)
    writing = lock_holder(cache_dir)  # before counting: the counts are then at least as new
    splits = reader.splits()
    found = [reader.read(split, ("face_found",))["face_found"] for split in splits]
    frames_found = np.concatenate([array.reshape(-1) for array in found]) if found else np.zeros(0, bool)
    labels = read_label_table(cache_dir)
    ids = [entry.video_ids[row] for entry, row in reader.index.live()]
    return {
        "videos": sum(splits.values()),
        "splits": splits,
        "frames": reader.frames,
        "frames_per_segment": reader.frames_per_segment,
        "embedding_dim": EMBEDDING_DIM,
        "audio_dim": AUDIO_DIM,
        "face_found_rate": float(frames_found.mean()) if frames_found.size else None,
        "labelled": sum(1 for video_id in ids if labels.get(video_id)),
        "shards": len(reader.index.shards),
        "config": reader.config,
        "config_hash": reader.config_hash,
        "library_versions": reader.shard_attributes().get("library_versions", {}),
        "failures": read_failures(cache_dir),
        "run_in_progress": writing,
        "feature_sets": reader.feature_sets(),
    }


def export_csv(cache_dir: Path, out: Path) -> int:
    """Write one row per cached video: video_id, split, labels, face_found_rate.

    Returns the number of rows written. Label columns are the five traits, plus
    ``interview`` when any video has it; empty where unknown.

    Raises
    ------
    CacheError
        When ``cache_dir`` is not a readable cache or ``out`` cannot be written.
    """
    reader = CacheReader(cache_dir)
    table = read_label_table(cache_dir)
    columns = [
        name for name in LABEL_NAMES if name != "interview" or any("interview" in scores for scores in table.values())
    ]
    rows = 0
    try:
        with open(out, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("video_id", "split", *columns, "face_found_rate"))
            for split in reader.splits():
                arrays = reader.read(split, ("video_id", "face_found"))
                for video_id, found in zip(arrays["video_id"], arrays["face_found"]):
                    scores = table.get(video_id, {})
                    writer.writerow(
                        (video_id, split, *(scores.get(name, "") for name in columns), f"{found.mean():.4f}")
                    )
                    rows += 1
    except OSError as error:
        raise CacheError(f"{out}: cannot write ({error.strerror})") from error
    return rows

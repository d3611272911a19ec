"""Names, shapes and the per-video record of the feature cache (see DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 2  # bump when a dataset's meaning or layout changes (2: the sound track stored flat)
EMBEDDING_DIM = 2048  # ResNet50 global-average-pooled output
AUDIO_DIM = 68  # 34 pyAudioAnalysis short-term features + their deltas
TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
LABEL_NAMES = TRAITS + ("interview",)  # ChaLearn also rates "invite to interview"
SHARD_PATTERN = "shard-*.h5"
INDEX_FILE = "index.json"
LABELS_FILE = "labels.csv"
FAILURES_FILE = "failures.csv"
CONFIG_FILE = "config.json"
OPTIONS_FILE = "options.json"  # the resolved options of a stage, saved beside what it wrote (a cache, a run)
DEFAULT_CACHE = "features"  # default cache folder of every command; not `cache/`, the Python package beside it
# Shards built with another extraction config go here on ``verify --repair``: moved,
# never deleted, since they are someone's features.
FOREIGN_FOLDER = "foreign"

# Datasets every shard holds, with their per-video shape suffix and dtype.
# "frames" is T*k (k frames per segment); "segments" is T.
NUMERIC_DATASETS = {
    "face_embeddings": (("frames", EMBEDDING_DIM), np.float16),
    "audio_features": (("segments", AUDIO_DIM), np.float32),
    "frame_times": (("frames",), np.float32),
    "face_boxes": (("frames", 4), np.int32),
    "face_found": (("frames",), np.bool_),
    "has_audio": ((), np.bool_),
}
STRING_DATASETS = ("video_id", "split", "content_hash", "source")
CROPS_DATASET = "face_crops"
# What decoding yields beside the crops, kept so that feature sets can be added later
# without opening a video (``python -m extract add``). Each is optional: a shard written
# before they existed, or with them switched off, lacks them.
# The sound track (int16 mono at the cache's audio rate, empty for a video without sound) is
# read as SOUND_DATASET. Shards of schema 2 store it flat, every video's samples one after
# another, so that it gets Fletcher-32 and is written without a copy; schema 1 shards hold a
# variable-length int16 dataset under SOUND_DATASET itself (cache.reader.read_sounds reads both).
SOUND_DATASET = "sound_track"
SOUND_SAMPLES = "sound_samples"  # (total samples,) int16, chunked with Fletcher-32
SOUND_OFFSETS = "sound_offsets"  # (N+1,) int64: video i's sound is sound_samples[offsets[i]:offsets[i+1]]
DURATION_DATASET = "duration"  # float32 seconds of video: where the sound's T segments lie
FRAMES_DATASET = "whole_frames"  # (T*k, S, S, 3) uint8 sampled frames letterboxed into S x S
SOURCE_DATASETS = (CROPS_DATASET, SOUND_DATASET, DURATION_DATASET, FRAMES_DATASET)


@dataclass(frozen=True)
class VideoRecord:
    """Everything the cache keeps about one video.

    Attributes
    ----------
    video_id : str
        File name, the ChaLearn label key (e.g. ``_01AyUz9J9I.002.mp4``).
    split : str
        Split name (train, validation, ...).
    content_hash : str
        SHA-256 of the file's bytes: identifies the video across renames.
    source : str
        Path the video was read from.
    face_embeddings : np.ndarray
        (T*k, 2048) float16, segment-major: segment t holds frames t*k .. t*k+k-1.
    audio_features : np.ndarray
        (T, 68) float32.
    frame_times : np.ndarray
        (T*k,) float32 seconds from the start of the video.
    face_boxes : np.ndarray
        (T*k, 4) int32 x, y, w, h in source pixels; -1 where no face was detected.
    face_found : np.ndarray
        (T*k,) bool.
    has_audio : bool
        False when the file had no audio track (its features are zeros).
    face_crops : np.ndarray or None
        (T*k, S, S, 3) uint8 RGB crops that were embedded, or None when not kept.
    sound_track : np.ndarray or None
        (num_samples,) int16 mono sound at the cache's audio rate (empty when the video
        has none), or None when not kept.
    duration : float or None
        Seconds of video, None in caches written before it was stored.
    whole_frames : np.ndarray or None
        (T*k, S, S, 3) uint8 RGB sampled frames letterboxed into S x S, or None when not kept.
    """

    video_id: str
    split: str
    content_hash: str
    source: str
    face_embeddings: np.ndarray
    audio_features: np.ndarray
    frame_times: np.ndarray
    face_boxes: np.ndarray
    face_found: np.ndarray
    has_audio: bool
    face_crops: np.ndarray | None = None
    sound_track: np.ndarray | None = None
    duration: float | None = None
    whole_frames: np.ndarray | None = None

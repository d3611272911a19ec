"""Small random caches for the storage layer's tests: real shapes, dtypes and HDF5
files, a few kilobytes per video, and the damage a cache must survive."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np

from cache.manifest import Index
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, VideoRecord
from cache.writer import CacheWriter, shard_name, shard_number

SMALL_FRAMES = 4  # T: enough rows to tell frames apart, small enough for ~20 KB videos
SMALL_CROP = 8  # S, crop side in pixels
SMALL_CONFIG = {
    "frames": SMALL_FRAMES,
    "frames_per_segment": 1,
    "crop_size": SMALL_CROP,
    "keep_crops": True,
    "weights": "none",
}
IMAGENET_CONFIG = {**SMALL_CONFIG, "weights": "imagenet"}  # another config: its shards are foreign to SMALL_CONFIG's


def random_record(number: int, split: str = "train", version: int = 0, crops: bool = True) -> VideoRecord:
    """Video ``video-<number>.mp4`` with random features; another ``version`` is changed content.

    The same ``(number, version)`` always gives the same record.
    """
    rng = np.random.default_rng([number, version])
    found = rng.random(SMALL_FRAMES) < 0.75
    video_id = f"video-{number:05d}.mp4"
    return VideoRecord(
        video_id=video_id,
        split=split,
        content_hash=f"{number:05d}-{version}-" + "0" * 56,
        source=f"/data/{split}/{video_id}",
        face_embeddings=rng.standard_normal((SMALL_FRAMES, EMBEDDING_DIM)).astype(np.float16),
        audio_features=rng.standard_normal((SMALL_FRAMES, AUDIO_DIM)).astype(np.float32),
        frame_times=np.sort(rng.uniform(0.0, 15.0, SMALL_FRAMES)).astype(np.float32),
        face_boxes=np.where(found[:, None], rng.integers(0, 720, (SMALL_FRAMES, 4)), -1).astype(np.int32),
        face_found=found,
        has_audio=bool(rng.integers(2)),
        face_crops=rng.integers(0, 256, (SMALL_FRAMES, SMALL_CROP, SMALL_CROP, 3), dtype=np.uint8) if crops else None,
    )


def sounding_record(number: int, samples: int, split: str = "train", rate: int = 16000) -> VideoRecord:
    """``random_record(number)`` with a random int16 sound track of ``samples`` samples at ``rate``
    Hz and the duration it lasts; ``samples`` 0 is a video without sound (an empty track)."""
    rng = np.random.default_rng([number, samples])
    return dataclasses.replace(
        random_record(number, split=split),
        sound_track=rng.integers(-(2**15), 2**15, samples, dtype=np.int16),
        has_audio=samples > 0,
        duration=float(np.float32(samples / rate)),  # as the shard stores it
    )


def write_random_cache(
    cache_dir: Path, numbers, videos_per_shard: int = 2, config: dict = SMALL_CONFIG, **record_options
) -> Path:
    """A cache of ``random_record(number, **record_options)`` for each number, through the real writer."""
    with CacheWriter(cache_dir, config, videos_per_shard) as writer:
        for number in numbers:
            writer.add(random_record(number, **record_options))
    return cache_dir


def add_foreign_shard(cache_dir: Path, numbers, work_dir: Path) -> Path:
    """Copy a real shard built with IMAGENET_CONFIG (videos ``numbers``, written in a cache
    under ``work_dir``) into ``cache_dir`` under the next free shard name."""
    foreign_cache = work_dir / "imagenet-cache"
    write_random_cache(foreign_cache, numbers, videos_per_shard=len(numbers), config=IMAGENET_CONFIG)
    source = foreign_cache / Index.load(foreign_cache).shards[-1].name
    taken = [shard_number(path.name) for path in cache_dir.glob("shard-*.h5")]
    destination = cache_dir / shard_name(1 + max(taken, default=-1))
    shutil.copyfile(source, destination)
    return destination


def flip_embedding_byte(path: Path, video: int = 0) -> None:
    """Invert one byte inside the stored embeddings of the shard's ``video``-th row (a bit rot)."""
    flip_chunk_byte(path, "face_embeddings", video)


def flip_chunk_byte(path: Path, dataset: str, chunk: int) -> None:
    """Invert one byte inside the ``chunk``-th stored chunk of a shard's ``dataset`` (a bit rot)."""
    with h5py.File(path, "r") as shard:
        offset = shard[dataset].id.get_chunk_info(chunk).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 100)
        byte = handle.read(1)
        handle.seek(offset + 100)
        handle.write(bytes([byte[0] ^ 0xFF]))

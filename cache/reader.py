"""Read a cache folder: one split's arrays across all shards, labels joined."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import numpy as np

from cache.labels import label_matrix, read_label_table
from cache.manifest import (
    Index,
    check_cache_exists,
    check_cache_folder,
    config_hash,
    foreign_advice,
    foreign_problem,
    read_config,
    repair_advice,
    shard_file_problem,
)
from cache.schema import (
    AUDIO_DIM,
    CROPS_DATASET,
    DURATION_DATASET,
    EMBEDDING_DIM,
    NUMERIC_DATASETS,
    SOUND_DATASET,
    SOUND_OFFSETS,
    SOUND_SAMPLES,
    SOURCE_DATASETS,
    STRING_DATASETS,
    VideoRecord,
)
from cache.sets import SHARD_SETS, coverage, is_set_name, read_set_rows, stored_set, stored_sets
from common.errors import CacheError

FEW_ROWS_FRACTION = 4  # rows read one by one when fewer than a quarter of the shard
DEFAULT_DATASETS = ("video_id", "face_embeddings", "audio_features", "face_found")


def _select_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    # Chunks hold one video each: a few rows are read alone, most of a shard in one
    # call (h5py's point selection is slow for many).
    return dataset[rows.tolist()] if rows.size * FEW_ROWS_FRACTION < len(dataset) else dataset[()][rows]


def holds(shard: h5py.File, name: str) -> bool:
    """Whether a shard stores the dataset ``name``: the sound track in either layout (see cache.schema)."""
    return name in shard or (name == SOUND_DATASET and SOUND_OFFSETS in shard)


def read_sounds(shard: h5py.File, rows) -> np.ndarray:
    """The sound tracks of some rows of an open shard, stored flat (schema 2) or variable-length (schema 1).

    Parameters
    ----------
    shard : h5py.File
    rows : sequence of int
        Increasing row numbers.

    Returns
    -------
    np.ndarray
        (len(rows),) object array, each item a (num_samples,) int16 track (empty without sound).

    Raises
    ------
    KeyError
        When the shard stores no sound track.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if SOUND_OFFSETS in shard:
        offsets, samples = shard[SOUND_OFFSETS][()], shard[SOUND_SAMPLES]
        tracks = [samples[offsets[row] : offsets[row + 1]] for row in rows]
    else:
        tracks = list(_select_rows(shard[SOUND_DATASET], rows))
    sounds = np.empty(len(tracks), dtype=object)
    for position, track in enumerate(tracks):  # item by item: tracks of equal length must not become a 2-D array
        sounds[position] = track
    return sounds


class CacheReader:
    """Read-only view of a cache folder.

    Checks on opening that the index and every shard it names are present with
    their recorded sizes; Fletcher-32 checksums catch damaged bytes as they are read,
    each shard's ids, splits and content hashes are compared with the index, and its
    ``config_hash`` attribute with the cache's config (a shard of another config is
    refused). Every refusal is a CacheError in the words of ``python -m cache verify``.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        check_cache_folder(self.cache_dir)
        check_cache_exists(self.cache_dir)
        config = read_config(self.cache_dir)
        if config is None:
            raise CacheError(f"{self.cache_dir}: not a cache (no config.json); build one with `make features`")
        self.config: dict = config
        self.config_hash = config_hash(config)
        self.index = Index.load(self.cache_dir)
        for entry in self.index.shards:
            problem = shard_file_problem(self.cache_dir / entry.name, entry)
            if problem:
                raise self._damaged(entry.name, problem)

    @property
    def frames(self) -> int:
        """T, the number of segments per video."""
        return int(self.config["frames"])

    @property
    def frames_per_segment(self) -> int:
        """k, the frames stored per segment."""
        return int(self.config.get("frames_per_segment", 1))

    def feature_sets(self) -> list[dict]:
        """The feature sets the cache holds: the two in the shards, then those added beside them.

        Returns
        -------
        list of dict
            One ``{name, source, dimension, identity, videos, bytes}`` per set, ``videos``
            the current videos it covers; the shards' sets have the cache's config hash as
            ``identity`` and ``bytes`` None.
        """
        videos = self.index.num_videos()
        in_shards = [
            {"name": name, "source": name.split(":")[0], "dimension": dimension, "identity": self.config_hash}
            | {"videos": videos, "bytes": None}
            for name, dimension in zip(SHARD_SETS, (EMBEDDING_DIM, AUDIO_DIM))
        ]
        beside = [
            {"name": found.name, "source": found.descriptor["source"], "dimension": found.dimension}
            | {"identity": found.identity, "videos": coverage(self.index, found), "bytes": found.size()}
            for found in stored_sets(self.cache_dir)
        ]
        return in_shards + beside

    def splits(self) -> dict[str, int]:
        """Number of cached videos per split."""
        return self.index.split_counts()

    def read(self, split: str, datasets: tuple[str, ...] = DEFAULT_DATASETS) -> dict[str, np.ndarray]:
        """Arrays of one split, concatenated across shards and sorted by video_id.

        Parameters
        ----------
        split : str
            Split name, e.g. ``train``.
        datasets : tuple of str
            Dataset names from the schema (``face_crops`` and the other stored sources are
            read only when named) and feature-set names ``SOURCE:EXTRACTOR``: the default
            sets ``face:resnet50`` and ``audio:pyaa`` (the shards' ``face_embeddings`` and
            ``audio_features``) and any set added with ``python -m extract add``.

        Returns
        -------
        dict of str to np.ndarray
            Each array, under the name asked for, has the split's N videos as its first axis,
            e.g. ``face_embeddings`` (N, T*k, 2048) float16; visual sets (N, T*k, D), audio
            sets (N, T, D).

        Raises
        ------
        CacheError
            For a set the cache does not hold, or whose part files lack a video.
        """
        stored = {
            name: stored_set(self.cache_dir, name) for name in datasets if is_set_name(name) and name not in SHARD_SETS
        }
        in_shards = tuple(dict.fromkeys(SHARD_SETS.get(name, name) for name in datasets if name not in stored))
        known = set(STRING_DATASETS) | set(NUMERIC_DATASETS) | set(SOURCE_DATASETS)
        unknown = [name for name in in_shards if name not in known]
        if unknown:
            raise KeyError(f"unknown dataset(s) {unknown}; known: {sorted(known)} and feature sets SOURCE:EXTRACTOR")
        splits = self.splits()
        if split not in splits:
            raise CacheError(f"{self.cache_dir}: no split {split!r}; splits are {', '.join(splits) or 'none'}")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in (*in_shards, *stored)}
        ids: list[str] = []
        for entry, mask in zip(self.index.shards, self.index.live_masks()):
            rows = np.flatnonzero((np.array(entry.splits) == split) & np.array(mask, dtype=bool))
            if rows.size:
                self._read_rows(entry, rows, in_shards, parts)
                keys = [(entry.content_hashes[row], entry.video_ids[row]) for row in rows]
                for name, found in stored.items():
                    parts[name].append(read_set_rows(self.cache_dir, found, entry.name, keys))
                ids.extend(entry.video_ids[row] for row in rows)
        order = np.argsort(np.array(ids, dtype=object), kind="stable")
        return {
            name: np.concatenate(parts[SHARD_SETS.get(name, name) if name not in stored else name])[order]
            for name in datasets
        }

    @functools.cached_property
    def _by_content_hash(self) -> dict:
        # The index is fixed for the reader's life; rebuilding this map per call made
        # re-recording many moved videos quadratic in the cache size.
        return self.index.content_hashes()

    def record(self, content_hash: str, crops: bool = True) -> VideoRecord:
        """The cached record of the video with this content hash.

        ``face_crops`` is None when ``crops`` is False or the shard has none; the other
        stored sources (sound track, duration, whole frames) are None where the shard has none.

        Raises
        ------
        KeyError
            When no current video has this content hash.
        """
        try:
            entry, row = self._by_content_hash[content_hash]
        except KeyError:
            raise KeyError(f"no cached video has content hash {content_hash}") from None
        sources = tuple(name for name in SOURCE_DATASETS if crops or name != CROPS_DATASET)
        datasets = (*STRING_DATASETS, *NUMERIC_DATASETS, *sources)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in datasets}
        self._read_rows(entry, np.array([row]), datasets, parts, optional=sources)
        values = {name: value[0][0] for name, value in parts.items() if value}
        if DURATION_DATASET in values:
            values[DURATION_DATASET] = float(values[DURATION_DATASET])
        return VideoRecord(**{**values, "has_audio": bool(values["has_audio"])})

    def _damaged(self, shard: str, problem: str) -> CacheError:
        return CacheError(f"{self.cache_dir / shard}: {problem}; {repair_advice(self.cache_dir)}")

    def _read_rows(
        self, entry, rows: np.ndarray, datasets: tuple[str, ...], parts: dict, optional: tuple[str, ...] = ()
    ) -> None:
        """Append the given rows of each dataset to ``parts``; datasets named in
        ``optional`` that the shard lacks are skipped instead of refused."""
        try:
            with h5py.File(self.cache_dir / entry.name, "r") as shard:
                foreign = foreign_problem(shard.attrs, self.config)
                if foreign:
                    raise CacheError(f"{self.cache_dir / entry.name}: {foreign}; {foreign_advice(self.cache_dir)}")
                for name, indexed in (
                    ("video_id", entry.video_ids),
                    ("split", entry.splits),
                    ("content_hash", entry.content_hashes),
                ):
                    if [value.decode() for value in shard[name][()]] != indexed:
                        raise self._damaged(entry.name, f"its {name} values differ from the index")
                for name in datasets:
                    if not holds(shard, name):
                        if name in optional:
                            continue
                        raise CacheError(
                            f"{self.cache_dir / entry.name}: no dataset {name!r} (was the cache built with crops switched off?)"
                        )
                    values = read_sounds(shard, rows) if name == SOUND_DATASET else _select_rows(shard[name], rows)
                    if name in STRING_DATASETS:
                        values = np.array([value.decode() for value in values], dtype=object)
                    parts[name].append(values)
        except (OSError, KeyError) as error:
            raise self._damaged(entry.name, f"damaged ({error})") from error

    def labels(self, video_ids) -> np.ndarray:
        """(N, 6) float32 labels in LABEL_NAMES order, NaN where unknown."""
        return label_matrix(read_label_table(self.cache_dir), list(video_ids))

    def shard_attributes(self) -> dict:
        """Attributes of the first shard (schema version, config, library versions)."""
        if not self.index.shards:
            return {}
        with h5py.File(self.cache_dir / self.index.shards[0].name, "r") as shard:
            attributes = dict(shard.attrs)
        attributes["library_versions"] = json.loads(attributes.get("library_versions", "{}"))
        return attributes

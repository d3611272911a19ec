"""Feature sets stored beside the shards: one folder per set, one part file per shard.

``CACHE/sets/<source>-<extractor>-<identity>/`` holds the set's ``descriptor.json``
(name, source, dimension, identity, the options that decide its numbers, library
versions) and ``part-<shard digits>.h5`` files. A part file holds the set's arrays
for the live rows of one shard, keyed by ``video_id`` and ``content_hash`` so that a
reader can match them to the shard's rows exactly; it is written under a temporary
name and renamed when complete, so a killed run leaves only finished parts. Finished
shards are never rewritten. The default sets (``face:resnet50``, ``audio:pyaa``) live in
the shards themselves, as ``face_embeddings`` and ``audio_features``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cache.errors import CacheError
from cache.manifest import Index, write_atomically
from cache.schema import TEMPORARY_SUFFIX

SETS_FOLDER = "sets"
DESCRIPTOR_FILE = "descriptor.json"
PART_PREFIX = "part-"
VALUES_DATASET = "values"
KEY_DATASETS = ("video_id", "content_hash")
# The sets every shard holds, by the shard dataset that holds them.
SHARD_SETS = {"face:resnet50": "face_embeddings", "audio:pyaa": "audio_features"}


def is_set_name(name: str) -> bool:
    """Whether a name asked of a reader is a feature set (``SOURCE:EXTRACTOR``) rather than a shard dataset."""
    return ":" in name


def part_name(shard: str) -> str:
    """The part file of a shard: ``shard-00003.h5`` -> ``part-00003.h5``."""
    return PART_PREFIX + shard.split("-", 1)[1]


@dataclass(frozen=True)
class StoredSet:
    """A feature set a cache holds beside its shards.

    Attributes
    ----------
    folder : Path
        ``CACHE/sets/<source>-<extractor>-<identity>``.
    descriptor : dict
        The contents of its ``descriptor.json``: ``name``, ``source``, ``dimension``,
        ``identity``, ``options`` (what decides the numbers) and ``library_versions``.
    """

    folder: Path
    descriptor: dict

    @property
    def name(self) -> str:
        return self.descriptor["name"]

    @property
    def identity(self) -> str:
        return self.descriptor["identity"]

    @property
    def dimension(self) -> int:
        return int(self.descriptor["dimension"])

    def part(self, shard: str) -> Path:
        """The part file holding this set's rows of ``shard``."""
        return self.folder / part_name(shard)

    def size(self) -> int:
        """Bytes on disk of its part files and descriptor."""
        return sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())


def set_folder(cache_dir: Path, name: str, identity: str) -> Path:
    """Where a set with this name and identity is stored."""
    return Path(cache_dir) / SETS_FOLDER / f"{name.replace(':', '-')}-{identity}"


def stored_sets(cache_dir: Path) -> list[StoredSet]:
    """The sets stored beside a cache's shards, by name (a folder without a readable descriptor is skipped)."""
    found = []
    for descriptor_file in sorted((Path(cache_dir) / SETS_FOLDER).glob(f"*/{DESCRIPTOR_FILE}")):
        try:
            found.append(StoredSet(descriptor_file.parent, json.loads(descriptor_file.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return found


def stored_set(cache_dir: Path, name: str) -> StoredSet:
    """The one stored set called ``name``.

    Raises
    ------
    CacheError
        When the cache holds no set of that name, or several (different identities).
    """
    matches = [found for found in stored_sets(cache_dir) if found.name == name]
    if not matches:
        held = ", ".join([*SHARD_SETS, *(found.name for found in stored_sets(cache_dir))])
        raise CacheError(
            f"{cache_dir}: holds no feature set {name!r} (it holds {held}); add it with `python -m extract add {cache_dir} --features {name}`"
        )
    if len(matches) > 1:
        identities = ", ".join(found.identity for found in matches)
        raise CacheError(
            f"{cache_dir}: holds {name} with several identities ({identities}); move the unwanted folders out of {cache_dir / SETS_FOLDER}"
        )
    return matches[0]


def write_descriptor(folder: Path, descriptor: dict) -> None:
    """Create the set's folder and write its descriptor (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / DESCRIPTOR_FILE, json.dumps(descriptor, indent=1, sort_keys=True))


def write_part(path: Path, video_ids: list[str], content_hashes: list[str], values: np.ndarray) -> None:
    """Write one part file under a temporary name, fsync it and rename it into place.

    Parameters
    ----------
    path : Path
        The final ``part-*.h5`` path.
    video_ids, content_hashes : list of str
        The N rows' keys, as the shard holds them.
    values : np.ndarray
        (N, rows, D): (N, T*k, D) for visual sets, (N, T, D) for audio sets.
    """
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    string_type = h5py.string_dtype("utf-8")
    try:
        with h5py.File(temporary, "w") as part:
            for name, keys in zip(KEY_DATASETS, (video_ids, content_hashes)):
                part.create_dataset(name, data=np.array(keys, dtype=object), dtype=string_type, track_times=False)
            part.create_dataset(
                VALUES_DATASET, data=values, chunks=(1, *values.shape[1:]), fletcher32=True, track_times=False
            )
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def part_keys(path: Path) -> list[tuple[str, str]]:
    """(content_hash, video_id) of each row of a part file."""
    with h5py.File(path, "r") as part:
        ids, hashes = ([value.decode() for value in part[name][()]] for name in KEY_DATASETS)
    return list(zip(hashes, ids))


def part_problem(found: StoredSet, shard: str, keys: list[tuple[str, str]]) -> str | None:
    """Why ``found``'s part of ``shard`` cannot serve the rows with these (content_hash, video_id) keys, or None."""
    path = found.part(shard)
    if not path.is_file():
        return f"{found.name} has no part file for {shard} ({path} is missing)"
    try:
        held = set(part_keys(path))
    except (OSError, KeyError) as error:
        return f"{path}: unreadable ({error})"
    missing = [video_id for content_hash, video_id in keys if (content_hash, video_id) not in held]
    if missing:
        return f"{path}: lacks {len(missing)} of {shard}'s videos (e.g. {missing[0]})"
    return None


def read_set_rows(cache_dir: Path, found: StoredSet, shard: str, keys: list[tuple[str, str]]) -> np.ndarray:
    """The set's arrays of the rows with these keys, in their order.

    Raises
    ------
    CacheError
        When the part file is missing, unreadable, damaged (Fletcher-32) or lacks a row:
        a missing row never reads as fill values.
    """
    problem = part_problem(found, shard, keys)
    advice = f"run `python -m extract add {cache_dir} --features {found.name}` to compute what is missing"
    if problem:
        raise CacheError(f"{problem}; {advice}")
    path = found.part(shard)
    try:
        where = {key: row for row, key in enumerate(part_keys(path))}
        with h5py.File(path, "r") as part:
            values = part[VALUES_DATASET][()]
    except (OSError, KeyError) as error:
        raise CacheError(f"{path}: damaged ({error}); {advice}") from error
    return values[[where[key] for key in keys]]


def coverage(index: Index, found: StoredSet) -> int:
    """Current videos of the cache whose rows the set's part files hold."""
    covered = 0
    for entry, mask in zip(index.shards, index.live_masks()):
        keys = [(entry.content_hashes[row], entry.video_ids[row]) for row in range(len(mask)) if mask[row]]
        path = found.part(entry.name)
        if keys and path.is_file():
            try:
                held = set(part_keys(path))
            except (OSError, KeyError):
                continue
            covered += sum(key in held for key in keys)
    return covered

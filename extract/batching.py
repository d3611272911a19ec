"""Embed face crops in full ResNet50 batches across video boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cache.schema import EMBEDDING_DIM, VideoRecord
from extract.config import ExtractOptions
from extract.worker import PreparedVideo, embed_crops


class CropBatcher:
    """Gather the crops of consecutive videos into batches of ``options.embed.batch_size``.

    A video's crops may span two batches: its record is released once all of
    them are embedded, so ResNet50 (and a GPU) sees only full batches except the
    last one of a run.
    """

    def __init__(self, options: ExtractOptions):
        self.options = options
        self.videos: list[PreparedVideo] = []  # waiting, in order
        self.crops: list[np.ndarray] = []  # their crops not yet embedded, in order
        self.embeddings: list[np.ndarray] = []  # embedded crops of the waiting videos

    def _embed(self, count: int) -> None:
        waiting = np.concatenate(self.crops)
        self.crops = [waiting[count:]]
        self.embeddings.append(embed_crops(waiting[:count], self.options))

    def _ready(self) -> Iterator[VideoRecord]:
        embedded = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, EMBEDDING_DIM), np.float16)
        start = 0
        while self.videos and start + len(self.videos[0].crops) <= len(embedded):
            video = self.videos.pop(0)
            yield video.record(embedded[start : start + len(video.crops)], self.options.keep_crops)
            start += len(video.crops)
        self.embeddings = [embedded[start:]]

    def add(self, video: PreparedVideo) -> Iterator[VideoRecord]:
        """Queue one video; yield the records of every video now fully embedded."""
        self.videos.append(video)
        self.crops.append(video.crops)
        waiting = sum(len(crops) for crops in self.crops)
        size = self.options.embed.batch_size
        if waiting >= size:
            self._embed(waiting - waiting % size)
            yield from self._ready()

    def finish(self) -> Iterator[VideoRecord]:
        """Embed whatever is left (one smaller batch) and yield the remaining records."""
        waiting = sum(len(crops) for crops in self.crops)
        if waiting:
            self._embed(waiting)
        yield from self._ready()

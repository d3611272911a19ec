"""extract/batching.py: crops of consecutive videos embedded in full ResNet50 batches."""

from __future__ import annotations

import numpy as np

import extract.worker as worker
from cache.schema import AUDIO_DIM
from common.options import replace
from extract.batching import CropBatcher
from extract.embed import embed
from extract.inputs import VideoJob


def test_crops_are_embedded_in_full_batches_across_videos(monkeypatch, tiny_options):
    batch_sizes = []

    def counting_embed(crops, *arguments):
        batch_sizes.append(len(crops))
        return embed(crops, *arguments)

    monkeypatch.setattr(worker, "embed", counting_embed)
    options = replace(tiny_options, batch_size=4)
    rng = np.random.default_rng(0)
    videos = []
    for index, count in enumerate((3, 5, 7, 2)):
        crops = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        job = VideoJob(f"v{index}.mp4", "train", f"v{index}.mp4", f"{index:064d}")
        videos.append(
            worker.PreparedVideo(
                job,
                crops,
                np.zeros(count, np.float32),
                np.zeros((count, 4), np.int32),
                np.ones(count, bool),
                np.zeros((4, AUDIO_DIM), np.float32),
                True,
            )
        )
    batcher = CropBatcher(options)
    records = [record for video in videos for record in batcher.add(video)] + list(batcher.finish())
    assert [record.video_id for record in records] == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    assert all(size % 4 == 0 for size in batch_sizes[:-1]) and sum(batch_sizes) == 17
    for video, record in zip(videos, records):
        direct = embed(video.crops, options.embed, options.seed)
        np.testing.assert_allclose(
            record.face_embeddings.astype(np.float32), direct.astype(np.float32), rtol=1e-2, atol=1e-2
        )
        assert record.face_crops is video.crops

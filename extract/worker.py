"""What a worker process does with one video: decode, find faces, crop, audio, and
(on a cluster) embed, returning arrays and never raising for a bad video."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from cache.schema import VideoRecord
from extract.audio import audio_features
from extract.config import ExtractOptions
from extract.embed import embed
from extract.faces import crop_faces, locate_faces
from extract.inputs import Failure, VideoJob
from extract.video import VideoError, decode

# Failures a single video may cause; anything else is a bug and stops the run.
VIDEO_FAILURES = (VideoError, av.error.FFmpegError, cv2.error, OSError, ValueError, MemoryError)


@dataclass(frozen=True)
class PreparedVideo:
    """A video's worker-side results, waiting for its crops to be embedded."""

    job: VideoJob
    crops: np.ndarray  # (T*k, S, S, 3) uint8
    frame_times: np.ndarray  # (T*k,) float32
    face_boxes: np.ndarray  # (T*k, 4) int32
    face_found: np.ndarray  # (T*k,) bool
    audio_features: np.ndarray  # (T, 68) float32
    has_audio: bool
    sound_track: np.ndarray | None = None  # (num_samples,) int16 when kept
    duration: float | None = None  # seconds of video
    whole_frames: np.ndarray | None = None  # (T*k, S, S, 3) uint8 when kept

    def record(self, embeddings: np.ndarray, keep_crops: bool) -> VideoRecord:
        """The cache record once ``embeddings`` ((T*k, 2048) float16) are known."""
        return VideoRecord(
            video_id=self.job.video_id,
            split=self.job.split,
            content_hash=self.job.content_hash,
            source=self.job.path,
            face_embeddings=embeddings,
            audio_features=self.audio_features,
            frame_times=self.frame_times,
            face_boxes=self.face_boxes,
            face_found=self.face_found,
            has_audio=self.has_audio,
            face_crops=self.crops if keep_crops else None,
            sound_track=self.sound_track,
            duration=self.duration,
            whole_frames=self.whole_frames,
        )


@functools.cache
def _configure_worker() -> None:
    # Each worker handles one video at a time; OpenCV's own thread pool would only
    # compete with the other workers for the same cores.
    # With --jobs 1 this runs in the parent itself, which keeps OpenCV's threads
    # (the cores are its alone) and its Ctrl-C handler.
    if multiprocessing.parent_process() is None:
        return
    cv2.setNumThreads(1)
    # Ctrl-C in a terminal reaches every process of the group: the parent decides
    # when to stop, so a worker process must not die half way through a video.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def decoder_threads(workers: int) -> int:
    """Decoder threads per worker: the cores shared out, so that parallel workers do
    not oversubscribe them (measured: frame threading in each of 2 workers on 2
    cores was ~8% slower per video than one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)


def letterbox(frames: np.ndarray, side: int) -> np.ndarray:
    """Whole frames resized to fit a square, the rest black, so that nothing is cut off.

    Parameters
    ----------
    frames : np.ndarray
        (N, H, W, 3) uint8.
    side : int
        S, the square's side in pixels.

    Returns
    -------
    np.ndarray
        (N, S, S, 3) uint8, each frame scaled by S / max(H, W) and centred.
    """
    height, width = frames.shape[1:3]
    scale = side / max(height, width)
    inner_height, inner_width = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = (side - inner_height) // 2, (side - inner_width) // 2
    boxed = np.zeros((len(frames), side, side, 3), np.uint8)
    for index, frame in enumerate(frames):
        resized = cv2.resize(frame, (inner_width, inner_height), interpolation=cv2.INTER_AREA)
        boxed[index, top : top + inner_height, left : left + inner_width] = resized
    return boxed


def embed_crops(crops: np.ndarray, options: ExtractOptions) -> np.ndarray:
    """(N, S, S, 3) uint8 crops -> (N, 2048) float16 embeddings with the run's model."""
    return embed(crops, options.embed, options.seed)


def prepare_video(
    job: VideoJob, options: ExtractOptions, embed_here: bool = False
) -> PreparedVideo | VideoRecord | Failure:
    """Decode, find faces, crop and compute audio features for one video.

    With ``embed_here`` (workers of a cluster) the crops are embedded in this
    process too and the finished record is returned, so that the client only
    writes shards. Returns a Failure with a one-line reason instead of raising, so
    that one bad file never cancels the other workers' videos.
    """
    _configure_worker()
    decoding = options.decode
    rng = None
    if decoding.sampling == "random":
        rng = np.random.default_rng([options.seed, int(job.content_hash[:8], 16)])
    try:
        decoded = decode(Path(job.path), decoding, rng, decoder_threads(options.workers))
        boxes = locate_faces(decoded.frames, options.faces)
        crops = crop_faces(decoded.frames, boxes.used, options.faces)
        audio = audio_features(decoded.audio, decoding.audio_rate, decoded.duration, decoding.frames, options.audio)
    except VIDEO_FAILURES as error:
        return Failure(job.path, str(error).splitlines()[0] if str(error) else type(error).__name__)
    sound = None
    if options.keep_audio:
        sound = decoded.audio if decoded.audio is not None else np.zeros(0, np.int16)
    prepared = PreparedVideo(
        job,
        crops,
        decoded.frame_times,
        boxes.detected,
        boxes.found,
        audio,
        decoded.audio is not None,
        sound,
        decoded.duration,
        letterbox(decoded.frames, options.faces.crop_size) if options.keep_frames else None,
    )
    if embed_here:
        return prepared.record(embed_crops(crops, options), options.keep_crops)
    return prepared

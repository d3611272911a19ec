"""Options of the extraction stage."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from cache.manifest import file_digest
from extract.embed import REDUCED_PRECISION_RUNTIMES, RUNTIMES

SAMPLING_MODES = ("centre", "random")
AUDIO_MODES = ("mean", "window")  # mean of 50 ms windows per segment, or one window per segment (original project)
BACKENDS = ("loky", "dask")

# Options that change the numbers in the cache; the rest only change how fast they come.
RUN_ONLY_FIELDS = ("jobs", "backend", "scheduler", "videos_per_shard", "batch_size")


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides how a video becomes cached features.

    Attributes
    ----------
    frames : int
        T, segments of equal length per video.
    frames_per_segment : int
        k frames stored per segment (k x T in all) so training can pick one per epoch.
    sampling : str
        ``centre`` of each segment (or of each of its k sub-segments), or ``random``
        (a seeded position within each sub-segment).
    seed : int
        Seeds random sampling (mixed with each video's content hash) and the random
        ResNet50 weights of ``--weights none``.
    crop_size : int
        S, side of the square face crop fed to ResNet50 (32 or more).
    face_margin : float
        Extra border around the detected box, as a fraction of its side.
    detect_height : int
        Frames are downscaled to this height (pixels) for Haar detection: 240 finds
        the same talking-head boxes as 360 (within a few source pixels on the
        ChaLearn clips) at about half the cost.
    min_face : float
        Smallest face searched, as a fraction of the frame height.
    scale_factor, min_neighbors, min_neighbors_floor : float, int, int
        Haar cascade parameters; a frame with no face is retried with minNeighbors
        lowered in steps of 2 down to the floor.
    weights : str
        ``imagenet``, ``none`` (random, real architecture) or a weights file path.
    runtime : str
        ResNet50 runtime, one of ``extract.embed.RUNTIMES`` (``auto``, ``keras``,
        ``openvino``: float32, the same cache; ``openvino-bf16``, ``keras-mixed``:
        reduced precision, recorded in the cache config).
    audio_rate : int
        Hz every sound track is resampled to.
    audio_window, audio_step : float
        Seconds of pyAudioAnalysis short-term windows.
    audio_mode : str
        ``mean`` or ``window`` (see AUDIO_MODES).
    keep_crops : bool
        Store the face crops in the cache.
    jobs : int
        Parallel workers for decoding; 0 means all cores.
    backend : str
        ``loky`` (local processes) or ``dask``.
    scheduler : str or None
        Address of an existing Dask scheduler; None starts a LocalCluster.
    videos_per_shard : int
        Videos per HDF5 shard.
    batch_size : int
        Crops per ResNet50 call, gathered across videos.
    """

    frames: int = 10
    frames_per_segment: int = 1
    sampling: str = "centre"
    seed: int = 0
    crop_size: int = 224
    face_margin: float = 0.2
    detect_height: int = 240
    min_face: float = 0.125
    scale_factor: float = 1.2
    min_neighbors: int = 10
    min_neighbors_floor: int = 4
    weights: str = "imagenet"
    runtime: str = "auto"
    audio_rate: int = 16000
    audio_window: float = 0.050
    audio_step: float = 0.025
    audio_mode: str = "mean"
    keep_crops: bool = True
    jobs: int = 0
    backend: str = "loky"
    scheduler: str | None = None
    videos_per_shard: int = 64
    batch_size: int = 32

    def __post_init__(self):
        checks = [
            (self.frames >= 1, f"--frames must be at least 1, got {self.frames}"),
            (self.frames_per_segment >= 1, f"--frames-per-segment must be at least 1, got {self.frames_per_segment}"),
            (self.sampling in SAMPLING_MODES, f"--sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}"),
            (
                self.crop_size >= 32,
                f"--crop-size must be at least 32 (ResNet50's smallest input), got {self.crop_size}",
            ),
            (self.audio_mode in AUDIO_MODES, f"--audio-mode must be one of {AUDIO_MODES}, got {self.audio_mode!r}"),
            (self.runtime in RUNTIMES, f"--runtime must be one of {RUNTIMES}, got {self.runtime!r}"),
            (self.backend in BACKENDS, f"--backend must be one of {BACKENDS}, got {self.backend!r}"),
            (self.jobs >= 0, f"--jobs must be 0 (all cores) or more, got {self.jobs}"),
            (
                1 <= self.min_neighbors_floor <= self.min_neighbors,
                "--min-neighbors-floor must be between 1 and --min-neighbors",
            ),
            (self.detect_height >= 32, f"--detect-height must be at least 32, got {self.detect_height}"),
            (
                0.0 < self.min_face <= 1.0,
                f"--min-face must be a fraction of the frame height in (0, 1], got {self.min_face}",
            ),
            (
                self.scale_factor > 1.0,
                f"--scale-factor must be above 1 (the Haar pyramid's step), got {self.scale_factor}",
            ),
            (self.face_margin >= 0.0, f"--face-margin must be 0 or more, got {self.face_margin}"),
            (
                self.audio_rate >= 8000,
                f"--audio-rate must be at least 8000 Hz (pyAudioAnalysis' filter bank needs it), got {self.audio_rate}",
            ),
            (
                0.0 < self.audio_step and 0.0 < self.audio_window,
                "--audio-window and --audio-step must be positive seconds",
            ),
            (
                self.videos_per_shard >= 1 and self.batch_size >= 1,
                "--videos-per-shard and --batch-size must be at least 1",
            ),
        ]
        for passed, message in checks:
            if not passed:
                raise ValueError(message)

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1

    def resolved(self) -> ExtractOptions:
        """Options with a weights file path made absolute (so it can be found again).

        Raises
        ------
        ValueError
            When ``weights`` names a file that does not exist.
        """
        if self.weights in ("imagenet", "none"):
            return self
        path = Path(self.weights).expanduser().resolve()
        if not path.is_file():
            raise ValueError(
                f"--weights {self.weights}: no such file; expected imagenet, none, or a ResNet50 include_top=False weights file (.h5 or .weights.h5)"
            )
        return dataclasses.replace(self, weights=str(path))

    def feature_config(self) -> dict:
        """The options that decide the cached numbers: the cache's identity."""
        config = {
            key: value
            for key, value in dataclasses.asdict(self).items()
            if key not in RUN_ONLY_FIELDS and key != "runtime"
        }
        # Float32 runtimes give Keras' numbers within float16 storage precision: one cache.
        if self.runtime in REDUCED_PRECISION_RUNTIMES:
            config["runtime"] = self.runtime
        if self.weights not in ("imagenet", "none"):
            config["weights_sha256"] = file_digest(Path(self.weights))
        return config

    @classmethod
    def from_dict(cls, config: dict) -> ExtractOptions:
        """Rebuild options from a recorded config (unknown keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in names})

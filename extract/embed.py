"""ResNet50 embeddings of face crops on the fastest runtime that gives the same numbers.

Runtimes (``--runtime``):

- ``keras``: Keras 3 on TensorFlow in float32, on a GPU when TensorFlow sees one
  (TensorFloat-32 switched off so a GPU gives float32 numbers too).
- ``openvino``: the same Keras model converted once by OpenVINO and run on the CPU
  in float32. Its outputs equal Keras' within float16 storage precision, so it
  shares Keras' cache config; it is faster on a CPU (see ``bench/embed_bench.py``).
- ``openvino-bf16``: OpenVINO on the CPU in bfloat16, about twice as fast again on
  CPUs with bf16 instructions, but its outputs differ from Keras' by more than
  float16 storage precision: recorded in the cache config, so its cache never
  mixes with a float32 one.
- ``keras-mixed``: Keras mixed precision (float16 compute, float32 variables), for
  GPUs with tensor cores; recorded in the cache config for the same reason.
- ``auto``: ``keras`` when TensorFlow sees a GPU, else ``openvino`` when it is
  installed, else ``keras``. It only ever picks a float32 runtime, so a cache
  never changes config with the machine that extends it.

TensorFlow and OpenVINO are imported lazily: importing this module pulls neither.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.schema import EMBEDDING_DIM
from common.errors import OptionError
from common.options import Role, option
from common.quiet import start_keras, start_tensorflow

# Keras' own origin and checksum for the ImageNet ResNet50 without its top layer.
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_MD5 = "4d473c1dd8becc155b73f8504c6f6626"

GLOROT_SCALE = 6.0  # Glorot uniform draws from +-sqrt(6 / (fan_in + fan_out)): Keras' default kernel initializer
NAMED_WEIGHTS = ("imagenet", "none")  # weights named rather than given as a file path
RUNTIMES = ("auto", "keras", "openvino", "openvino-bf16", "keras-mixed")
# Runtimes whose numbers differ from Keras float32 by more than float16 storage precision:
# they are part of the cache config. The others give the same cache.
REDUCED_PRECISION_RUNTIMES = ("openvino-bf16", "keras-mixed")
# Runtimes that give Keras float32's numbers within float16 storage precision, those of
# caches built before runtimes existed: a cache's identity leaves them out (``legacy``).
FLOAT32_RUNTIMES = tuple(runtime for runtime in RUNTIMES if runtime not in REDUCED_PRECISION_RUNTIMES)
OPENVINO_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}  # INFERENCE_PRECISION_HINT
FLOAT16_ROUNDOFF = 2.0**-11  # relative rounding error of float16 storage (10-bit mantissa)
FLOAT16_SMALLEST_NORMAL = 2.0**-14  # below it float16 keeps less than full relative precision
# What starting each runtime's ResNet50 involves, for the line printed before it starts.
LOADING = {
    "auto": "Keras, then converted for OpenVINO unless TensorFlow sees a GPU",
    "keras": "Keras",
    "keras-mixed": "Keras, mixed float16",
    "openvino": "Keras, then converted for OpenVINO float32",
    "openvino-bf16": "Keras, then converted for OpenVINO bfloat16",
}
# From a cold start to a model ready for its first batch: 7 s on an idle 16-core CPU, up to
# 38 s on a busy 2-core one (TensorFlow's import, the build, the weights, the conversion).
LOADING_TIME = "up to about 40 s, on every run"
# Several one-thread requests, each batch split between them: faster than one request on all
# cores, and less slowed by decoding workers sharing the cores (bench/embed_bench.py).
OPENVINO_HINT = "THROUGHPUT"


def within_float16_storage(values: np.ndarray, reference: np.ndarray) -> bool:
    """Whether ``values`` differ from ``reference`` by less than float16 storage rounds away:
    the condition for two runtimes to share a cache config. Arrays of any equal shape."""
    return bool(np.all(np.abs(values - reference) <= FLOAT16_ROUNDOFF * np.abs(reference) + FLOAT16_SMALLEST_NORMAL))


class WeightsError(OptionError):
    """The requested ResNet50 weights cannot be found or loaded (an error of the ``weights`` option)."""

    def __init__(self, problem: str):
        super().__init__("weights", problem)


class RuntimeUnavailableError(OptionError):
    """The requested inference runtime is not installed or not supported by this machine."""

    def __init__(self, problem: str):
        super().__init__("runtime", problem)


def _check_runtime_name(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise OptionError("runtime", f"must be one of {RUNTIMES}, got {runtime!r}")


@dataclass(frozen=True)
class EmbedOptions:
    """Which ResNet50 embeds the face crops, and how (see the module docstring for the runtimes)."""

    weights: str = option(
        "imagenet",
        "imagenet | none (random, for tests) | PATH to ResNet50 include_top=False weights.",
        metavar="WEIGHTS",
    )
    runtime: str = option(
        "auto",
        "ResNet50 runtime: auto (keras on a GPU, else openvino if installed) | keras | openvino (float32, same cache) | openvino-bf16 | keras-mixed (faster, a cache config of their own).",
        metavar="RUNTIME",
        legacy=FLOAT32_RUNTIMES,
    )
    batch_size: int = option(32, "Face crops per ResNet50 batch (gathered across videos).", metavar="N", role=Role.RUN)

    def __post_init__(self):
        _check_runtime_name(self.runtime)
        if self.batch_size < 1:
            raise OptionError("batch_size", f"must be at least 1, got {self.batch_size}")

    @property
    def weights_file(self) -> Path | None:
        """The weights file, or None for named weights (``imagenet``, ``none``)."""
        return None if self.weights in NAMED_WEIGHTS else Path(self.weights)

    def resolved(self) -> EmbedOptions:
        """Options with a weights file path made absolute (so it can be found again).

        Raises
        ------
        OptionError
            When ``weights`` names a file that does not exist.
        """
        if self.weights_file is None:
            return self
        path = self.weights_file.expanduser().resolve()
        if not path.is_file():
            raise OptionError(
                "weights",
                f"{self.weights}: no such file; expected imagenet, none, or a ResNet50 include_top=False weights file (.h5 or .weights.h5)",
            )
        return dataclasses.replace(self, weights=str(path))


def keras_home() -> Path:
    """Keras' cache folder: ``$KERAS_HOME`` or ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()


def imagenet_weights_path() -> Path:
    """Path of the ImageNet weights in Keras' cache, downloading them on first use.

    Raises
    ------
    WeightsError
        When the file is not cached and cannot be downloaded, saying where to get it.
    """
    keras = start_keras()
    try:
        return Path(
            keras.utils.get_file(
                IMAGENET_FILE,
                IMAGENET_ORIGIN,
                cache_dir=str(keras_home()),
                cache_subdir="models",
                file_hash=IMAGENET_MD5,
            )
        )
    # keras.utils.get_file re-raises every download failure as a bare Exception.
    except Exception as error:  # noqa: BLE001
        raise WeightsError(
            f"imagenet: ImageNet weights are not cached and cannot be downloaded ({error}). "
            f"Download {IMAGENET_ORIGIN} on a machine with internet and either put it at {keras_home() / 'models' / IMAGENET_FILE} "
            f"or pass `weights` /path/to/{IMAGENET_FILE}; `weights` none runs with random weights"
        ) from error


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU."""
    return bool(start_tensorflow().config.list_physical_devices("GPU"))


def _import_openvino(runtime: str = "openvino"):
    """The ``openvino`` module, or a RuntimeUnavailableError saying how to install it."""
    try:
        import openvino
    except ImportError as error:
        raise RuntimeUnavailableError(
            f"{runtime} needs the openvino package ({error}); install it with `pip install openvino`, or pass `runtime` keras"
        ) from error
    return openvino


def check_runtime(runtime: str) -> None:
    """Fail early when a forced runtime cannot run here (``auto`` always can).

    Raises
    ------
    RuntimeUnavailableError
        An OpenVINO runtime without the package, or bf16 on a CPU without bf16 support.
    """
    if runtime not in OPENVINO_PRECISION:
        return
    openvino = _import_openvino(runtime)
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    # Without bf16 instructions OpenVINO would quietly compute in f32 under a bf16 config.
    if runtime == "openvino-bf16" and "BF16" not in capabilities:
        raise RuntimeUnavailableError(
            f"openvino-bf16: this CPU has no bf16 support (OpenVINO reports {capabilities}); pass `runtime` openvino"
        )


@functools.cache
def resolve_runtime(runtime: str) -> str:
    """The concrete runtime that ``runtime`` stands for on this machine.

    Parameters
    ----------
    runtime : str
        One of RUNTIMES.

    Returns
    -------
    str
        ``runtime`` itself, or for ``auto``: ``keras`` on a GPU, else ``openvino`` when
        it is installed, else ``keras``.

    Raises
    ------
    OptionError
        For a name not in RUNTIMES.
    RuntimeUnavailableError
        As in ``check_runtime``.
    """
    _check_runtime_name(runtime)
    if runtime != "auto":
        check_runtime(runtime)
        return runtime
    if gpu_visible():
        return "keras"
    try:
        _import_openvino()
    except RuntimeUnavailableError:
        return "keras"
    return "openvino"


@functools.cache
def build_resnet(weights: str, crop_size: int, seed: int = 0, mixed_precision: bool = False):
    """Frozen Keras ResNet50 (include_top=False, average pooling), built once per process.

    Parameters
    ----------
    weights : str
        ``imagenet``, ``none`` (random weights seeded by ``seed``) or a weights file path.
    crop_size : int
        Side of the square input (32 or more).
    mixed_precision : bool
        Build under Keras' ``mixed_float16`` policy (float16 compute, float32 variables).
    """
    keras = start_keras()
    if weights == "none":
        source = None
    elif weights == "imagenet":
        source = str(imagenet_weights_path())
    else:
        if not Path(weights).is_file():
            raise WeightsError(
                f"{weights}: weights file not found; expected a ResNet50 include_top=False weights file (.h5 or .weights.h5)"
            )
        source = weights
    # keras.applications takes no dtype: the global policy decides it while the layers are built.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        model = keras.applications.ResNet50(
            include_top=False, weights=source, input_shape=(crop_size, crop_size, 3), pooling="avg"
        )
    except (ValueError, OSError) as error:
        raise WeightsError(f"{weights}: cannot load as ResNet50 include_top=False weights ({error})") from error
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if weights == "none":
        _draw_random_kernels(model, seed)
    model.trainable = False
    return model


def _draw_random_kernels(model, seed: int) -> None:
    """Give every kernel Keras' default Glorot-uniform values, drawn from numpy with ``seed``.

    Keras draws initial values from process-wide seed state that other threads of a
    Dask worker consume too, so the same seed gave each worker other random weights;
    a private generator gives every process the same model. Biases and batch-norm
    statistics keep their constant initial values.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) < 2:
            continue
        receptive_field = int(np.prod(shape[:-2]))
        fan_in, fan_out = receptive_field * shape[-2], receptive_field * shape[-1]
        limit = np.sqrt(GLOROT_SCALE / (fan_in + fan_out))
        variable.assign(rng.uniform(-limit, limit, shape).astype(variable.dtype))


@functools.cache
def _keras_runner(weights: str, crop_size: int, seed: int, runtime: str):
    """A function (N, S, S, 3) float32 -> (N, 2048) float32 on Keras."""
    if runtime == "keras":
        # TensorFloat-32 (on by default on Ampere and later GPUs) rounds products to 10 bits:
        # off, so the float32 runtime gives float32 numbers on any device.
        start_tensorflow().config.experimental.enable_tensor_float_32_execution(False)
    model = build_resnet(weights, crop_size, seed, mixed_precision=runtime == "keras-mixed")
    # predict_on_batch: as fast as a tf.function of model(x, training=False) and faster
    # than calling the model eagerly, on CPU at batch 32 (bench/embed_bench.py).
    return lambda batch: np.asarray(model.predict_on_batch(batch), dtype=np.float32)


@functools.cache
def openvino_model(weights: str, crop_size: int, seed: int = 0):
    """The Keras ResNet50 converted by OpenVINO (an ``openvino.Model``), once per process."""
    openvino = _import_openvino()
    model = build_resnet(weights, crop_size, seed)
    with warnings.catch_warnings():
        # Tracing a functional Keras model with a positional input warns about its structure; harmless.
        warnings.filterwarnings("ignore", message="The structure of `inputs`", category=UserWarning)
        return openvino.convert_model(model)


@functools.cache
def compiled_openvino(weights: str, crop_size: int, seed: int, runtime: str, hint: str = OPENVINO_HINT):
    """The converted model compiled for the CPU at the runtime's precision, once per process."""
    openvino = _import_openvino()
    return openvino.Core().compile_model(
        openvino_model(weights, crop_size, seed),
        "CPU",
        {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[runtime], "PERFORMANCE_HINT": hint},
    )


def openvino_function(weights: str, crop_size: int, seed: int, runtime: str, hint: str = OPENVINO_HINT):
    """A function (N, S, S, 3) float32 -> (N, 2048) float32 on OpenVINO.

    Each crop is its own request, spread over the compiled model's parallel requests:
    a crop's embedding then never depends on the other crops of its batch (split
    batches of varying sizes changed the last bits), and it measured faster than
    splitting each batch between the requests (22.5 vs 20.3 img/s, 224 px, 2 cores).
    """
    openvino = _import_openvino()
    compiled = compiled_openvino(weights, crop_size, seed, runtime, hint)
    # Requests are not shared between threads: each caller gets its own.
    queue = openvino.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = [None] * len(batch)

        def keep(request, index: int) -> None:
            # A copy: the request's buffer is reused by its next crop.
            outputs[index] = request.get_output_tensor(0).data.astype(np.float32)

        queue.set_callback(keep)
        for index in range(len(batch)):
            queue.start_async([batch[index : index + 1]], index)
        queue.wait_all()
        return np.concatenate(outputs)

    return run


def inference_function(weights: str, crop_size: int, seed: int, runtime: str):
    """ResNet50 on the runtime that ``runtime`` resolves to here.

    Returns
    -------
    callable
        (N, S, S, 3) float32 preprocessed crops -> (N, 2048) float32 embeddings.

    Raises
    ------
    WeightsError, RuntimeUnavailableError
    """
    concrete = resolve_runtime(runtime)
    return (openvino_function if concrete in OPENVINO_PRECISION else _keras_runner)(weights, crop_size, seed, concrete)


def loading_line(runtime: str) -> str:
    """The line to print before `inference_function` starts ``runtime``'s model."""
    return f"loading TensorFlow and ResNet50 ({LOADING[runtime]}): {LOADING_TIME}"


def preprocess(crops: np.ndarray) -> np.ndarray:
    """ImageNet (caffe mode) preprocessing that matches Keras' ResNet50 weights.

    Parameters
    ----------
    crops : np.ndarray
        (N, S, S, 3) uint8 RGB.

    Returns
    -------
    np.ndarray
        (N, S, S, 3) float32 BGR with the ImageNet channel means subtracted.
    """
    return start_keras().applications.resnet50.preprocess_input(crops.astype(np.float32))


def embed_float32(crops: np.ndarray, options: EmbedOptions, seed: int) -> np.ndarray:
    """ResNet50 embeddings of face crops, before float16 storage.

    Parameters
    ----------
    crops : np.ndarray
        (N, S, S, 3) uint8 RGB; the model's input side is S.
    options : EmbedOptions
        Weights, runtime and crops per inference call.
    seed : int
        Seeds the random weights of ``none`` (as in ``build_resnet``).

    Returns
    -------
    np.ndarray
        (N, 2048) float32.

    Raises
    ------
    WeightsError, RuntimeUnavailableError
    """
    runner = inference_function(options.weights, crops.shape[1], seed, options.runtime)
    size = options.batch_size
    outputs = [runner(preprocess(crops[start : start + size])) for start in range(0, len(crops), size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, EMBEDDING_DIM), np.float32)


def embed(crops: np.ndarray, options: EmbedOptions, seed: int) -> np.ndarray:
    """ResNet50 embeddings of face crops, as stored in the cache.

    Parameters
    ----------
    crops : np.ndarray
        (N, S, S, 3) uint8 RGB.
    options, seed
        As in ``embed_float32``.

    Returns
    -------
    np.ndarray
        (N, 2048) float16.
    """
    return embed_float32(crops, options, seed).astype(np.float16)

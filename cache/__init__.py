"""Feature cache: HDF5 shards of per-video features, an index, labels and failures.

Needs only the standard library, numpy and h5py; never imports TensorFlow.
"""

from cache.reader import CacheReader
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, LABEL_NAMES, TRAITS, VideoRecord
from cache.writer import CacheWriter
from common.errors import CacheError, LabelError

__all__ = [
    "AUDIO_DIM",
    "EMBEDDING_DIM",
    "LABEL_NAMES",
    "TRAITS",
    "CacheError",
    "CacheReader",
    "CacheWriter",
    "LabelError",
    "VideoRecord",
]

"""Training stage: fit, compare, evaluate and use Big Five heads from the feature cache.

Reads only the cache (and, for ``predict`` on new videos, the recorded extraction).
Keras is imported lazily, so ``import train.config`` and friends stay light.
"""

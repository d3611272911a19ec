"""Exceptions raised by the cache package."""


class CacheError(Exception):
    """A cache folder is missing, damaged, locked or was built with another config."""


class LabelError(ValueError):
    """A label file cannot be read or holds values that make no sense."""

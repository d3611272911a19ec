"""Extraction stage: decode each video once into cached face, embedding and audio features."""

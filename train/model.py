"""Prediction heads: Keras 3 functional models over cached per-frame features.

Backend-agnostic (only ``keras`` and ``keras.ops``), so ``KERAS_BACKEND=jax`` or
``torch`` runs them too. Every head maps inputs named ``visual`` (T, Dv),
``audio`` (T, Da) and, for some, ``face`` (T, 1) to one score in [0, 1] per target (the five traits by default).
"""

from __future__ import annotations

from train.config import FitOptions

# Per-frame layers are Dense (and Dropout) on the (batch, T, features) sequence: the same
# function and weights as the original's TimeDistributed(Dense), which Keras 2 ran as one
# matmul over batch x T rows. Keras 3's TimeDistributed runs T matmuls of ``batch`` rows
# instead, each re-reading the 2048 x 1024 kernel: batch-8 training steps took about 2x the
# time (bench/train_bench.py).
#
# Heads that see the per-frame "a face was found" flag. ``seed`` stays the original
# layer for layer, and the audio ablation has no visual stream for it to qualify.
HEADS_WITH_FACE_FLAG = ("bilstm", "attention", "visual")


def build_head(options: FitOptions, frames: int, dimensions: tuple[int, int]):
    """Build the head ``options.head``.

    Parameters
    ----------
    options : FitOptions
        The head, its widths, dropout, LSTM and attention units, and its targets (one output each).
    frames : int
        T, time steps per video.
    dimensions : (int, int)
        (Dv, Da), the widths of the visual and audio inputs: those of the run's feature
        sets as loaded from the cache, never constants.

    Returns
    -------
    keras.Model
        Inputs: a subset of ``visual`` (batch, T, Dv), ``audio`` (batch, T, Da),
        ``face`` (batch, T, 1); output (batch, k) sigmoid scores (k targets), float32 even under
        a mixed-precision policy.
    """
    import keras

    head = options.head
    visual_dimension, audio_dimension = dimensions
    layers = keras.layers
    head_inputs, streams = [], []
    if head != "audio":
        visual = keras.Input((frames, visual_dimension), name="visual")
        stream = layers.Dense(options.visual_units, activation="relu", name="visual_dense")(visual)
        stream = layers.Dense(options.visual_projection, name="visual_projection")(stream)
        stream = layers.Dropout(options.dropout, name="visual_dropout")(stream)
        head_inputs.append(visual)
        streams.append(stream)
    if head != "visual":
        audio = keras.Input((frames, audio_dimension), name="audio")
        head_inputs.append(audio)
        streams.append(layers.Dense(options.audio_units, name="audio_dense")(audio))
    if head in HEADS_WITH_FACE_FLAG:
        face = keras.Input((frames, 1), name="face")
        head_inputs.append(face)
        streams.append(face)
    sequence = streams[0] if len(streams) == 1 else layers.Concatenate(name="fuse")(streams)

    # Scores (and what follows them) stay float32 under mixed precision.
    scores_layer = layers.Dense(len(options.targets), activation="sigmoid", dtype="float32", name="scores")
    if head == "attention":
        from train.keras_objects import AttentionPooling

        sequence = layers.LSTM(options.lstm_units, return_sequences=True, name="lstm")(sequence)
        outputs = scores_layer(AttentionPooling(options.attention_units, name="attention_pooling")(sequence))
    else:
        if head == "bilstm":
            recurrent = layers.Bidirectional(layers.LSTM(options.lstm_units, return_sequences=True), name="bilstm")
        else:
            recurrent = layers.LSTM(options.lstm_units, return_sequences=True, name="lstm")
        outputs = layers.GlobalAveragePooling1D(dtype="float32", name="average_over_time")(
            scores_layer(recurrent(sequence))
        )
    return keras.Model(head_inputs, outputs, name=f"{head}_head")


def input_names(model) -> list[str]:
    """Names of a head's inputs, in the order the model takes them."""
    return [tensor.name for tensor in model.inputs]

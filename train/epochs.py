"""One short line per training epoch, each score beside its baseline, instead of Keras' own."""

from __future__ import annotations

import time
from collections.abc import Callable

from train.metrics import format_number


def epoch_line(epoch: int, epochs: int, logs: dict, baselines: dict[str, float], seconds: float) -> str:
    """The line of one finished epoch.

    Parameters
    ----------
    epoch : int
        The epoch's number, from 1.
    epochs : int
        The most epochs the fit may run.
    logs : dict
        Keras' epoch logs: ``loss`` and ``val_mean_accuracy`` at least.
    baselines : dict
        ``loss`` (training split) and ``val_mean_accuracy`` (selection split) of
        predicting the training mean.
    seconds : float
        The epoch's wall time.

    Returns
    -------
    str
        e.g. ``epoch 3/40  loss 0.0123 (baseline 0.0201)  val mean acc 0.9012 (baseline 0.8834)  2.1 s``.
    """
    return (
        f"epoch {epoch}/{epochs}  loss {format_number(logs['loss'])} (baseline {format_number(baselines['loss'])})  "
        f"val mean acc {format_number(logs['val_mean_accuracy'])} "
        f"(baseline {format_number(baselines['val_mean_accuracy'])})  {seconds:.1f} s"
    )


def epoch_printer(echo: Callable[[str], None], epochs: int, baselines: dict[str, float]):
    """A Keras callback that gives each epoch's `epoch_line` to ``echo``."""
    import keras

    started = {}

    def begin(epoch: int, logs: dict | None = None) -> None:
        started[epoch] = time.perf_counter()

    def end(epoch: int, logs: dict | None = None) -> None:
        echo(epoch_line(epoch + 1, epochs, logs, baselines, time.perf_counter() - started.pop(epoch)))

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)

"""Replay storage."""

from mtrl.data.replay import Batch, MultiTaskReplay

__all__ = ["Batch", "MultiTaskReplay"]

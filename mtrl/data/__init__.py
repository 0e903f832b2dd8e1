"""Replay storage and finished-episode records."""

from mtrl.data.episodes import Episodes
from mtrl.data.replay import Batch, MultiTaskReplay

__all__ = ["Batch", "Episodes", "MultiTaskReplay"]

"""Atomic torch files: never a half-written file, clear errors for missing/corrupt ones.

The bottom layer: the agents save themselves with it, the training loop writes its
checkpoints with it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from mtrl.errors import MtrlError


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: str | Path) -> dict[str, Any]:
    """Load a file written by :func:`atomic_save` on the CPU.

    Raises:
        MtrlError: the file is missing or not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise MtrlError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MtrlError(f"corrupt checkpoint {path}: {reason}") from None
    if not isinstance(payload, dict):
        raise MtrlError(f"corrupt checkpoint {path}: not an mtrl checkpoint")
    return payload


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Restore a random stream saved with ``generator.get_state()``.

    A state saved on another device type (a CUDA run loaded on the CPU, or the reverse) cannot
    be carried over; the generator is then re-seeded from a hash of the saved state, so that
    loading stays deterministic.
    """
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return
    digest = hashlib.sha256(state.cpu().numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little"))

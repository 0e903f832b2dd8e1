"""Errors that the command line reports as one line (exit code 2), without a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

# optional dependencies: import name -> (pip package, mtrl extra that installs it)
OPTIONAL = {
    "stable_baselines3": ("stable-baselines3", "sb3"),
    "matplotlib": ("matplotlib", "report"),
    "PIL": ("pillow", "video"),
    "ray": ("ray", "ray"),
}


class MtrlError(Exception):
    """A problem with the user's input: config, task names, run directory, checkpoint."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module`` (an optional dependency) or raise a one-line :class:`MtrlError` that
    names the pip package and the mtrl extra installing it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        package = OPTIONAL.get(top, (top, extra))[0]
        raise MtrlError(f"{needed_for} needs {package}: pip install 'mtrl[{extra}]' "
                        f"(or pip install {package})") from None

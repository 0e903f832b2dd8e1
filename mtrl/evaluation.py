"""``mtrl.evaluation.MetaWorldAgent``, the adapter for Meta-World's own evaluator that the
README documents as a Python entry point; the evaluation protocol lives in
:mod:`mtrl.training.evaluation`."""

from mtrl.training.evaluation import MetaWorldAgent

__all__ = ["MetaWorldAgent"]

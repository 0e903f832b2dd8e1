"""The analysis layer: reports, statistics, plots, videos, task affinity, grouping, sweeps.

Built on :mod:`mtrl.training` (never the reverse). Importing this package registers the
online task-affinity measurement as a training hook (``train.affinity_every``).
"""

from mtrl.analysis import affinity as _affinity  # noqa: F401  (registers the training hook)

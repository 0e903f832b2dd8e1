"""The application's training layer: the loop (:mod:`~mtrl.training.loop`), the files of a run
directory (:mod:`~mtrl.training.rundir`), the official evaluation protocol, logging, hooks that
higher layers register, single-task experts, distillation and the benchmark suite.

Imports only the core (agents, nn, optim, envs, data) and :mod:`mtrl.config`; nothing here
imports :mod:`mtrl.analysis` or :mod:`mtrl.cli`. Submodules are imported where used, so that
``mtrl --help`` stays fast.
"""

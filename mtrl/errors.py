"""Errors that the command line reports as one line (exit code 2), without a traceback."""


class MtrlError(Exception):
    """A problem with the user's input: config, task names, run directory, checkpoint."""

"""Imbalanced-classification experiment pipeline: data, class weights, losses, training, metrics.

Everything here computes; the DVC entry points in ``stages/`` read and write files, and
``pipeline.tracking`` is the one module that talks to MLflow.
"""


class PipelineError(Exception):
    """Bad input a user can fix: the message is one line naming the file, key or column."""


class Interrupted(BaseException):
    """The stage was asked to stop (SIGTERM); raised where it stood, like KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum

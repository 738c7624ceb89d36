"""Errors the pipeline raises for bad input.

Every user-facing failure is a :class:`InputError` whose message is one line naming the offending file or key and
the fix. The CLI prints that line (no traceback) and exits with status 2, so a Snakemake log shows the cause at once.
"""
from __future__ import annotations


class InputError(Exception):
    """Bad input (missing/corrupt file, too-short video, no face, bad config key): one line, names the thing + fix."""

    def __init__(self, what: str, problem: str, fix: str):
        self.what, self.problem, self.fix = str(what), problem, fix
        super().__init__(f"{what}: {problem} — fix: {fix}")


class TrainingDiverged(RuntimeError):
    """A NaN/inf loss stopped training; the last good checkpoint is kept."""

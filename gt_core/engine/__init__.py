"""The method-agnostic training engine: stage loop, resume, checkpoints, RNG state, logs, schedules, frame batches.

A learned method supplies a :class:`~gt_core.engine.loop.Program` (its model, its stages, one optimisation step and
callbacks such as densification); :func:`~gt_core.engine.loop.run_program` does everything else.
"""

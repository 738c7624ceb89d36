"""GaussianTalker (Cho et al., ACM MM 2024) re-implemented: audio-driven 3D Gaussian talking heads.

``model`` (architecture), ``config`` (training hyper-parameters), ``densify`` (densification/pruning), ``train``
(its :class:`~gt_core.engine.loop.Program` on the shared engine), ``method`` (the
:class:`~gt_core.methods.base.Method` entry point, registered as ``gaussiantalker``). The audio encoders are shared:
:mod:`gt_core.encoders.audio`.
"""

"""GaussianTalker (Cho et al., ACM MM 2024) re-implemented: audio-driven 3D Gaussian talking heads.

``model`` (architecture), ``audio`` (AudioNet/AudioAttNet), ``train`` (two-stage training), ``method`` (the
:class:`~gt_core.methods.base.Method` entry point, registered as ``gaussiantalker``).
"""

"""ER-NeRF (Li et al., ICCV 2023) re-implemented: ``field`` (head), ``torso``, ``losses``, ``model`` (the trainable
state), ``rays`` (pixels a step trains on), ``render``, ``train`` (head/lips/torso on the shared engine), ``method``."""

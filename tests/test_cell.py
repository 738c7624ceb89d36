"""Cell-level logic that needs no video: blink normalisation from training frames, audio context windows."""
import numpy as np

from gt_core.data.cell import FrameSet, blink_values


def test_blink_uses_training_statistics_only():
    eyes = np.r_[np.full(50, 0.30), np.full(50, 0.10)]  # test half: eyes much more closed
    blink, stats = blink_values(eyes, np.arange(50))
    assert stats["open_median_train"] == 0.30
    assert np.allclose(blink[:50], 0.0) and np.allclose(blink[50:], 1.0)
    eyes[60:] = 5.0  # changing test frames changes nothing fitted
    assert blink_values(eyes, np.arange(50))[1] == stats


def test_audio_context_is_zero_padded_at_segment_ends():
    n, c = 5, 2
    audio = np.arange(1, n + 1, dtype=np.float32)[:, None, None] * np.ones((1, 16, c), np.float32)
    fs = FrameSet(np.arange(n), np.zeros((n, 4, 4, 3), np.uint8), np.zeros((n, 4, 4), np.uint8),
                  np.zeros((n, 4, 4, 3), np.uint8), np.zeros((n, 4, 4, 3), np.uint8), np.tile(np.eye(4), (n, 1, 1)),
                  np.zeros(n, np.float32), audio, np.zeros((n, 478, 3), np.float32), np.zeros((n, 7), np.float32))
    ctx = fs.audio_context(k=4)  # offsets -2, -1, 0, +1
    assert ctx.shape == (n, 4, 16, c)
    assert ctx[0, :, 0, 0].tolist() == [0, 0, 1, 2]
    assert ctx[4, :, 0, 0].tolist() == [3, 4, 5, 0]

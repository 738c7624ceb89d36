"""Attention layers shared by the methods.

:class:`CrossAttentionLayer` — one post-LN cross-attention layer with an FFN (GaussianTalker's spatial-audio
attention: the released ``scene/transformer/`` ``MultiHeadAttention`` + ``PositionwiseFeedForward``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CrossAttentionLayer(nn.Module):
    """One post-LN layer: x = LN(x + Drop(MHA(x, tokens))); x = LN(x + Drop(FFN(x))), FFN = Linear–ReLU–Drop–Linear;
    q/k/v/o projections with bias (the released ``MultiHeadAttention``)."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, ln_eps: float):
        super().__init__()
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(d_model, eps=ln_eps)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.ln2 = nn.LayerNorm(d_model, eps=ln_eps)

    def forward(self, x: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B or 1, N, d] queries, ``tokens`` [B, T, d] → ([B, N, d], weights [B, N, T] averaged over heads)."""
        b, t, d = tokens.shape
        n = x.shape[1]
        h, dk = self.n_heads, self.d_k
        q = self.w_q(x).view(x.shape[0], n, h, dk).transpose(1, 2)  # [B|1, h, N, dk]
        k = self.w_k(tokens).view(b, t, h, dk).transpose(1, 2)  # [B, h, T, dk]
        v = self.w_v(tokens).view(b, t, h, dk).transpose(1, 2)  # [B, h, T, dk]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dk), dim=-1)  # [B, h, N, T]
        out = (att @ v).transpose(1, 2).reshape(b, n, d)  # [B, N, d]
        x = self.ln1(x + self.drop1(self.w_o(out)))
        x = self.ln2(x + self.drop2(self.ffn(x)))
        return x, att.mean(dim=1)

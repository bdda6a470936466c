"""Recurrent building block: an LSTM over the time axis of per-frame features (the CNN+LSTM baseline)."""

from __future__ import annotations

import torch
from torch import nn


class FrameLSTM(nn.Module):
    """An LSTM over the time axis of per-frame feature vectors.

    Input (N, F, T, 1, 1); output (N, H, T, 1, 1) with the hidden state after every step, or only the last
    one, (N, H, 1, 1, 1), when ``last_only``. Zero initial state; ``self.lstm`` is
    ``nn.LSTM(batch_first=True)``.
    Causal: the output at step t depends on frames 0..t only, so a continual form steps ``self.lstm`` with its
    (h, c) state carried between frames.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, last_only: bool = False
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.last_only = last_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[3:] != (1, 1):
            raise ValueError(f"FrameLSTM expects (N, F, T, 1, 1) features, got shape {tuple(x.shape)}")
        out, _ = self.lstm(x.flatten(2).transpose(1, 2))  # (N, T, H)
        if self.last_only:
            out = out[:, -1:]
        return out.transpose(1, 2)[..., None, None]

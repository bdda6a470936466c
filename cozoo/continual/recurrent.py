"""Continual CNN+LSTM head: the LSTM steps once per frame, carrying (h, c) between steps."""

from __future__ import annotations

import torch

from cozoo.continual.base import ContinualModule, check_state_names, replaces_state
from cozoo.continual.convert import ConversionOptions, register_continual
from cozoo.layers.recurrent import FrameLSTM


class CoFrameLSTM(ContinualModule, FrameLSTM):
    """Same parameters as `FrameLSTM`; emits the hidden state at every frame (many-to-many).

    Clip mode runs the LSTM from a zero state over the clip, which is what stepping from ``reset()``
    computes; with source padding on it behaves like the source (honouring ``last_only``).
    """

    recurrent = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source_padding:
            return FrameLSTM.forward(self, x)
        out, _ = self.lstm(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2)[..., None, None]

    def _reset_state(self) -> None:
        self.__dict__["_hc"] = None

    def stream_state(self) -> dict[str, torch.Tensor]:
        """``h`` and ``c`` batch first: (N, num_layers, hidden)."""
        state = self.__dict__.get("_hc")
        return {} if state is None else {"h": state[0].transpose(0, 1), "c": state[1].transpose(0, 1)}

    def load_stream_state(self, state: dict[str, torch.Tensor]) -> None:
        check_state_names(self, state, self.stream_state())
        if state:
            self.__dict__["_hc"] = (state["h"].transpose(0, 1).contiguous(),
                                    state["c"].transpose(0, 1).contiguous())

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        state = self.__dict__.get("_hc")
        out, (h, c) = self.lstm(frame.flatten(1).unsqueeze(1), state)
        if state is None or replaces_state():  # autograd saved the old state: replace, not overwrite
            self.__dict__["_hc"] = (h, c)
        else:
            state[0].copy_(h)
            state[1].copy_(c)
        return out[:, 0, :, None, None]


@register_continual(FrameLSTM)
def _frame_lstm(module: FrameLSTM, options: ConversionOptions) -> CoFrameLSTM:
    module.__class__ = CoFrameLSTM
    module._reset_state()
    return module  # type: ignore[return-value]

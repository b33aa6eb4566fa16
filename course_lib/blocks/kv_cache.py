"""The key/value cache of autoregressive generation: each token's keys and values are computed once, then reused.

Without it, producing token t re-runs the whole prefix through every layer (t forward steps for t tokens: quadratic
work); with it, each step feeds only the newest token and attends to the stored keys and values of the others.
"""

from __future__ import annotations

import torch


class KeyValueCache:
    """One attention layer's keys and values so far, ``[batch, kv_heads, cached tokens, head_dim]`` each."""

    def __init__(self):
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def __len__(self) -> int:
        """How many tokens are cached."""
        return 0 if self.key is None else self.key.size(-2)

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``key``/``value`` ``[batch, kv_heads, new, head_dim]``; return all of them so far."""
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat([self.key, key], dim=-2)  # [batch, kv_heads, cached + new, head_dim]
            self.value = torch.cat([self.value, value], dim=-2)
        return self.key, self.value

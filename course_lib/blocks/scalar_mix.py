"""ELMo's task-specific mix of biLM layers (Peters et al. 2018, Eq. 1).

    ELMo_k = gamma * sum_j s_j * h_{k,j},    s = softmax(w)

The weights ``w`` (one scalar per layer) and the scale ``gamma`` are learned by the downstream task, so each task
chooses how much of the token layer, the first and the second LSTM layer it wants. The paper notes that layer
normalising every layer before mixing sometimes helps (Sec. 3.2); like allennlp's ``ScalarMix`` that normalisation
uses one mean and one variance per layer, computed over every element of the batch that the mask keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# allennlp adds tiny_value_of_dtype(float32) = 1e-13 under the square root; we do the same.
LAYER_NORM_EPSILON = 1e-13


def masked_layer_norm(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise ``tensor`` with one mean and variance taken over the unmasked positions (allennlp semantics)."""
    broadcast_mask = mask.unsqueeze(-1).to(tensor.dtype)  # [batch, tokens, 1]
    count = broadcast_mask.sum() * tensor.size(-1)  # number of kept elements
    mean = (tensor * broadcast_mask).sum() / count
    variance = (((tensor - mean) * broadcast_mask) ** 2).sum() / count
    return (tensor - mean) / torch.sqrt(variance + LAYER_NORM_EPSILON)


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j * layer_j over a fixed number of equally shaped layers (ELMo Eq. 1)."""

    def __init__(
        self,
        num_layers: int,
        do_layer_norm: bool = False,
        initial_weights: Sequence[float] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"ScalarMix needs at least one layer, got num_layers={num_layers}")
        if initial_weights is None:
            initial_weights = [0.0] * num_layers
        if len(initial_weights) != num_layers:
            raise ValueError(
                f"initial_weights has {len(initial_weights)} values but num_layers={num_layers}"
            )
        self.num_layers = num_layers
        self.do_layer_norm = do_layer_norm
        # w_j before the softmax; s_j = softmax(w)_j are the mixing weights of the paper
        self.layer_weights = nn.Parameter(torch.tensor(list(initial_weights), dtype=torch.float32),
                                          requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor(1.0), requires_grad=trainable)

    def normalized_weights(self) -> torch.Tensor:
        """The softmax-normalised s_j, one per layer, summing to 1."""
        return F.softmax(self.layer_weights, dim=0)  # [num_layers]

    def forward(self, layers: Sequence[torch.Tensor] | torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``layers`` (a list of ``[batch, tokens, dim]`` or one ``[layers, batch, tokens, dim]`` tensor)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"ScalarMix was built for {self.num_layers} layers but got {len(layers)}")
        shapes = {tuple(layer.shape) for layer in layers}
        if len(shapes) != 1:
            raise ValueError(f"all layers must have the same shape, got {sorted(shapes)}")
        if mask is not None and tuple(mask.shape) != tuple(layers[0].shape[:-1]):
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match layers' [batch, tokens] {tuple(layers[0].shape[:-1])}"
            )
        weights = self.normalized_weights()
        if self.do_layer_norm:
            if mask is None:
                mask = torch.ones(layers[0].shape[:-1], dtype=torch.bool, device=layers[0].device)
            if not mask.any():
                raise ValueError("mask keeps no position; layer norm needs at least one token")
            layers = [masked_layer_norm(layer, mask) for layer in layers]
        mixed = sum(weight * layer for weight, layer in zip(weights, layers, strict=True))  # [batch, tokens, dim]
        return self.gamma * mixed

"""Segment-level recurrence: the memory Transformer-XL carries from one segment to the next (Dai et al. 2019, Sec. 3.2).

    h~^{n-1}_{τ+1} = [SG(h^{n-1}_τ) ∘ h^{n-1}_{τ+1}]      (memory of layer n-1, stop-gradient, then the segment)
    k, v = h~^{n-1}_{τ+1} W_k, h~^{n-1}_{τ+1} W_v;  q = h^{n-1}_{τ+1} W_q

Layer n reads the memory of its *input*, so a model with ``n_layer`` layers keeps ``n_layer + 1`` memories: the
embedding output and every layer's output (the last one is cached but not read, as in the authors' code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def attention_mask_with_memory(query_len: int, memory_len: int, mem_len: int, same_length: bool = False,
                               device=None) -> torch.Tensor:
    """``[qlen, mlen + qlen]`` bool, True where query i may attend key j (authors' ``dec_attn_mask``, negated).

    Query i sits at key position ``memory_len + i``: it sees every memory slot and the segment up to itself.
    With ``same_length`` every query sees at most ``mem_len`` keys, the same count for all of them (evaluation).
    """
    key_len = memory_len + query_len
    query = torch.arange(query_len, device=device)[:, None]  # [qlen, 1]
    key = torch.arange(key_len, device=device)[None, :]  # [1, klen]
    allowed = key <= query + memory_len  # causal: nothing to the right of the query
    if same_length:
        mask_len = key_len - mem_len
        mask_shift_len = query_len - mask_len if mask_len > 0 else query_len
        allowed = allowed & (key > query - mask_shift_len)  # the authors' tril(ones, -mask_shift_len)
    return allowed


def is_plain_causal(query_len: int, memory_len: int, mem_len: int, same_length: bool) -> bool:
    """True when the mask above is the ordinary lower triangle (no memory, no same-length cut)."""
    return memory_len == 0 and not (same_length and query_len > mem_len)


def check_memory(mems: Sequence[torch.Tensor] | None, batch: int, n_layer: int, d_model: int) -> int:
    """Validate ``mems`` for a batch of ``batch`` sequences; return the memory length (0 for none)."""
    if mems is None:
        return 0
    if len(mems) != n_layer + 1:
        raise ValueError(f"expected n_layer + 1 = {n_layer + 1} memories (embedding + every layer), got {len(mems)}")
    shapes = {tuple(memory.shape) for memory in mems}
    if len(shapes) != 1:
        raise ValueError(f"all memories must share one shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3:
        raise ValueError(f"memories must be [batch, mem_len, d_model], got shape {shape}")
    if shape[1] == 0:
        return 0
    if shape[0] != batch:
        raise ValueError(f"memory batch size {shape[0]} does not match the input batch size {batch}")
    if shape[2] != d_model:
        raise ValueError(f"memory width {shape[2]} does not match d_model={d_model}")
    return shape[1]


def _versions(tensors: Sequence[torch.Tensor]) -> tuple:
    """Version counters (bumped by every in-place change); tensors made in inference mode have none."""
    return tuple(-1 if tensor.is_inference() else tensor._version for tensor in tensors)


class TransformerXLMemory(list):
    """The n_layer + 1 cached hidden states, each ``[batch, mlen, d_model]``: a plain list of tensors (Sec. 3.2).

    In evaluation (eval mode, no gradients) it also carries each layer's keys and values of these positions,
    computed when they were the segment, so the next segment projects only its own tokens. That is exact while
    neither the weights nor the states change, which :meth:`known_keys_values` checks (a mismatch means
    recompute). Any other list of tensors works as memory too; its keys and values are computed from the states.
    """

    def __init__(self, hidden_states: Sequence[torch.Tensor]) -> None:
        super().__init__(hidden_states)
        self.keys_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer [b, h, mlen, d_head]
        self._made_with: tuple | None = None

    def attach_keys_values(self, keys_values: list[tuple[torch.Tensor, torch.Tensor]], weights: tuple) -> None:
        """Remember each layer's keys and values of the memory, and which weights made them."""
        self.keys_values = keys_values
        self._made_with = (weights, _versions(self))

    def known_keys_values(self, weights: tuple) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The attached keys and values if the same weights and unchanged states made them, else None."""
        if self.keys_values is None or self._made_with != (weights, _versions(self)):
            return None
        return self.keys_values

    def __setitem__(self, index, value) -> None:
        """Replacing a state makes the attached keys and values stale."""
        self.keys_values = None
        super().__setitem__(index, value)


def update_memory(hidden_states: Sequence[torch.Tensor], mems: Sequence[torch.Tensor] | None,
                  mem_len: int) -> TransformerXLMemory | None:
    """Keep the last ``mem_len`` positions of ``[old memory; new hidden states]``, cut from the graph (SG)."""
    if mem_len <= 0:
        return None
    with torch.no_grad():  # stop-gradient: the next segment's loss never flows back into this one
        new_mems = []
        for index, hidden in enumerate(hidden_states):
            extended = hidden if mems is None or mems[index].size(1) == 0 else torch.cat([mems[index], hidden], 1)
            new_mems.append(extended[:, -mem_len:].detach())  # [batch, <= mem_len, d_model]
    return TransformerXLMemory(new_mems)

"""Segment-level recurrence: the memory Transformer-XL carries from one segment to the next (Dai et al. 2019, Sec. 3.2).

    h~^{n-1}_{τ+1} = [SG(h^{n-1}_τ) ∘ h^{n-1}_{τ+1}]      (memory of layer n-1, stop-gradient, then the segment)
    k, v = h~^{n-1}_{τ+1} W_k, h~^{n-1}_{τ+1} W_v;  q = h^{n-1}_{τ+1} W_q

Layer n reads the memory of its *input*, so a model with ``n_layers`` layers keeps ``n_layers + 1`` memories: the
embedding output and every layer's output (the last one is cached but not read, as in the authors' code). The memory
is a plain list of these hidden states; every segment projects their keys and values again, as the authors' code does.
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


def check_memory(mems: Sequence[torch.Tensor] | None, batch: int, n_layers: int, dim: int) -> int:
    """Validate ``mems`` for a batch of ``batch`` sequences; return the memory length (0 for none)."""
    if mems is None:
        return 0
    if len(mems) != n_layers + 1:
        raise ValueError(f"expected n_layers + 1 = {n_layers + 1} memories (embedding + every layer), got {len(mems)}")
    shapes = {tuple(memory.shape) for memory in mems}
    if len(shapes) != 1:
        raise ValueError(f"all memories must share one shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3:
        raise ValueError(f"memories must be [batch, mem_len, dim], got shape {shape}")
    if shape[1] == 0:
        return 0
    if shape[0] != batch:
        raise ValueError(f"memory batch size {shape[0]} does not match the input batch size {batch}")
    if shape[2] != dim:
        raise ValueError(f"memory width {shape[2]} does not match dim={dim}")
    return shape[1]


def update_memory(hidden_states: Sequence[torch.Tensor], mems: Sequence[torch.Tensor] | None,
                  mem_len: int) -> list[torch.Tensor] | None:
    """Keep the last ``mem_len`` positions of ``[old memory; new hidden states]``, cut from the graph (SG)."""
    if mem_len <= 0:
        return None
    with torch.no_grad():  # stop-gradient: the next segment's loss never flows back into this one
        new_mems = []
        for index, hidden in enumerate(hidden_states):
            extended = hidden if mems is None or mems[index].size(1) == 0 else torch.cat([mems[index], hidden], 1)
            new_mems.append(extended[:, -mem_len:].detach())  # [batch, <= mem_len, dim]
    return new_mems

"""GPT-1's task-specific input transformations (Radford et al. 2018, Sec. 3.3 and Figure 1).

Every task is turned into token sequences the pretrained model can read: a start token, the text pieces joined by a
delimiter token, and an "extract" token whose final hidden state feeds the linear head.

- classification: ``start text extract``
- entailment:     ``start premise delim hypothesis extract``
- similarity:     both orders ``start A delim B extract`` and ``start B delim A extract``; their two final states are
  added element-wise before the linear layer (there is no inherent order between the two sentences)
- multiple choice: ``start context delim answer_k extract`` for every candidate k; each gives one score and a
  softmax over the candidates picks the answer

``add_task_tokens`` adds the three tokens to a copy of a course tokenizer: GPT-1 uses "randomly initialized start
and end tokens (<s>, <e>)" and a delimiter token "$" (Sec. 3.3). They get ids ``vocab_size`` .. ``vocab_size + 2``,
and the copy's post-processor wraps every text as ``<start> text <extract>`` and every pair as
``<start> A <delim> B <extract>``; ``text_batches`` and ``encode_texts`` work with it unchanged, including truncation,
which keeps room for the added tokens. The heads that read these inputs are in ``course_lib.models.gpt_heads``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing

from course_lib.text.batching import pad_id

START, DELIMITER, EXTRACT = "<start>", "<delim>", "<extract>"


@dataclass(frozen=True)
class TaskTokens:
    """Ids of the special tokens GPT-1 adds for fine-tuning (randomly initialised, then learned)."""

    start: int
    delimiter: int
    extract: int
    pad: int = 0


def classification_input(text: Sequence[int], tokens: TaskTokens) -> list[int]:
    """``start text extract`` (Figure 1, "Classification")."""
    return [tokens.start, *text, tokens.extract]


def entailment_input(premise: Sequence[int], hypothesis: Sequence[int], tokens: TaskTokens) -> list[int]:
    """``start premise delim hypothesis extract`` (Figure 1, "Entailment")."""
    return [tokens.start, *premise, tokens.delimiter, *hypothesis, tokens.extract]


def similarity_inputs(first: Sequence[int], second: Sequence[int], tokens: TaskTokens) -> tuple[list[int], list[int]]:
    """Both orders, ``(start A delim B extract, start B delim A extract)`` (Figure 1, "Similarity")."""
    return entailment_input(first, second, tokens), entailment_input(second, first, tokens)


def multiple_choice_inputs(
    context: Sequence[int], answers: Sequence[Sequence[int]], tokens: TaskTokens
) -> list[list[int]]:
    """One ``start context delim answer_k extract`` per candidate answer (Figure 1, "Multiple Choice")."""
    if len(answers) < 2:
        raise ValueError(f"multiple choice needs at least 2 candidate answers, got {len(answers)}")
    return [entailment_input(context, answer, tokens) for answer in answers]


def multiple_choice_batch(
    context: Sequence[int], answers: Sequence[Sequence[int]], tokens: TaskTokens, max_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [choices, tokens], attention_mask [choices, tokens])``: one right-padded row per candidate.

    A row longer than ``max_length`` loses tokens from the START of its context: the end of the context, next to
    the answer, matters most, and the answer and the three task tokens are always kept whole.
    """
    rows = []
    for answer in multiple_choice_inputs(context, answers, tokens):
        excess = 0 if max_length is None else len(answer) - max_length
        kept_context = len(context) - excess
        if excess > 0 and kept_context < 1:
            raise ValueError(f"max_length={max_length} leaves no room for the context next to an answer of "
                             f"{len(answer) - len(context) - 3} tokens")
        rows.append(answer if excess <= 0 else [answer[0], *answer[1 + excess:]])
    return pad_batch(rows, tokens.pad)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(input_ids [batch, tokens], attention_mask [batch, tokens])``."""
    if len(sequences) == 0 or min(len(s) for s in sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence and no empty sequence")
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask


def add_task_tokens(tokenizer: Tokenizer) -> tuple[Tokenizer, TaskTokens]:
    """A copy of ``tokenizer`` that frames texts in GPT-1's task format, and the ids of its three new tokens."""
    if any(tokenizer.token_to_id(token) is not None for token in (START, DELIMITER, EXTRACT)):
        raise ValueError(f"the tokenizer already has {START}, {DELIMITER} or {EXTRACT}: pass the original one")
    framed = Tokenizer.from_str(tokenizer.to_str())  # the caller's tokenizer stays as it was
    size = framed.get_vocab_size()
    framed.add_special_tokens([AddedToken(token, special=True) for token in (START, DELIMITER, EXTRACT)])
    ids = TaskTokens(start=framed.token_to_id(START), delimiter=framed.token_to_id(DELIMITER),
                     extract=framed.token_to_id(EXTRACT), pad=pad_id(tokenizer))
    if (ids.start, ids.delimiter, ids.extract) != (size, size + 1, size + 2):
        raise ValueError(f"expected the new tokens at ids {size}..{size + 2}, got {ids}")
    framed.post_processor = TemplateProcessing(
        single=f"{START} $A {EXTRACT}",  # classification (Figure 1)
        pair=f"{START} $A {DELIMITER} $B:1 {EXTRACT}:1",  # entailment, similarity, multiple choice
        special_tokens=[(START, ids.start), (DELIMITER, ids.delimiter), (EXTRACT, ids.extract)],
    )
    return framed, ids

"""GPT-1's fine-tuning tokens on a course tokenizer: ``<start>``, ``<delim>`` and ``<extract>`` (Radford et al. 2018).

GPT-1 turns every task into token sequences with "randomly initialized start and end tokens (<s>, <e>)" and a
delimiter token "$" between the pieces (Sec. 3.3, Figure 1). Here the three tokens are appended to a copy of a
course tokenizer (ids ``vocab_size``, ``vocab_size + 1``, ``vocab_size + 2``), whose post-processor then wraps every
text as ``<start> text <extract>`` and every pair as ``<start> A <delim> B <extract>``. ``text_batches`` and
``encode_texts`` work with it unchanged, including truncation, which keeps room for the added tokens.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing

from course_lib.models.gpt_tasks import TaskTokens
from course_lib.text.batching import pad_id

START, DELIMITER, EXTRACT = "<start>", "<delim>", "<extract>"


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

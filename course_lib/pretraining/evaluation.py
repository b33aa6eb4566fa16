"""The held-out quality recorded with every course checkpoint, next to unigram/bigram baselines on the same tokens.

``evaluate`` runs once at the end of ``scripts/pretrain.py`` on the 4 validation plays; its numbers go into the
checkpoint's ``config.json`` (and ``data/README.md``).
"""

from __future__ import annotations

import math

import torch

from course_lib.pretraining.objectives import bert_batch, bert_losses, lm_window_loss
from course_lib.text.next_sentence import next_sentence_pairs
from course_lib.training.losses import next_token_loss
from course_lib.training.ngram import BigramLM, UnigramLM, best_add_k, perplexity


@torch.no_grad()
def evaluate(kind: str, model, train_ids: torch.Tensor, valid_ids: torch.Tensor, special, vocab: int) -> dict:
    """Held-out quality on the 4 validation plays, next to unigram/bigram baselines on the same tokens."""
    model.eval()
    if kind == "bert":
        generator = torch.Generator().manual_seed(1)
        totals = {"mlm_loss": 0.0, "mlm_accuracy": 0.0, "nsp_accuracy": 0.0}
        targets = []
        for _ in range(16):  # 16 x 32 = 512 held-out pairs
            batch = bert_batch(next_sentence_pairs(valid_ids, 32, 30, generator), special, generator)
            for key, value in bert_losses(model, batch).items():
                if key in totals:
                    totals[key] += float(value) / 16
            targets.append(batch["mlm_labels"][batch["mlm_labels"] != -100])
        targets = torch.cat(targets)
        k, unigram = best_add_k(UnigramLM, train_ids, targets, vocab)
        most_frequent = int(torch.bincount(train_ids, minlength=vocab).argmax())
        return {**{key: round(v, 4) for key, v in totals.items()}, "masked_tokens": len(targets),
                "unigram_mlm_loss": round(unigram, 4), "unigram_k": k,
                "unigram_mlm_accuracy": round(float((targets == most_frequent).float().mean()), 4),
                "nsp_chance_accuracy": 0.5}
    if kind == "transformer_xl":
        rows = 4
        length = (min(len(valid_ids), 32_768) - 1) // rows // 64 * 64  # whole segments
        stream = valid_ids[:rows * length + 1]
        inputs = torch.stack([stream[r * length:(r + 1) * length] for r in range(rows)])  # [rows, length]
        targets = torch.stack([stream[r * length + 1:(r + 1) * length + 1] for r in range(rows)])
        with_memory = float(model.forward_in_segments(inputs, labels=targets).loss)
        segments = [model(inputs[:, s:s + 64], labels=targets[:, s:s + 64]).loss for s in range(0, length, 64)]
        without_memory = float(torch.stack(segments).mean())
        tokens = torch.cat([torch.cat([inputs[r, :1], targets[r]]) for r in range(rows)])
        result = {"loss_with_memory": round(with_memory, 4), "loss_without_memory": round(without_memory, 4),
                  "perplexity_with_memory": round(perplexity(with_memory), 2),
                  "perplexity_without_memory": round(perplexity(without_memory), 2), "tokens": rows * length}
        return {**result, **baselines(train_ids, tokens, vocab)}
    windows = valid_ids[:256 * 129].view(256, 129)  # 256 windows of 128 predicted tokens
    tokens = valid_ids[:256 * 129]
    if kind == "gpt":
        loss = sum(float(lm_window_loss(kind, model, w)) for w in windows.split(32)) / 8
        return {"loss": round(loss, 4), "perplexity": round(perplexity(loss), 2), "bits_per_token":
                round(loss / math.log(2), 4), "tokens": 256 * 128, **baselines(train_ids, tokens, vocab)}
    forward = backward = 0.0  # ELMo: each direction on its own
    for w in windows.split(32):
        logits = model(w, compute_loss=False).logits  # [2, batch, tokens, vocab]
        forward += float(next_token_loss(logits[0][:, :-1], w[:, 1:])) / 8
        backward += float(next_token_loss(logits[1][:, 1:], w[:, :-1])) / 8  # the backward LM's next is the previous
    reverse = baselines(train_ids.flip(0), tokens.flip(0), vocab)
    return {"forward_loss": round(forward, 4), "backward_loss": round(backward, 4),
            "forward_perplexity": round(perplexity(forward), 2), "backward_perplexity": round(perplexity(backward), 2),
            "tokens": 256 * 129, **baselines(train_ids, tokens, vocab),
            "backward_bigram_loss": reverse["bigram_loss"], "backward_bigram_k": reverse["bigram_k"]}


def baselines(train_ids: torch.Tensor, heldout: torch.Tensor, vocab: int) -> dict:
    """Unigram and bigram add-k cross-entropies (k tuned on held-out, to favour the baseline) on ``heldout``."""
    unigram_k, unigram = best_add_k(UnigramLM, train_ids, heldout, vocab)
    bigram_k, bigram = best_add_k(BigramLM, train_ids, heldout, vocab)
    return {"unigram_loss": round(unigram, 4), "unigram_k": unigram_k,
            "unigram_perplexity": round(perplexity(unigram), 2),
            "bigram_loss": round(bigram, 4), "bigram_k": bigram_k, "bigram_perplexity": round(perplexity(bigram), 2)}

"""SmolLM2-135M-Instruct: the parity figures and the lecture prompts' greedy answers, printed (not a test).

    python benchmarks/smollm2_parity.py

Prints max |course_lib - transformers| of logits, hidden states and attentions on the real (dequantised) weights,
with left padding, and on the tiny random config of tests/models/test_smollm.py; then each slide prompt's greedy
continuation and whether it equals transformers' ``generate`` token for token. Uses the tests' own prompts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "convert"), str(ROOT / "tests" / "models")]

import test_smollm as tiny  # noqa: E402
import test_smollm2_gguf as real  # noqa: E402

from course_lib.convert.llama import hf_llama_config_kwargs, to_hf_llama_state_dict  # noqa: E402
from course_lib.convert.smollm2_gguf import load_smollm2  # noqa: E402
from course_lib.models.smollm import positions_from_mask  # noqa: E402


def max_diff(ours, theirs, real_tokens: torch.Tensor, heads: bool = False) -> float:
    """Largest |a - b| over real (non-padding) positions of paired tensors."""
    pick = (lambda t: t.transpose(1, 2)[real_tokens]) if heads else (lambda t: t[real_tokens])
    return max((pick(a) - pick(b)).abs().max().item() for a, b in zip(ours, theirs, strict=True))


def compare(ours_model, hf_model, input_ids, attention_mask, what: str) -> None:
    real_tokens = attention_mask.bool()
    with torch.no_grad():
        a = ours_model(input_ids, attention_mask, output_attentions=True)
        b = hf_model(input_ids, attention_mask=attention_mask, position_ids=positions_from_mask(attention_mask),
                     output_hidden_states=True, output_attentions=True)
    print(f"{what}: logits {max_diff([a.logits], [b.logits], real_tokens):.1e}, "
          f"hidden states {max_diff(a.hidden_states, b.hidden_states, real_tokens):.1e}, "
          f"attentions {max_diff(a.attentions, b.attentions, real_tokens, heads=True):.1e}")


def main() -> None:
    model, tokenizer = load_smollm2()
    hf_config = transformers.LlamaConfig(**hf_llama_config_kwargs(model.config), bos_token_id=1, eos_token_id=2,
                                         pad_token_id=2)
    hf = transformers.LlamaForCausalLM._from_config(hf_config, attn_implementation="eager")
    hf.load_state_dict(to_hf_llama_state_dict(model))
    hf.eval()
    input_ids, attention_mask = real.left_padded(tokenizer, real.SENTENCES + real.SLIDE_PROMPTS)
    compare(model, hf, input_ids, attention_mask,
            f"real weights, {len(input_ids)} left-padded rows, {int(attention_mask.sum())} tokens")
    hf_tiny, ours_tiny = tiny.pair.__wrapped__()
    for side in ("right", "left"):
        compare(ours_tiny, hf_tiny, *tiny.padded_batch(side), f"tiny random config, {side} padding")
    for prompt in real.SLIDE_PROMPTS + ["The capital of France is"]:
        ids = torch.tensor([tokenizer.encode(prompt).ids])
        ours = model.generate(ids, 24)
        theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                             eos_token_id=None, pad_token_id=2)
        print(f"{prompt[-45:]!r} -> {tokenizer.decode(ours[0, ids.size(1):].tolist())!r}; "
              f"equal to transformers: {torch.equal(ours, theirs)}")


if __name__ == "__main__":
    main()

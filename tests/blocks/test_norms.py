"""RMSNorm follows Zhang & Sennrich 2019, Eq. 4, and equals torch's and Hugging Face Llama's."""

import torch
import transformers

from course_lib.blocks.norms import RMSNorm


def test_rms_norm_is_equation_4_by_hand():
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(2, 3, 6) * 5 + 2  # [batch, tokens, dim], far from unit scale and not centred
    rms = (x.pow(2).mean(dim=-1, keepdim=True) + 1e-6).sqrt()  # RMS(a) = sqrt(1/n sum a_i^2)
    torch.testing.assert_close(norm(x), x / rms * norm.weight)
    assert [name for name, _ in norm.named_parameters()] == ["weight"]  # a gain only: no bias, no re-centring


def test_rms_norm_output_has_unit_root_mean_square_and_keeps_the_mean():
    x = torch.randn(4, 8) + 3.0
    out = RMSNorm(8)(x)
    torch.testing.assert_close(out.pow(2).mean(dim=-1), torch.ones(4), atol=1e-4, rtol=0)
    assert (out.mean(dim=-1) > 0.5).all()  # unlike LayerNorm, the mean is not removed


def test_rms_norm_equals_hugging_face_llama_and_keeps_half_precision():
    ours, theirs = RMSNorm(16, eps=1e-5), transformers.models.llama.modeling_llama.LlamaRMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 2.0, 16))
        theirs.weight.copy_(ours.weight)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x), theirs(x), atol=0, rtol=0)
    assert ours.half()(x.half()).dtype == torch.float16

"""Course checkpoints: each committed one loads, matches its sha256 and recorded held-out loss; tampering is refused."""

import json
import shutil

import pytest
import torch

from course_lib import paths
from course_lib.models.gpt import GPT, GPTConfig
from course_lib.paths import DataFileError, sha256_file
from course_lib.pretraining.checkpoints import (
    KIND_OF,
    NAMES,
    config_from_dict,
    load_checkpoint,
    read_config,
    reference_loss,
    save_checkpoint,
)

RECORDED = sorted({name.split("/")[1] for name in paths.checksums() if name.startswith("checkpoints/")})


def test_recorded_checkpoints_are_known_and_complete():
    for name in RECORDED:
        assert name in NAMES
        for file in ("model.safetensors", "config.json"):
            assert f"checkpoints/{name}/{file}" in paths.checksums(), f"{name}/{file} has no sha256 in SHA256SUMS"


@pytest.mark.parametrize("name", RECORDED)
def test_checkpoint_loads_and_reproduces_its_recorded_loss(name):
    record = read_config(name)
    weights = paths.data_dir() / "checkpoints" / name / "model.safetensors"
    assert sha256_file(weights) == paths.checksums()[f"checkpoints/{name}/model.safetensors"]
    assert weights.stat().st_size <= 10 * 2**20  # the course keeps each checkpoint under about 10 MB
    model, tokenizer = load_checkpoint(name)
    assert not model.training
    assert tokenizer.get_vocab_size() == model.config.vocab_size
    assert sum(p.numel() for p in model.parameters()) == record["parameters"] <= 2_500_000
    torch.manual_seed(0)
    measured = reference_loss(KIND_OF[name], model, tokenizer)
    assert measured == pytest.approx(record["evaluation"]["reference_loss"], rel=1e-3)


@pytest.mark.parametrize("name", RECORDED)
def test_checkpoint_beats_its_recorded_baselines(name):
    scores = read_config(name)["evaluation"]
    kind = KIND_OF[name]
    if kind == "bert":
        assert scores["mlm_loss"] < scores["unigram_mlm_loss"]
        assert scores["mlm_accuracy"] > scores["unigram_mlm_accuracy"]
        assert scores["nsp_accuracy"] > scores["nsp_chance_accuracy"]
    elif kind == "transformer_xl":
        assert scores["loss_with_memory"] < scores["loss_without_memory"] < scores["bigram_loss"]
    elif kind == "elmo":
        assert scores["forward_loss"] < scores["bigram_loss"]
        assert scores["backward_loss"] < scores["backward_bigram_loss"]
    else:
        assert scores["loss"] < scores["bigram_loss"] < scores["unigram_loss"]


def test_unknown_names_and_config_keys_are_refused():
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        load_checkpoint("gpt3")
    with pytest.raises(ValueError, match=r"GPTConfig has no field\(s\) \['d_model'\]"):
        config_from_dict(GPTConfig, {"dim": 16, "d_model": 16})


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A private data folder holding one tiny GPT checkpoint (named gpt2) with its tokenizer and SHA256SUMS."""
    data = tmp_path / "data"
    (data / "tokenizers").mkdir(parents=True)
    shutil.copy(paths.data_path("tokenizers/bpe.json"), data / "tokenizers" / "bpe.json")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=8192, context_length=16, dim=8, n_layers=1, n_heads=2))
    save_checkpoint(model, data / "checkpoints" / "gpt2", {"name": "gpt2", "kind": "gpt", "tokenizer": "bpe"})
    files = ("tokenizers/bpe.json", "checkpoints/gpt2/model.safetensors", "checkpoints/gpt2/config.json")
    (data / "SHA256SUMS").write_text("".join(f"{sha256_file(data / f)}  {f}\n" for f in files))
    for cached in (paths.data_dir, paths.checksums, paths.data_path):
        cached.cache_clear()
    monkeypatch.setattr(paths, "data_dir", lambda: data)
    yield data, model
    for cached in (paths.checksums, paths.data_path):
        cached.cache_clear()


def test_saved_checkpoint_round_trips_with_tied_weights(tiny_data):
    data, original = tiny_data
    model, tokenizer = load_checkpoint("gpt2")
    assert json.loads((data / "checkpoints" / "gpt2" / "config.json").read_text())["config"]["dim"] == 8
    assert model.lm_head.weight is model.transformer.token_embedding.weight  # still tied after loading
    for (key, value), (_, expected) in zip(model.state_dict().items(), original.state_dict().items()):
        assert torch.equal(value, expected), key
    assert tokenizer.get_vocab_size() == 8192


@pytest.mark.parametrize("file", ["model.safetensors", "config.json"])
def test_tampered_checkpoint_is_refused_with_a_clear_message(tiny_data, file):
    data, _ = tiny_data
    path = data / "checkpoints" / "gpt2" / file
    content = bytearray(path.read_bytes())
    content[-2] ^= 1  # one flipped bit, in the weights or in the config
    path.write_bytes(bytes(content))
    with pytest.raises(DataFileError, match=f"data/checkpoints/gpt2/{file} is corrupted: its sha256 is") as error:
        load_checkpoint("gpt2")
    assert "retrain it with: python scripts/pretrain.py gpt2" in str(error.value)


def test_missing_checkpoint_names_the_known_files(tiny_data):
    with pytest.raises(DataFileError, match="data/checkpoints/bert/config.json is not a course data file"):
        load_checkpoint("bert")

"""Setup, loaders, metrics and the training loop every notebook uses."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from course_lib.models.outputs import ModelOutput
from course_lib.runtime import setup
from course_lib.text.batching import encode_corpus, encode_texts, lm_batches, text_batches
from course_lib.text.spam import load_spam
from course_lib.text.tokenizers import load_tokenizer
from course_lib.training.loop import evaluate_classifier, fit, lm_loss
from course_lib.training.metrics import accuracy, binary_metrics


def test_setup_seeds_reads_the_knob_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_SCALE", "2.5")
    rt = setup(seed=3, device="cpu", threads=1)
    first = torch.rand(3)
    assert "seed 3" in capsys.readouterr().out and rt.scale == 2.5 and rt.scaled(10) == 25
    setup(seed=3, device="cpu", threads=1, verbose=False)
    assert torch.equal(first, torch.rand(3)), "setup(seed) must make torch's draws repeat"
    monkeypatch.setenv("COURSE_SCALE", "big")
    with pytest.raises(ValueError, match="COURSE_SCALE must be a number"):
        setup(verbose=False)


def test_metrics_by_hand():
    m = binary_metrics([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert (m.true_positives, m.false_positives, m.false_negatives, m.true_negatives) == (2, 1, 1, 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    always_ham = binary_metrics([0] * 87 + [1] * 13, [0] * 100)
    assert always_ham.accuracy == 0.87 and always_ham.f1 == 0.0
    assert accuracy(torch.tensor([2, 1]), torch.tensor([2, 0])) == 0.5
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        binary_metrics([0, 2], [0, 1])


def test_text_batches_pad_per_batch_and_keep_labels():
    data = load_spam("valid")
    loader = text_batches(data.texts[:10], data.labels[:10], load_tokenizer("wordpiece"), batch_size=4, max_length=16)
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    for b in batches:
        assert b["input_ids"].shape == b["attention_mask"].shape == b["token_type_ids"].shape
        assert b["input_ids"].shape[1] <= 16
        assert (b["input_ids"][b["attention_mask"] == 0] == 0).all(), "padding must use [PAD] = 0"
    assert torch.cat([b["labels"] for b in batches]).tolist() == list(data.labels[:10])


def test_encode_texts_pairs_and_truncation():
    enc = encode_texts(load_tokenizer("wordpiece"), ["a b c d e f g h", "a"], ["x y", "z"], max_length=6)
    assert enc["input_ids"].shape == (2, 6)
    assert enc["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1]
    assert enc["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="second segments"):
        encode_texts(load_tokenizer("wordpiece"), ["a"], ["x", "y"])


def test_lm_batches_targets_are_shifted_inputs():
    ids = torch.arange(101)
    batch = next(iter(lm_batches(ids, block_size=10, batch_size=3, shuffle=False)))
    assert torch.equal(batch["targets"], batch["input_ids"] + 1)
    assert len(lm_batches(ids, block_size=10, max_blocks=4).dataset) == 4
    ids = encode_corpus("To be, or not to be\nthat is the question\n", load_tokenizer("bpe"))
    assert ids.dim() == 1 and len(ids) > 5
    with pytest.raises(ValueError, match="fewer than one block"):
        lm_batches(torch.arange(5), block_size=10)


class BagOfEmbeddings(nn.Module):
    """The smallest classifier with the course's forward signature."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, 16, mode="mean")
        self.head = nn.Linear(16, 2)

    def forward(self, input_ids, attention_mask=None):
        return ModelOutput(logits=self.head(self.embed(input_ids, per_sample_weights=None)))


def test_fit_learns_spam_and_records_history():
    torch.manual_seed(0)
    tok = load_tokenizer("wordpiece")
    train, valid = load_spam("train").sample(400, seed=0), load_spam("valid")
    train_batches = text_batches(train.texts, train.labels, tok, batch_size=32, shuffle=True)
    valid_batches = text_batches(valid.texts, valid.labels, tok, batch_size=128)
    model = BagOfEmbeddings(tok.get_vocab_size())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    seen = []
    history = fit(model, train_batches, optimizer=opt, epochs=4, progress=False, on_epoch_start=seen.append,
                  evaluate=lambda m: evaluate_classifier(m, valid_batches).as_dict())
    assert seen == [0, 1, 2, 3], "on_epoch_start gets 0-based epochs, as GradualUnfreezer.step expects"
    assert len(history.loss) == len(history.lr) == 4 * len(train_batches)
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]
    assert history.metric("f1")[-1] > 0.75, history.epochs  # "always ham" scores F1 0
    fig = history.plot(title="bag of embeddings")
    assert len(fig.axes) == 3


def test_fit_with_lm_loss_and_max_steps():
    torch.manual_seed(0)

    class Bigram(nn.Module):
        """A bigram model: embedding straight to logits."""

        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(20, 20)

        def forward(self, input_ids):
            return ModelOutput(logits=self.table(input_ids))

    model = Bigram()
    ids = torch.arange(2001) % 20  # a perfectly predictable sequence
    history = fit(model, lm_batches(ids, block_size=16, batch_size=8), optimizer=torch.optim.Adam(model.parameters(), 0.1),
                  loss_fn=lm_loss, epochs=50, max_steps=60, progress=False)
    assert len(history.loss) == 60
    assert history.loss[-1] < 0.1 * math.log(20)


def test_sorted_batches_hold_similar_lengths_and_every_example():
    data = load_spam("test")
    loader = text_batches(data.texts, data.labels, load_tokenizer("wordpiece"), batch_size=64, by_length=True)
    widths = [b["input_ids"].shape[1] for b in loader]
    assert widths == sorted(widths)
    assert sorted(torch.cat([b["labels"] for b in loader]).tolist()) == sorted(data.labels)


def test_bucketed_shuffle_is_random_complete_and_pads_little():
    data = load_spam("train").sample(400, seed=0)
    tok = load_tokenizer("wordpiece")
    bucketed = text_batches(data.texts, data.labels, tok, batch_size=16, shuffle=True, by_length=True, seed=1)
    plain = text_batches(data.texts, data.labels, tok, batch_size=16, shuffle=True, seed=1)
    first, second = ([b["input_ids"] for b in bucketed] for _ in range(2))
    assert len(first) == len(bucketed) == 25
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, second)), "epochs must differ"
    assert sorted(torch.cat([b["labels"] for b in bucketed]).tolist()) == sorted(data.labels)
    padding = lambda loader: sum(int((b["attention_mask"] == 0).sum()) for b in loader)  # noqa: E731
    assert padding(bucketed) < padding(plain) / 3


def test_free_memory_lets_an_unreferenced_model_go():
    import gc
    import weakref

    from course_lib.runtime import free_memory

    model = nn.Linear(512, 512)
    model.cycle = model  # a reference cycle: only the garbage collector frees it
    alive = weakref.ref(model)
    gc.disable()
    try:
        del model
        assert alive() is not None
        free_memory()
        assert alive() is None
    finally:
        gc.enable()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the CPU counters are Linux's")
def test_busy_elsewhere_sees_another_process_spinning():
    import subprocess
    import sys
    import time

    from course_lib.runtime import busy_elsewhere

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)                                   # let it start
        busy = busy_elsewhere(window=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.5, f"a process spinning on one core, yet only {busy} cores seen busy"


def test_threads_follow_the_idle_cores_unless_overridden(monkeypatch, capsys):
    from course_lib.runtime import choose_threads

    assert choose_threads(cores=2, load=0.2)[0] == 2
    assert choose_threads(cores=2, load=1.1)[0] == 1, "another program keeps one core busy: one thread"
    assert choose_threads(cores=2, load=5.0)[0] == 1, "never fewer than one"
    assert choose_threads(cores=64, load=0.0)[0] == 8, "never more than eight"
    assert "load 1.1 on 2 cores" in choose_threads(cores=2, load=1.1)[1]
    assert choose_threads(cores=2, busy=0.1, load=1.8)[0] == 2, "the cores are idle now: the load average is history"
    assert choose_threads(cores=2, busy=0.9, load=0.0)[0] == 1, "a program busy now counts, however recent"
    assert "0.9 of 2 cores busy elsewhere" in choose_threads(cores=2, busy=0.9)[1]
    monkeypatch.setenv("COURSE_THREADS", "3")
    rt = setup(device="cpu")
    assert rt.threads == 3 and "3 threads (COURSE_THREADS)" in capsys.readouterr().out
    monkeypatch.delenv("COURSE_THREADS")
    rt = setup(device="cpu", threads=1)
    assert "1 thread (set by setup(threads=...))" in capsys.readouterr().out
    rt = setup(device="cpu")
    assert "COURSE_THREADS=N overrides" in capsys.readouterr().out and 1 <= rt.threads <= 8

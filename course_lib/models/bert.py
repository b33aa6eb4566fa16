"""BERT (Devlin et al. 2019): a bidirectional transformer encoder, its pretraining heads and a classifier.

``hidden_states`` are ALWAYS returned (they cost nothing: the tensors exist anyway): the embedding output (after its
LayerNorm), then the output of every layer, each ``[batch, tokens, dim]``. ``attentions`` only with
``output_attentions=True``; ``pooled`` is the pooler's ``tanh(W h_[CLS] + b)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.blocks.embeddings import LearnedPositionEmbedding, SegmentEmbedding, TokenEmbedding
from course_lib.blocks.masks import check_attention_mask, padding_mask
from course_lib.blocks.transformer_block import TransformerBlock
from course_lib.models.outputs import ModelOutput, check_sizes


@dataclass
class BertConfig:
    """Sizes of a BERT encoder; the classmethods give BERT Base, BERT Large and all-MiniLM-L6-v2."""

    vocab_size: int = 30522  # WordPiece vocabulary (uncased English)
    context_length: int = 512  # number of learned positions
    dim: int = 768  # H in the paper
    n_layers: int = 12  # L
    n_heads: int = 12  # A
    hidden_dim: int | None = None  # feed-forward width; None means 4 * dim ("4H")
    n_segments: int = 2  # sentence A / sentence B
    dropout: float = 0.1
    attn_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_dim is None:
            self.hidden_dim = 4 * self.dim
        check_sizes(self, ("vocab_size", "context_length", "dim", "n_layers", "n_heads", "hidden_dim", "n_segments"))

    @classmethod
    def base(cls) -> BertConfig:
        """BERT Base: L=12, H=768, A=12, 110M parameters (Devlin et al. 2019, Sec. 3)."""
        return cls(dim=768, n_layers=12, n_heads=12)

    @classmethod
    def large(cls) -> BertConfig:
        """BERT Large: L=24, H=1024, A=16, 340M parameters (Devlin et al. 2019, Sec. 3)."""
        return cls(dim=1024, n_layers=24, n_heads=16)

    @classmethod
    def minilm(cls) -> BertConfig:
        """all-MiniLM-L6-v2: L=6, H=384, A=12, a distilled BERT (Wang et al. 2020) tuned for sentence embeddings."""
        return cls(dim=384, n_layers=6, n_heads=12, hidden_dim=1536)


def init_bert_weights(model: nn.Module) -> None:
    """N(0, 0.02) weights (BERT's initializer_range; the original used a truncated normal), zero biases, unit LNs."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BertEmbeddings(nn.Module):
    """Input = token + segment + position embeddings, then LayerNorm and dropout (Devlin et al. 2019, Figure 2)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.token = TokenEmbedding(config.vocab_size, config.dim)
        self.position = LearnedPositionEmbedding(config.context_length, config.dim)
        self.segment = SegmentEmbedding(config.n_segments, config.dim)
        self.layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[batch, tokens]`` ids (and segment ids, default all sentence A) -> ``[batch, tokens, dim]``."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif tuple(token_type_ids.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"token_type_ids has shape {tuple(token_type_ids.shape)}, expected {tuple(input_ids.shape)}"
            )
        x = self.token(input_ids) + self.segment(token_type_ids) + self.position(input_ids.size(1))
        return self.dropout(self.layer_norm(x))  # [batch, tokens, dim]


class BertPooler(nn.Module):
    """The sentence vector: tanh(W h_[CLS] + b), the input of NSP and of sentence classifiers."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, dim]`` -> ``[batch, dim]`` from the first ([CLS]) token."""
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """The BERT body: embeddings, a stack of post-LN bidirectional blocks, and (optionally) the pooler."""

    def __init__(self, config: BertConfig, add_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.n_heads, config.hidden_dim, dropout=config.dropout,
                             attn_dropout=config.attn_dropout, layer_norm_eps=config.layer_norm_eps,
                             approximate_gelu=False, pre_norm=False)
            for _ in range(config.n_layers)
        )
        self.pooler = BertPooler(config.dim) if add_pooler else None
        init_bert_weights(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """``input_ids [batch, tokens]`` -> hidden states (embeddings + every layer), pooled [CLS], attentions."""
        check_attention_mask(attention_mask, input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):  # no padding: the unmasked fast path
            mask = padding_mask(attention_mask)  # [batch, 1, 1, key]
        x = self.embeddings(input_ids, token_type_ids)  # [batch, tokens, dim]
        hidden_states, attentions = [x], []
        for block in self.blocks:
            x, weights = block(x, mask, is_causal=False, output_attentions=output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        return ModelOutput(
            hidden_states=tuple(hidden_states),
            attentions=tuple(attentions) if output_attentions else None,
            pooled=self.pooler(x) if self.pooler is not None else None,
        )


@dataclass
class BertPreTrainingOutput(ModelOutput):
    """ModelOutput plus the next-sentence logits ``[batch, 2]`` (0 = IsNext, 1 = NotNext)."""

    next_sentence_logits: torch.Tensor | None = None


class BertMLMHead(nn.Module):
    """Masked-LM head: dense + GELU + LayerNorm, then scores over the vocabulary with the TIED token embedding."""

    def __init__(self, config: BertConfig, token_embedding: nn.Embedding):
        super().__init__()
        self.transform = nn.Linear(config.dim, config.dim)
        self.activation = nn.GELU()
        self.layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.dim, config.vocab_size)  # one output bias per vocabulary entry
        self.decoder.weight = token_embedding.weight  # tied to the input embedding

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, dim]`` -> vocabulary logits ``[batch, tokens, vocab]``."""
        return self.decoder(self.layer_norm(self.activation(self.transform(hidden))))


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only: labels hold the original id there and -100 elsewhere (Sec. 3.1)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


class BertForPreTraining(nn.Module):
    """BERT with both pretraining heads: masked LM (Task #1) and next-sentence prediction (Task #2), Sec. 3.1."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.mlm = BertMLMHead(config, self.bert.embeddings.token)
        self.next_sentence = nn.Linear(config.dim, 2)  # IsNext / NotNext from the pooled [CLS] vector
        init_bert_weights(self.mlm)
        init_bert_weights(self.next_sentence)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        next_sentence_labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> BertPreTrainingOutput:
        """MLM logits ``[batch, tokens, vocab]`` and NSP logits ``[batch, 2]``; loss = the sum of the labelled ones."""
        body = self.bert(input_ids, attention_mask, token_type_ids, output_attentions)
        logits = self.mlm(body.hidden_states[-1])  # [batch, tokens, vocab]
        next_sentence_logits = self.next_sentence(body.pooled)  # [batch, 2]
        losses = []
        if mlm_labels is not None:
            losses.append(masked_lm_loss(logits, mlm_labels))
        if next_sentence_labels is not None:
            losses.append(F.cross_entropy(next_sentence_logits, next_sentence_labels))
        return BertPreTrainingOutput(
            logits=logits, loss=sum(losses) if losses else None, hidden_states=body.hidden_states,
            attentions=body.attentions, pooled=body.pooled, next_sentence_logits=next_sentence_logits,
        )


class BertForMaskedLM(nn.Module):
    """BERT with only the masked-LM head (no pooler), e.g. to fill in [MASK] tokens."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=False)
        self.mlm = BertMLMHead(config, self.bert.embeddings.token)
        init_bert_weights(self.mlm)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Vocabulary logits ``[batch, tokens, vocab]``; with ``labels`` (-100 = not masked) also the MLM loss."""
        body = self.bert(input_ids, attention_mask, token_type_ids, output_attentions)
        logits = self.mlm(body.hidden_states[-1])
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return ModelOutput(logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions)


class BertForSequenceClassification(nn.Module):
    """Fine-tuning for classification: one linear layer + softmax on the pooled [CLS] vector (Sec. 4.1)."""

    def __init__(self, config: BertConfig, n_classes: int):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.config = config
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, n_classes)
        init_bert_weights(self.classifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Class logits ``[batch, n_classes]``; with ``labels [batch]`` also the cross-entropy loss."""
        body = self.bert(input_ids, attention_mask, token_type_ids, output_attentions)
        logits = self.classifier(self.dropout(body.pooled))  # [batch, n_classes]
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ModelOutput(
            logits=logits, loss=loss, hidden_states=body.hidden_states, attentions=body.attentions, pooled=body.pooled
        )

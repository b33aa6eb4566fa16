"""Transfer-learning recipes: layer groups, freezing, gradual unfreezing, discriminative learning rates,
fine-tuning schedules (slanted triangular, warm-up + decay), L2-SP, and feature extraction with a linear probe.

Every recipe works on a list of ``LayerGroup`` ordered bottom (embeddings) to top (head); build it with
``layer_groups(model)`` for a BERT/GPT-like model or ``make_groups([...])`` for anything else.
"""

from .discriminative import ULMFIT_DECAY, discriminative_lrs, discriminative_param_groups
from .features import COMBINATIONS, LinearProbe, combine_layers, extract_features, feature_batches, train_probe
from .freezing import GroupSummary, freeze, frozen, summary_table, trainable_summary, unfreeze, unfreeze_top
from .l2sp import L2SP
from .layer_groups import LayerGroup, layer_groups, make_groups, parameters_of
from .schedules import linear_warmup_lr, linear_warmup_schedule, slanted_triangular_lr, slanted_triangular_schedule
from .snapshot import WeightSnapshot
from .unfreezing import GradualUnfreezer

__all__ = [
    "COMBINATIONS",
    "LinearProbe",
    "ULMFIT_DECAY",
    "GradualUnfreezer",
    "GroupSummary",
    "L2SP",
    "LayerGroup",
    "WeightSnapshot",
    "combine_layers",
    "discriminative_lrs",
    "discriminative_param_groups",
    "extract_features",
    "feature_batches",
    "freeze",
    "frozen",
    "layer_groups",
    "linear_warmup_lr",
    "linear_warmup_schedule",
    "make_groups",
    "parameters_of",
    "slanted_triangular_lr",
    "slanted_triangular_schedule",
    "summary_table",
    "train_probe",
    "trainable_summary",
    "unfreeze",
    "unfreeze_top",
]

"""Transfer-learning recipes: layer groups, freezing, gradual unfreezing, discriminative learning rates,
fine-tuning schedules (slanted triangular, warm-up + decay) and L2-SP.

Every recipe works on a list of ``LayerGroup`` ordered bottom (embeddings) to top (head); build it with
``layer_groups(model)`` for a BERT/GPT-like model or ``make_groups([...])`` for anything else.
"""

from .discriminative import ULMFIT_DECAY, discriminative_lrs, discriminative_param_groups
from .freezing import GroupSummary, freeze, frozen, summary_table, trainable_summary, unfreeze, unfreeze_top
from .l2sp import L2SP
from .layer_groups import LayerGroup, layer_groups, make_groups, parameters_of
from .schedules import linear_warmup_lr, linear_warmup_schedule, slanted_triangular_lr, slanted_triangular_schedule
from .snapshot import WeightSnapshot
from .unfreezing import GradualUnfreezer

__all__ = [
    "ULMFIT_DECAY",
    "GradualUnfreezer",
    "GroupSummary",
    "L2SP",
    "LayerGroup",
    "WeightSnapshot",
    "discriminative_lrs",
    "discriminative_param_groups",
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
    "trainable_summary",
    "unfreeze",
    "unfreeze_top",
]

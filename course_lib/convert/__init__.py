"""Converters from Hugging Face state dicts (and Transformer-XL's authors' names) to course_lib models: one readable
key table per model.

Each ``load_*`` checks that every key of the checkpoint is used (or deliberately ignored) and every course_lib
parameter is filled with a tensor of the right shape; anything else is a ValueError naming the keys.
"""

from course_lib.convert.bert import bert_config_from_hf, load_bert
from course_lib.convert.gpt2 import gpt2_config_from_hf, load_gpt2
from course_lib.convert.openai_gpt import load_openai_gpt, openai_gpt_config_from_hf
from course_lib.convert.transformer_xl import config_fields_from_authors, load_transformer_xl

__all__ = [
    "bert_config_from_hf",
    "config_fields_from_authors",
    "gpt2_config_from_hf",
    "load_bert",
    "load_gpt2",
    "load_openai_gpt",
    "load_transformer_xl",
    "openai_gpt_config_from_hf",
]


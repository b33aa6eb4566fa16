"""Pretraining: objectives (MLM + NSP, next-token windows), recipes, the distributed plumbing of `scripts/pretrain.py`,
the course checkpoints it writes (`checkpoints`) and real pretrained weights (`pretrained`)."""

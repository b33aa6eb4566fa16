"""Training and measuring: the loop (`loop`), the one next-token loss (`losses`), metrics, baselines, n-gram LMs,
generated-text detection and evaluation-speed measurements. The notebooks and the pretraining scripts call it."""

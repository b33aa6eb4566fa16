"""Pictures of attention for the notebooks; import the module you need (nothing heavy is imported here).

- ``attention_data``: one example's ``[heads, query, key]`` weights from any model output, rounded; ``encode_text``.
- ``bertviz_views``: bertviz's head view and model view that survive JupyterLab's require.js race.
- ``neuron_view``: bertviz's neuron view (queries and keys) for course_lib models.
- ``explorer``: ``AttentionExplorer``, ipywidgets + matplotlib, no CDN needed.
- ``view_pictures``: static pictures of each bertviz view's first state, shown until its script runs (untrusted
  notebooks, GitHub).
- ``plots``: static figures: a layer's heads, per-layer averages, causal vs bidirectional masks.
- ``segment_cache``: Transformer-XL's segment caching (what is cached, which keys a query reads, how far back it
  reaches), as a static figure and an ipywidgets explorer (notebook 04).
- ``layer_mix``: ELMo's layer mixing, the learned s_j and gamma of each task side by side (notebook 03).
"""

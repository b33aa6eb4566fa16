"""Pictures of attention for the notebooks; import the module you need (nothing heavy is imported here).

- ``attention_data``: one example's ``[heads, query, key]`` weights from any model output, rounded; ``encode_text``.
- ``bertviz_views``: bertviz's head view and model view that survive JupyterLab's require.js race.
- ``neuron_view``: bertviz's neuron view (queries and keys) for course_lib models.
- ``explorer``: ``AttentionExplorer``, ipywidgets + matplotlib, no CDN needed.
- ``view_pictures``: static pictures of each bertviz view's first state, shown until its script runs (untrusted
  notebooks, GitHub).
- ``plots``: static figures: a layer's heads, per-layer averages, causal vs bidirectional masks.
"""

"""Export a trained or compiled Encoder to the tools interpretability researchers use.

`lens`: TransformerLens's `HookedTransformer` (bidirectional attention, no normalization),
for an Encoder without LayerNorm (``model.norm=none``, and every compiled model). Needs the
optional extra ``pip install 'rasp_hydra[lens]'``. The command::

    python -m rasp_hydra.export RUN_DIR --to lens --out FILE
"""

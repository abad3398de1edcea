"""The analysis layer: what the study computes from catalogs (figures and tables, network motifs,
closed-loop flight, robustness). Each analysis is a module here that reads a `Catalog` and, where
it runs networks, the engine's forward pass; numpy, and jax only where a computation needs it.
Nothing here imports the run layer (Ray, Tune, YAML, pydantic)."""

"""rasp_hydra: Hydra-configured sweeps of the transformer experiments of
"Thinking Like Transformers" (Weiss, Goldberg, Yahav; ICML 2021)."""

__version__ = "0.1.0"

"""moalign: multi-objective and personalized alignment of language models."""
__version__ = "0.1.0"

"""Data loading and checking for moalign's formats (see docs/data.md)."""
from moalign.data.formats import FORMATS, load_data, to_pairwise

__all__ = ["FORMATS", "load_data", "to_pairwise"]

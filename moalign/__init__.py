"""moalign: multi-objective and personalized alignment of language models.

Public API: `Preference`, `load_steerable`, `SteerablePolicy` (imported lazily, so that
`import moalign.world` or the CLI's `--help` do not load torch).
"""
__version__ = "0.1.0"
__all__ = ["Preference", "SteerablePolicy", "load_steerable"]


def __getattr__(name):
    if name == "Preference":
        from moalign.preference import Preference
        return Preference
    if name in ("SteerablePolicy", "load_steerable"):
        from moalign import steerable
        return getattr(steerable, name)
    raise AttributeError(f"module 'moalign' has no attribute {name!r}")

"""The one error type that crosses moalign's edges (CLI, recipes, data files, HTTP).

A `MoalignError` carries one readable line for a person; the CLI prints it without a traceback
and exits non-zero. Internal invariants use `assert` instead.
"""


class MoalignError(Exception):
    """Bad input from a user: a recipe, a preference, a data file, a checkpoint directory."""

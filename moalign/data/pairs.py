"""Preference pairs as the methods consume them, from whichever layout the file has.

- `objective_pairs`: each objective's {prompt, chosen, rejected} for DPO (soup experts, MODPO), from
  one `pairwise_multi` file (better_<objective> labels) or a `pairwise` file per objective
  (`data: {helpful: FILE, harmless: FILE}`; one `pairwise` file serves one objective). Every file and
  label column is checked before anything trains.
- `user_comparisons`: one user's pairs from a file that may hold many users' (`moalign users add`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from moalign.data.formats import _read, _rename, check_data, to_pairwise
from moalign.errors import MoalignError

# A column of one of these names is taken for a user column (`users add` refuses to mix its users)
USER_WORDS = ("user", "worker", "annotator", "rater", "labeler", "participant", "judge")


def _is_multi(path: str, columns: Mapping[str, str]) -> bool:
    """Whether the file is `pairwise_multi` (response_0/response_1) rather than `pairwise`."""
    ds, name = _read(path, None)
    names = set(_rename(ds, columns, name).column_names)
    return "response_0" in names or not {"chosen", "rejected"} & names


def _rows(ds) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in ds]


def objective_pairs(data: str | Mapping[str, str], objectives: Sequence[str],
                    columns: Mapping[str, str] | None = None) -> dict[str, list[dict]]:
    """{objective: pairs} for every objective, from `data` (a file, or objective -> file)."""
    from moalign.world import resolve

    columns = dict(columns or {})
    if isinstance(data, str):
        sources = {o: data for o in objectives}
    else:
        missing = [o for o in objectives if o not in data]
        extra = [o for o in data if o not in objectives]
        if missing or extra:
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise MoalignError(f"data: give one file per objective ({', '.join(objectives)}); {what}")
        sources = dict(data)
    by_file: dict[str, list[str]] = {}
    for o, ref in sources.items():
        by_file.setdefault(ref, []).append(o)
    pairs: dict[str, list[dict]] = {}
    for ref, objs in by_file.items():
        path = resolve(ref)
        if _is_multi(path, columns):
            ds = _load(path, "pairwise_multi", objs, columns)
            pairs.update({o: _rows(to_pairwise(ds, o)) for o in objs})
        elif len(objs) > 1:
            raise MoalignError(f"{ref}: pairwise data (prompt, chosen, rejected) holds one objective's "
                               f"pairs, but it is given for {', '.join(objs)}: give each its own file "
                               f"(data: {{{objs[0]}: FILE, {objs[1]}: FILE}}) or use pairwise_multi data")
        else:
            pairs[objs[0]] = _rows(_load(path, "pairwise", (), columns))
    return {o: pairs[o] for o in objectives}


def _load(path: str, fmt: str, objectives: Sequence[str], columns: Mapping[str, str]):
    ds, name = _read(path, None)
    return check_data(ds, name, fmt, objectives=objectives, columns=columns)


def user_comparisons(path: str, user: str, columns: Mapping[str, str] | None = None) -> list[dict]:
    """The pairs of `user` in a pairwise or user_pairwise file. A file whose user column is not
    mapped to `user_id` while another column names several users is refused, not mixed."""
    columns = dict(columns or {})
    ds, name = _read(path, None)
    renamed = _rename(ds, columns, name)
    if "user_id" not in renamed.column_names:
        for col in ds.column_names:
            if col not in columns.values() and any(w in col.lower() for w in USER_WORDS):
                users = {str(v) for v in ds[col]}
                if users != {user}:
                    raise MoalignError(
                        f"{name}: no user_id column, and column {col!r} looks like one ({len(users)} "
                        f"user(s): {', '.join(sorted(users)[:3])}): map it with --columns "
                        f"'{{user_id: {col}}}' so only {user!r}'s comparisons are used")
        return _rows(check_data(ds, name, "pairwise", columns=columns))
    rows = check_data(ds, name, "user_pairwise", columns=columns)
    return [p for p, u in zip(_rows(rows), rows["user_id"]) if str(u) == user]


def parse_columns(text: str | None) -> dict[str, str]:
    """A column map given on the command line, in the recipes' syntax: '{user_id: worker}'."""
    import yaml

    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    pairs = value.items() if isinstance(value, dict) else [(None, None)]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise MoalignError(f"--columns {text!r}: expected a map of moalign name -> file column, "
                           "e.g. '{user_id: worker}'")
    return value

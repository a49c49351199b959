"""The methods, one entry each: where its code is, the recipe `compare` and `demo` train, how a
suite's objectives go into that recipe, the demo's shortening, its paper's headline claim, and its
line in the docs index. `moalign train` dispatches on it; `compare`, `demo`, the CLI's help and
docs/methods/README.md derive their lists from it. A new method needs its module (a pydantic
`Config` and `train(cfg, out, ...)`), one entry here, a recipe and a test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Literal

RL_STEPS = 150  # per expert and per MORLHF point in the shipped recipes

Row = dict  # one method's row of compare's table


def _claim(ratio_key: str, at_least: float,
           cost_at_most: float | None = None) -> Callable[[Row], bool | None]:
    def check(row: Row) -> bool | None:
        if row.get(ratio_key) is None or (cost_at_most is not None and row.get("train_vs_morlhf") is None):
            return None
        return row[ratio_key] >= at_least and (cost_at_most is None or row["train_vs_morlhf"] <= cost_at_most)
    return check


def _steers(row: Row) -> bool | None:
    values = [v for v in row["steerability"].values() if v is not None]
    return bool(values) and min(values) >= 0.8 and len(values) == len(row["steerability"])


def _specs(objectives: dict[str, str]) -> list[str]:
    """The suite's objectives (name -> spec) as the recipe's."""
    return ["objectives=" + json.dumps(objectives)]


def _margins(objectives: dict[str, str]) -> list[str]:
    """MODPO's objectives: each margin from a DPO model on the objective's own labels."""
    return ["objectives=" + json.dumps({name: "dpo" for name in objectives})]


def _grid(objectives: dict[str, str]) -> list[str]:
    """As many points as MORLHF's front on three or more objectives."""
    return ["grid=2"] if len(objectives) >= 3 else []


def _clp_steps(objectives: dict[str, str]) -> list[str]:
    """The soup's total RL steps on three or more objectives (the recipe's, written for two, otherwise)."""
    return [f"rl.steps={RL_STEPS * len(objectives)}"] if len(objectives) >= 3 else []


def _none(objectives: dict[str, str]) -> list[str]:
    return []


@dataclass(frozen=True)
class Method:
    name: str
    module: str  # its pydantic `Config` and `train(cfg, out, *, overwrite, progress, recipe)`
    recipe: str  # the recipe `compare` and `demo` train (repository-relative)
    steering: str  # docs index: the checkpoint's steering kind
    needs: str  # docs index: what data and scorers it needs
    pick: str  # docs index: when to pick it
    table: Literal["fronts", "users"] | None = "fronts"  # compare's table (None: not compared)
    default: bool = False  # in `moalign compare`'s default list
    suite: Callable[[dict[str, str]], list[str]] = _none  # overrides: a suite's objectives into the recipe
    demo: list[str] | None = None  # the demo's overrides (None: not in the demo)
    claim: tuple[str, Callable[[Row], bool | None]] | None = None  # its paper's headline, checked on its row
    # (method, recipe key): some of its trainings are that method's when that method's recipe has the key
    # (the soup's experts), so `compare --jobs` starts it after that method (files.sharing reuses them)
    reuses: tuple[str, str] | None = None


REGISTRY: tuple[Method, ...] = (
    Method("soup", "moalign.soups.soup", "soups/world.yaml",
           "interpolation (experts at the simplex vertices)",
           "one reward per objective and prompts (RL experts), or `pairwise_multi` labels (DPO experts)",
           "you want the cheapest full front: N trainings for N objectives, and an in-memory switch per "
           "preference",
           default=True, suite=_specs, demo=["rl.steps=80"],
           claim=("HV >= 0.9x MORLHF's with one run per objective", _claim("hv_vs_morlhf", 0.9))),
    Method("morlhf", "moalign.policies.morlhf", "policies/morlhf.yaml",
           "interpolation (grid points; nearest with 3+ objectives)", "one reward per objective and prompts",
           "you need the reference front, or the best trade-offs regardless of cost (one RL run per point)",
           default=True, suite=lambda o: _specs(o) + _grid(o), demo=["grid=2", "rl.steps=80"],
           reuses=("soup", "rl")),
    Method("modpo", "moalign.policies.modpo", "policies/modpo.yaml", "interpolation (grid points)",
           "`pairwise_multi` labels; margin models come from DPO, a reward model, or a spec",
           "you have offline per-objective labels and no RL setup",
           default=True, demo=["grid=2"], reuses=("soup", "dpo"),
           # pairs of the second objective, as the recipe; as many points as MORLHF's front
           suite=lambda o: _margins(o) + [f"train_on={list(o)[1]}"] + _grid(o),
           claim=("HV >= 0.95x MORLHF's at <= 1/3 of its compute", _claim("hv_vs_morlhf", 0.95, 1 / 3))),
    Method("ric", "moalign.policies.ric", "policies/ric.yaml",
           "prompt (reward targets in the system message)",
           "`scored` data (`score_<name>` columns) plus scorers for the online rounds",
           "you want one SFT-priced model steered by prompt that batches any preferences together",
           default=True, suite=_specs, demo=[],
           claim=("HV >= 0.9x MORLHF's at <= 0.2x its compute", _claim("hv_vs_morlhf", 0.9, 0.2))),
    Method("dpa", "moalign.policies.dpa", "policies/dpa.yaml", "prompt (a unit direction, integer weights)",
           "scorers, or `scored` rating columns for ridge heads, plus prompts",
           "users should give directions, including negative weights, on objectives that trade off on every "
           "answer",
           default=True, suite=_specs, demo=["rounds=3"],
           claim=("arithmetic control: steerability >= 0.8 on every objective", _steers)),
    Method("clp", "moalign.policies.clp", "policies/clp.yaml",
           "parameters (per-objective LoRA adapters mixed by w)", "one reward per objective and prompts",
           "you want one model from one RL run, especially with 3+ objectives",
           default=True, suite=lambda o: _specs(o) + _clp_steps(o), demo=["rl.steps=160"],
           claim=("HV >= the soup's at the same RL steps", _claim("hv_vs_soup", 1.0))),
    Method("reward_model", "moalign.policies.reward_model", "policies/reward_model.yaml",
           "none (a `hf:<dir>` objective, not a policy)", "`pairwise_multi` labels or `pairwise` data",
           "an RL method or a MODPO margin needs a reward you only have as labels", table=None),
    Method("maxmin", "moalign.policies.maxmin", "policies/maxmin.yaml",
           "users (a user id -> group; the max-min policy)", "`user_pairwise` data and prompts",
           "users fall into groups that disagree and one policy must not abandon the minority",
           table="users"),
    Method("pal", "moalign.policies.pal", "policies/pal.yaml",
           "users (a user id -> preference on any policy, or best-of-n under the user's reward)",
           "`user_pairwise` data", "many users with few comparisons each; new users from a handful of pairs",
           table="users"),
    Method("sft", "moalign.policies.sft", "policies/sft.yaml", "fixed",
           "`sft` (prompt, response) or `pairwise` (uses `chosen`)",
           "you need the reference policy the others start from, or a fixed baseline",
           suite=_specs, demo=[]),
)
METHODS: dict[str, Method] = {m.name: m for m in REGISTRY}


def method(name: str) -> Method:
    from moalign.errors import MoalignError
    if name not in METHODS:
        raise MoalignError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def compared(table: str | None = None) -> list[str]:
    """Methods `compare` can train (in one table, if given)."""
    return [m.name for m in REGISTRY if m.table and (table is None or m.table == table)]


def default_compared() -> list[str]:
    return [m.name for m in REGISTRY if m.default]


def demo_methods() -> dict[str, list[str]]:
    """The demo's methods (sft first: the reference) and their overrides."""
    order = sorted((m for m in REGISTRY if m.demo is not None), key=lambda m: m.name != "sft")
    return {m.name: list(m.demo) for m in order}


def docs_index() -> str:
    """The methods table of docs/methods/README.md."""
    rows = ["| method | steering kind | what it needs | pick it when |", "|---|---|---|---|"]
    rows += [f"| [{m.name}]({m.name}.md) | {m.steering} | {m.needs} | {m.pick} |" for m in REGISTRY]
    return "\n".join(rows) + "\n"

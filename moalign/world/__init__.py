"""The embedded default: a seeded synthetic micro-domain with exact objectives, users and a tiny base.

See the README, "The world". `build_world(out, seed)` writes the datasets;
`moalign.world.scoring` holds the ground-truth objectives; `moalign.world.base` the tiny base model.
"""
from moalign.errors import MoalignError
from moalign.world.build import (
    GROUPS,
    WorldSizes,
    WorldSpec,
    build_world,
    ensure_world,
    eval_prompts,
    load_spec,
)
from moalign.world.scoring import OBJECTIVES, score, score_all

__all__ = ["GROUPS", "OBJECTIVES", "WorldSizes", "WorldSpec", "build_world", "ensure_world",
           "eval_prompts", "load_spec", "resolve", "score", "score_all", "spec_of"]


def _parse(ref: str) -> tuple[str, int]:
    """(name, seed) of a `world:<name>[@<seed>]` reference."""
    name, _, seed_text = ref[len("world:"):].partition("@")
    try:
        return name, int(seed_text) if seed_text else 0
    except ValueError:
        raise MoalignError(f"{ref}: the seed after @ must be an integer") from None


def spec_of(ref: str) -> dict | None:
    """The spec (world.json) of the world behind a `world:` reference; None for anything else."""
    return load_spec(ensure_world(_parse(ref)[1])) if ref.startswith("world:") else None


def resolve(ref: str) -> str:
    """A path for a `world:` reference, anything else unchanged.

    `world:base` is the tiny base model, `world:<dataset>` one of the world's data files
    (sft, prompts, eval_prompts, pairwise, pairwise_multi, scored, user_pairwise);
    `@<seed>` picks another world (`world:pairwise_multi@3`). Both are built once and cached.
    """
    if ref.startswith("real:"):  # the real-text suite's files, resolved the same way
        from moalign.realtext import resolve as real
        return real(ref)
    if not ref.startswith("world:"):
        return ref
    name, seed = _parse(ref)
    if name == "base":
        from moalign.world.base import ensure_base
        return str(ensure_base(seed))
    world = ensure_world(seed)
    files = load_spec(world)["files"]
    if name not in files:
        raise MoalignError(f"{ref}: unknown world dataset (known: base, {', '.join(sorted(files))})")
    return str(world / files[name])

"""The embedded default: a seeded synthetic micro-domain with exact objectives, users and a tiny base.

See DESIGN.md, "The embedded default". `build_world(out, seed)` writes the datasets;
`moalign.world.scoring` holds the ground-truth objectives; `moalign.world.base` the tiny base model.
"""
from moalign.errors import MoalignError
from moalign.world.build import (GROUPS, WorldSizes, WorldSpec, build_world, ensure_world, eval_prompts,
                                 load_spec)
from moalign.world.scoring import OBJECTIVES, score, score_all

__all__ = ["GROUPS", "OBJECTIVES", "WorldSizes", "WorldSpec", "build_world", "ensure_world",
           "eval_prompts", "load_spec", "resolve", "score", "score_all"]


def resolve(ref: str) -> str:
    """A path for a `world:` reference, anything else unchanged.

    `world:base` is the tiny base model, `world:<dataset>` one of the world's data files
    (sft, prompts, eval_prompts, pairwise, pairwise_multi, scored, user_pairwise);
    `@<seed>` picks another world (`world:pairwise_multi@3`). Both are built once and cached.
    """
    if not ref.startswith("world:"):
        return ref
    name, _, seed_text = ref[len("world:"):].partition("@")
    try:
        seed = int(seed_text) if seed_text else 0
    except ValueError:
        raise MoalignError(f"{ref}: the seed after @ must be an integer") from None
    if name == "base":
        from moalign.world.base import ensure_base
        return str(ensure_base(seed))
    world = ensure_world(seed)
    files = load_spec(world)["files"]
    if name not in files:
        raise MoalignError(f"{ref}: unknown world dataset (known: base, {', '.join(sorted(files))})")
    return str(world / files[name])

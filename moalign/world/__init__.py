"""The embedded default: a seeded synthetic micro-domain with exact objectives, users and a tiny base.

See DESIGN.md, "The embedded default". `build_world(out, seed)` writes the datasets;
`moalign.world.scoring` holds the ground-truth objectives; `moalign.world.base` the tiny base model.
"""
from moalign.world.build import GROUPS, WorldSizes, WorldSpec, build_world, load_spec
from moalign.world.scoring import OBJECTIVES, score, score_all

__all__ = ["GROUPS", "OBJECTIVES", "WorldSizes", "WorldSpec", "build_world", "load_spec", "score",
           "score_all"]

"""Build the world: prompts, users and datasets of every format, written to a directory.

Same seed, byte-identical files. Labels come from the exact objectives with Bradley-Terry noise:
P(response_1 preferred) = sigmoid((r(response_1) - r(response_0)) / label_temperature).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from moalign.world.lexicon import TOPICS, all_prompts
from moalign.world.sampler import sample_response
from moalign.world.scoring import OBJECTIVES, score_all

FORMAT_VERSION = 1
WORLD_VERSION = 2  # bump whenever the generator changes what a seed produces (keys the caches)

# User groups: a majority that wants long, helpful, polite answers and a minority that wants short,
# safe ones (the MaxMin-RLHF setting: one reward model on pooled data serves only the majority).
GROUPS = {
    "majority": {"helpful": 0.6, "harmless": 0.1, "concise": 0.0, "polite": 0.3},
    "minority": {"helpful": 0.1, "harmless": 0.3, "concise": 0.6, "polite": 0.0},
}


@dataclass
class WorldSizes:
    sft: int = 6000
    pairwise: int = 2000
    pairwise_multi: int = 2000
    scored: int = 2000
    users_majority: int = 32
    users_minority: int = 8
    pairs_per_user: int = 40
    eval_prompts: int = 64


@dataclass
class WorldSpec:
    seed: int
    sizes: WorldSizes = field(default_factory=WorldSizes)
    label_temperature: float = 0.1
    user_temperature: float = 0.05
    objectives: tuple[str, ...] = OBJECTIVES
    groups: dict = field(default_factory=lambda: {k: dict(v) for k, v in GROUPS.items()})
    users: list = field(default_factory=list)
    files: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["format_version"] = FORMAT_VERSION
        d["world_version"] = WORLD_VERSION
        d["objectives"] = list(self.objectives)
        d["topics"] = [{"name": t.name, "phrases": list(t.phrases), "keywords": list(t.keywords),
                        "risky": t.risky} for t in TOPICS]
        return d


def _split_prompts(rng: np.random.Generator, n_eval: int):
    """Held-out eval prompts (an equal share per topic) and the training prompts (the rest)."""
    prompts = all_prompts()
    by_topic: dict[str, list[int]] = {}
    for i, (_, t) in enumerate(prompts):
        by_topic.setdefault(t.name, []).append(i)
    per_topic = max(1, n_eval // len(by_topic))
    held = set()
    for idx in by_topic.values():
        held.update(int(i) for i in rng.choice(idx, size=per_topic, replace=False))
    train = [prompts[i] for i in range(len(prompts)) if i not in held]
    evals = [prompts[i] for i in sorted(held)]
    return train, evals


def _bt_label(rng: np.random.Generator, r0: float, r1: float, temperature: float) -> int:
    """1 if response_1 wins a Bradley-Terry draw, else 0."""
    p1 = 1.0 / (1.0 + np.exp(-(r1 - r0) / temperature))
    return int(rng.random() < p1)


def _users(rng: np.random.Generator, spec: WorldSpec) -> list[dict]:
    """Individuals from an ideal-point model: a mixture over the group prototypes, mostly their own."""
    names = list(spec.groups)
    protos = np.array([[spec.groups[g][o] for o in spec.objectives] for g in names])
    counts = {"majority": spec.sizes.users_majority, "minority": spec.sizes.users_minority}
    users = []
    for g, n in counts.items():
        for _ in range(n):
            mix = 0.8 * np.eye(len(names))[names.index(g)] + 0.2 * rng.dirichlet(np.ones(len(names)))
            weights = mix @ protos
            users.append({"id": f"user{len(users):03d}", "group": g,
                          "mixture": {k: round(float(v), 6) for k, v in zip(names, mix)},
                          "weights": {o: round(float(v), 6) for o, v in zip(spec.objectives, weights)}})
    return users


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def build_world(out: Path, seed: int = 0, sizes: WorldSizes | None = None) -> WorldSpec:
    """Write world.json and the datasets under `out` (which must exist and be writable)."""
    spec = WorldSpec(seed=seed, sizes=sizes or WorldSizes())
    rng = np.random.default_rng(seed)
    s = spec.sizes
    train, evals = _split_prompts(rng, s.eval_prompts)
    spec.users = _users(rng, spec)

    def draw_prompt():
        return train[int(rng.integers(len(train)))]

    def pair():
        p, t = draw_prompt()
        return p, sample_response(rng, t), sample_response(rng, t)

    files: dict[str, list[dict]] = {}
    files["prompts"] = [{"prompt": p} for p, _ in train]
    files["eval_prompts"] = [{"prompt": p} for p, _ in evals]
    files["sft"] = []
    for _ in range(s.sft):
        p, t = draw_prompt()
        files["sft"].append({"prompt": p, "response": sample_response(rng, t)})

    files["scored"] = []
    for _ in range(s.scored):
        p, t = draw_prompt()
        r = sample_response(rng, t)
        scores = score_all(p, r)
        files["scored"].append({"prompt": p, "response": r,
                                **{f"score_{o}": round(scores[o], 6) for o in spec.objectives}})

    files["pairwise_multi"] = []
    for _ in range(s.pairwise_multi):
        p, r0, r1 = pair()
        s0, s1 = score_all(p, r0), score_all(p, r1)
        row = {"prompt": p, "response_0": r0, "response_1": r1}
        for o in spec.objectives:
            row[f"better_{o}"] = _bt_label(rng, s0[o], s1[o], spec.label_temperature)
        files["pairwise_multi"].append(row)

    # `pairwise` is labelled by the equal-weight sum of all objectives.
    files["pairwise"] = []
    for _ in range(s.pairwise):
        p, r0, r1 = pair()
        u0, u1 = (float(np.mean(list(score_all(p, r).values()))) for r in (r0, r1))
        win = _bt_label(rng, u0, u1, spec.label_temperature)
        files["pairwise"].append({"prompt": p, "chosen": (r0, r1)[win], "rejected": (r1, r0)[win]})

    files["user_pairwise"] = []
    for u in spec.users:
        w = u["weights"]
        for _ in range(s.pairs_per_user):
            p, r0, r1 = pair()
            u0, u1 = (sum(w[o] * v for o, v in score_all(p, r).items()) for r in (r0, r1))
            win = _bt_label(rng, u0, u1, spec.user_temperature)
            files["user_pairwise"].append({"user_id": u["id"], "prompt": p,
                                           "chosen": (r0, r1)[win], "rejected": (r1, r0)[win]})

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        _write_jsonl(data / f"{name}.jsonl", rows)
        spec.files[name] = f"data/{name}.jsonl"
    (out / "world.json").write_text(json.dumps(spec.to_json(), indent=1, sort_keys=True) + "\n")
    return spec


def load_spec(world_dir: Path) -> dict:
    path = Path(world_dir) / "world.json"
    return json.loads(path.read_text())


def ensure_world(seed: int = 0) -> Path:
    """The world for `seed` with default sizes, built once into the cache directory."""
    import hashlib

    from moalign.files import atomic_dir
    from moalign.world.base import cache_root
    from moalign.world.lexicon import vocabulary

    key = hashlib.sha256(json.dumps([WORLD_VERSION, seed, asdict(WorldSizes()), vocabulary()])
                         .encode()).hexdigest()[:12]
    path = cache_root() / f"world-{seed}-{key}"
    if not (path / "world.json").exists():
        with atomic_dir(path, overwrite=True) as tmp:
            build_world(tmp, seed)
    return path


def eval_prompts(seed: int = 0, n: int | None = None) -> list[str]:
    """The world's held-out prompts for `seed` (the same split `build_world` writes)."""
    _, evals = _split_prompts(np.random.default_rng(seed), WorldSizes().eval_prompts)
    prompts = [p for p, _ in evals]
    return prompts[:n] if n else prompts

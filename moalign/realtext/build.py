"""Build the real-text suite's data: a real instruct model's own answers to everyday questions,
labelled by the `text:` objectives with Bradley-Terry noise, in every format the world has.

Each training question gets `responses_per_prompt` sampled answers, each asked under a style drawn
from STYLES (none, short, detailed, expert, simple, warm, grumpy) so that the answers spread over
every objective, as P-Soups sampled its responses under preference prompts; the stored prompt is
the question alone. The answers of a question form disjoint pairs. Labels:
P(response_1 preferred) = sigmoid((r(response_1) - r(response_0)) / (temperature * sd(r))),
with sd(r) the objective's standard deviation over the answers: the labels carry the same signal for
an objective whose answers spread little (length, when most answers run to the token cap) as for one
that spreads widely. Users are P-Soups' eight profiles: one pole of each dimension, their reward the
mean of the three.

Sampling is the slow part (about 15 minutes for the default sizes with SmolLM2 on 2 CPU cores), so
it is written in chunks into an answers directory: an interrupted build resumes, and labelling the
same answers again (other temperatures) samples nothing.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moalign.realtext.prompts import EVAL_ACTIVITIES, TRAIN_ACTIVITIES, questions

VERSION = 2
DIMENSIONS = (("expert", "elementary"), ("informative", "concise"), ("friendly", "unfriendly"))
POLES = tuple(p for d in DIMENSIONS for p in d)
STYLES = (None, "Answer in one or two short sentences.",
          "Give a detailed, thorough answer with several steps.",
          "Answer like a university professor, using precise technical vocabulary.",
          "Explain it very simply, as you would to a young child.",
          "Be warm, cheerful and encouraging, with lots of enthusiasm.",
          "Be blunt, cold and grumpy: you find the question annoying.")
CHUNK = 64


@dataclass
class RealSizes:
    prompts: int | None = 96  # training questions answered (None: all 224; 96 = 24 activities)
    eval_prompts: int | None = None  # held-out questions (None: all 32)
    responses_per_prompt: int = 4
    max_new_tokens: int = 96
    label_temperature: float = 0.25  # in standard deviations of the objective over the answers
    user_temperature: float = 0.25  # in standard deviations of the user's reward over the answers

    def sampling(self) -> list:
        """What the answers depend on (the labels' temperatures do not)."""
        return [self.prompts, self.responses_per_prompt, self.max_new_tokens]


def profiles() -> list[dict]:
    """P-Soups' eight users: one pole per dimension, equal weights on the three."""
    return [{"id": "-".join(poles), "weights": {p: round(1 / 3, 6) for p in poles}}
            for poles in itertools.product(*DIMENSIONS)]


def _bt(rng, r0: float, r1: float, temperature: float) -> int:
    return int(rng.random() < 1.0 / (1.0 + np.exp(-(r1 - r0) / temperature)))


def _scaled(temperature: float, values) -> float:
    """A temperature in units of the values' standard deviation (1e-6 floor: constant scores)."""
    return temperature * max(float(np.std(values)), 1e-6)


def _sample(model_path: str, jobs: list[tuple[str, str | None]], sizes: RealSizes, chunks: Path,
            seed: int, progress: bool) -> list[str]:
    """Answers for (question, style) jobs, chunk by chunk; chunks already in `chunks` are kept."""
    from moalign.models import generate_rendered, load_causal_lm, load_tokenizer, render_prompt
    from moalign.progress import track

    chunks.mkdir(exist_ok=True)
    tok, model, out = load_tokenizer(model_path), None, []
    for start in track(range(0, len(jobs), CHUNK), "sampling answers", enabled=progress):
        kept = chunks / f"{start:05d}.json"
        if not kept.is_file():
            model = model or load_causal_lm(model_path)
            texts = [render_prompt(tok, q, system=s) for q, s in jobs[start:start + CHUNK]]
            answers = generate_rendered(model, tok, texts, max_new_tokens=sizes.max_new_tokens,
                                        seed=seed + start, batch_size=32)
            kept.write_text(json.dumps(answers) + "\n")
        out += json.loads(kept.read_text())
    return out


def _score(prompts: list[str], responses: list[str]) -> dict[str, np.ndarray]:
    from moalign.objectives import get_objective
    return {p: get_objective(f"text:{p}", p).score(prompts, responses) for p in POLES}


def build_real(out: Path, model_path: str, *, seed: int = 0, sizes: RealSizes | None = None,
               progress: bool = True, answers_dir: Path | None = None) -> dict:
    """Write real.json and the datasets under `out`, sampling answers from `model_path` in chunks
    kept in `answers_dir` (default out/chunks)."""
    sizes = sizes or RealSizes()
    rng = np.random.default_rng(seed)
    train = questions(TRAIN_ACTIVITIES)[:sizes.prompts]
    evals = questions(EVAL_ACTIVITIES)[:sizes.eval_prompts]
    k = sizes.responses_per_prompt
    jobs = [(q, STYLES[int(rng.integers(len(STYLES)))]) for q in train for _ in range(k)]
    answers = _sample(model_path, jobs, sizes, answers_dir or out / "chunks", seed, progress)
    prompts = [q for q, _ in jobs]
    scores = _score(prompts, answers)
    users = profiles()
    temp = {p: _scaled(sizes.label_temperature, scores[p]) for p in POLES}
    means = np.mean([scores[p] for p in POLES], axis=0)  # the `pairwise` file's reward
    mean_temp = _scaled(sizes.label_temperature, means)
    rewards = {u["id"]: sum(w * scores[p] for p, w in u["weights"].items()) for u in users}
    user_temp = {u: _scaled(sizes.user_temperature, r) for u, r in rewards.items()}
    files: dict[str, list[dict]] = {"prompts": [{"prompt": q} for q in train],
                                    "eval_prompts": [{"prompt": q} for q in evals],
                                    "sft": [{"prompt": q, "response": a} for q, a in zip(prompts, answers)],
                                    "scored": [], "pairwise_multi": [], "pairwise": [], "user_pairwise": []}
    for i, (q, a) in enumerate(zip(prompts, answers)):
        files["scored"].append({"prompt": q, "response": a,
                                **{f"score_{p}": round(float(scores[p][i]), 6) for p in POLES}})
    for n, i in enumerate(range(0, len(jobs) - 1, 2)):
        j = i + 1
        if prompts[i] != prompts[j]:
            continue
        row = {"prompt": prompts[i], "response_0": answers[i], "response_1": answers[j]}
        for p in POLES:
            row[f"better_{p}"] = _bt(rng, scores[p][i], scores[p][j], temp[p])
        files["pairwise_multi"].append(row)
        win = _bt(rng, means[i], means[j], mean_temp)
        files["pairwise"].append({"prompt": prompts[i], "chosen": answers[(i, j)[win]],
                                  "rejected": answers[(j, i)[win]]})
        user = users[n % len(users)]
        r = rewards[user["id"]]
        win = _bt(rng, r[i], r[j], user_temp[user["id"]])
        files["user_pairwise"].append({"user_id": user["id"], "prompt": prompts[i],
                                       "chosen": answers[(i, j)[win]], "rejected": answers[(j, i)[win]]})
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    spec = {"version": VERSION, "seed": seed, "model": model_path, "sizes": asdict(sizes),
            "objectives": list(POLES), "users": users, "groups": {}, "files": {}}
    for name, rows in files.items():
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        spec["files"][name] = f"data/{name}.jsonl"
    (out / "real.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return spec

"""Does a RiC checkpoint respond to the reward targets in its system message? For each objective,
the mean score of its answers to held-out prompts when that objective's target is the offline
rows' 5th vs 95th percentile (the others at their median), and at the paper map's two ends
(w = e_1, e_n: targets at the offline min and max). Prints each objective's score at the high
target over the low one. Run: `.venv/bin/python bench/ric_targets.py CKPT [--data real:scored]
[--prompts real:eval_prompts] [--max-new-tokens 96]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def main() -> None:
    from moalign.conditioning import generate_conditioned
    from moalign.data import load_data
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.objectives import get_objective
    from moalign.policies.ric import format_targets
    from moalign.world import resolve

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default="real:scored")
    parser.add_argument("--prompts", default="real:eval_prompts")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    manifest = json.loads((args.checkpoint / "moalign.json").read_text())
    steering, specs = manifest["steering"], manifest["recipe"]["objectives"]
    names, mean, std = steering["objectives"], np.array(steering["mean"]), np.array(steering["std"])
    rows = load_data(resolve(args.data), "scored")
    z = (np.array([[r[f"score_{n}"] for n in names] for r in rows]) - mean) / std
    low, mid, high = (np.percentile(z, q, axis=0) for q in (5, 50, 95))
    prompts = list(load_data(resolve(args.prompts), "prompts")["prompt"])
    tok, model = load_tokenizer(args.checkpoint), load_causal_lm(args.checkpoint)
    objectives = {n: get_objective(specs[n], n) for n in names}

    def scores(targets) -> dict[str, float]:
        system = format_targets(names, targets)
        answers = generate_conditioned(model, tok, prompts, [system] * len(prompts),
                                       max_new_tokens=args.max_new_tokens, seed=0)
        return {n: float(o.score(prompts, answers).mean()) for n, o in objectives.items()}

    for i, n in enumerate(names):
        lo, hi = mid.copy(), mid.copy()
        lo[i], hi[i] = low[i], high[i]
        a, b = scores(lo)[n], scores(hi)[n]
        print(f"{n}: target at the 5th / 95th percentile: {a:.3f} / {b:.3f} (high / low {b / a:.2f})",
              flush=True)
        lo, hi = np.array(steering["low"]), np.array(steering["low"])  # the paper map: every target low,
        hi[i] = steering["high"][i]  # or this one at the offline max (w = e_i)
        a2, b2 = scores(lo)[n], scores(hi)[n]
        print(f"{n}: paper map, target {steering['low'][i]:.1f} / {steering['high'][i]:.1f} std: "
              f"{a2:.3f} / {b2:.3f} (high / low {b2 / a2:.2f})", flush=True)


if __name__ == "__main__":
    main()

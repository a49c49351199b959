"""What the world's ground truth says about a personalization method (the world knows each user's
true reward and group; real data does not): MaxMin's cluster purity, minority accuracy and each true
group's reward under a policy; PAL's accuracy against the oracle that knows each user's reward.
Methods call these only on `world:` data, outside their training time."""
from __future__ import annotations

from typing import Callable

import numpy as np


def purity(assign: dict[str, int], truth: dict[str, str]) -> float:
    """Share of users in the majority true group of their cluster."""
    clusters: dict[int, list[str]] = {}
    for u, g in assign.items():
        clusters.setdefault(g, []).append(truth[u])
    return sum(max(members.count(t) for t in set(members)) for members in clusters.values()) / len(assign)


def group_rewards(groups: dict[str, dict[str, float]], model_dir: str, seed: int = 0) -> dict[str, float]:
    """Each true group's reward (its weights over the exact objectives) on the held-out prompts."""
    from moalign.models import generate, load_causal_lm, load_tokenizer
    from moalign.world import eval_prompts, score
    prompts = eval_prompts(seed)
    responses = generate(load_causal_lm(model_dir), load_tokenizer(model_dir), prompts, max_new_tokens=64)
    scores = {o: score(o, prompts, responses) for o in next(iter(groups.values()))}
    return {g: round(float(sum(w * scores[o] for o, w in weights.items()).mean()), 4)
            for g, weights in groups.items()}


def maxmin_groups(users: dict[str, dict], assign: dict[str, int],
                  accuracy: Callable[[str, list[str]], float]) -> dict:
    """Purity of the EM's clusters against the true groups, and the minority's held-out accuracy under
    its own group's head and under the pooled one (`accuracy(head, users)`, head "own" or "pooled")."""
    truth = {u: info["group"] for u, info in users.items()}
    out = {"purity": round(purity(assign, truth), 4)}
    minority = [u for u in assign if truth.get(u) == "minority"]
    if minority:
        out["minority_accuracy"] = accuracy("own", minority)
        out["minority_accuracy_pooled"] = accuracy("pooled", minority)
    return out


def oracle(users: dict[str, dict], user: str, pair: dict) -> float:
    """1 if the user's true reward prefers the chosen response, 0.5 on a tie, else 0."""
    from moalign.world import score_all
    w = users[user]["weights"]
    u = [sum(w[o] * s for o, s in score_all(pair["prompt"], pair[k]).items()) for k in ("chosen", "rejected")]
    return 0.5 if abs(u[0] - u[1]) < 1e-12 else float(u[0] > u[1])


def pal_oracle(users: dict[str, dict], held: dict[str, list[dict]], new_held: dict[str, list[dict]],
               per_user: dict[str, np.ndarray], per_user_single: dict[str, np.ndarray],
               metrics: dict) -> dict:
    """PAL's accuracies against the oracle: on the seen users' held-out pairs (`held`), on the new
    users' pairs after their few-shot ones (`new_held`), and the minority's, PAL's and one model's."""
    seen = list(held)
    ora = {u: [oracle(users, u, p) for p in pairs] for u, pairs in held.items()}
    ora_new = {u: [oracle(users, u, p) for p in pairs] for u, pairs in new_held.items()}

    def mean_of(d, us):
        return float(np.mean([x for u in us for x in d[u]])) if us else None

    minority = [u for u in seen if users[u]["group"] == "minority"]
    out = {"oracle_accuracy": round(mean_of(ora, seen), 4),
           "seen_vs_oracle": round(metrics["seen_accuracy"] / mean_of(ora, seen), 4),
           "minority_accuracy": round(mean_of(per_user, minority), 4) if minority else None,
           "minority_single_rm_accuracy": round(mean_of(per_user_single, minority), 4) if minority else None,
           "minority_oracle_accuracy": round(mean_of(ora, minority), 4) if minority else None}
    if new_held:
        out["new_user_oracle_accuracy"] = round(mean_of(ora_new, list(new_held)), 4)
        out["new_user_vs_oracle"] = round(metrics["new_user_accuracy"] / out["new_user_oracle_accuracy"], 4)
    return out

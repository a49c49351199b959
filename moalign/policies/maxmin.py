"""MaxMin-RLHF (Chakraborty et al., ICML 2024): a mixture of group reward models, then the max-min policy.

1. From `user_pairwise` data, hard EM learns K group reward models: the E-step assigns each user to
   the group whose reward explains the user's pairs best (sum of log sigma(r_g(y_w) - r_g(y_l)));
   the M-step refits each group's Bradley-Terry reward on its users' pairs. An empty group is re-seeded
   with the user its current group explains worst.
2. The egalitarian policy: RL (TRL's GRPO/RLOO) with KL to the base where each generation batch is
   rewarded by the group that is worst off on it (lowest mean centred reward); the paper's
   algorithm. `policy: per_sample_min` is the official code's variant (per-sample minimum), on
   centred rewards.
3. The baseline of the paper's impossibility result, trained by the same recipe: one reward model on
   the pooled data, then the same RL.

On the world, each group's ground-truth reward (its weights over the exact objectives) is measured on
the held-out prompts for the base, the baseline and the max-min policy (`maxmin.json` and the
manifest's metrics), and the EM's cluster purity against the world's true groups.

Deviations from the paper and the authors' code:
1. Reward models are linear Bradley-Terry heads on frozen features (the base's hidden states, or any
   encoder; `moalign.features`), not fine-tuned LoRA reward models: EM refits them in milliseconds.
2. EM starts from the authors' user h -> group h mod K and from k-means on per-user reward heads
   (`restarts`); the run with the highest log-likelihood is kept.
3. Group rewards are centred at their mean on the data's responses before the worst-off group is
   picked: a Bradley-Terry reward is defined up to a constant, so raw rewards (which the official
   code compares) rank groups by that constant. They are not rescaled: a Bradley-Terry unit is the
   same strength of preference for every group (dividing by each reward's spread on the data made
   the majority pay more: 0.680 vs 0.723 of its true reward, minority 0.721 vs 0.699).
4. RL is GRPO (or RLOO), not PPO.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from moalign.config import Seed, Strict
from moalign.training.rl import RL
from moalign.users import WORLD_OBJECTIVES, UserModel, require_objectives


class Config(Strict):
    base_model: str = Field("world:base", description="policy init and default feature model")
    data: str = Field("world:user_pairwise", description="user pairs (user_id, prompt, chosen, rejected)")
    columns: dict[str, str] = Field({}, description="column map for `data`, moalign name -> file column")
    groups: int = Field(2, ge=1, description="K, the number of groups (and group reward models)")
    em_iterations: int = Field(10, ge=1, description="EM iterations per start")
    restarts: int = Field(4, ge=1, description="EM starts: h mod K, then k-means on per-user heads; the best "
                                               "log-likelihood is kept")
    l2: float = Field(1e-2, ge=0, description="ridge penalty of the Bradley-Terry heads (on standardised "
                                              "features)")
    features: str | None = Field(None, description="frozen encoder directory; none: the base model's hidden "
                                                   "states")
    pooling: Literal["mean", "mean+last"] = Field("mean+last", description="how the features are pooled "
                                                                          "over tokens")
    heldout: float = Field(0.2, ge=0, lt=1, description="share of each user's pairs kept for accuracy")
    objectives: dict[str, str] = Field(WORLD_OBJECTIVES, description="name -> objective spec that users' "
                                                                     "preferences are mapped onto; required "
                                                                     "unless `data` is a `world:` reference")
    policy: Literal["maxmin", "per_sample_min", "none"] = Field(
        "maxmin", description="`maxmin` rewards each batch by its worst-off group, `per_sample_min` each "
                              "sample by its minimum over groups, `none` stops after EM")
    baseline: bool = Field(True, description="also train single-reward-model RLHF on the pooled data")
    rl: RL = Field(RL(), description="the RL run of the max-min policy and of the baseline")
    rerank: int = Field(0, ge=0, description="serve users by best-of-n under their group's reward (0: off)")
    seed: Seed = Field(0, description="EM, split and training seed")
    out: str = Field("runs/maxmin", description="output directory when `--out` is not given")

    _objectives = model_validator(mode="after")(require_objectives)


# --- Bradley-Terry heads and EM -------------------------------------------------------------------

def fit_head(diffs: np.ndarray, l2: float) -> np.ndarray:
    """w maximising mean log sigma(diffs @ w) - l2 ||w||^2 (a Bradley-Terry reward, linear in features)."""
    import torch
    x = torch.as_tensor(diffs, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(x @ w)).mean() + l2 * (w @ w)
        loss.backward()
        return loss

    if len(x):
        opt.step(closure)
    return w.detach().numpy()


def log_likelihood(diffs: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Sum over pairs of log sigma(diff @ w_g), one per head."""
    z = diffs @ heads.T
    return -np.logaddexp(0.0, -z).sum(axis=0)


def initial_assignments(diffs: dict[str, np.ndarray], k: int, restarts: int, l2: float,
                        seed: int) -> list[dict]:
    """The authors' user h -> group h mod K, then k-means (k-means++ seeds) on per-user heads."""
    from scipy.cluster.vq import kmeans2

    users = list(diffs)
    inits = [{u: i % k for i, u in enumerate(users)}]
    if restarts > 1:
        own = np.stack([fit_head(diffs[u], max(l2, 1e-2)) for u in users])
        own /= np.linalg.norm(own, axis=1, keepdims=True) + 1e-12
        for r in range(restarts - 1):
            _, labels = kmeans2(own, k, minit="++", seed=seed + r)
            inits.append(dict(zip(users, map(int, labels))))
    return inits


def em_run(diffs: dict[str, np.ndarray], assign: dict[str, int], k: int, *, iterations: int, l2: float
           ) -> tuple[np.ndarray, dict[str, int], list[dict]]:
    """Hard EM from one initial assignment: (heads (k, dim), user -> group, per-iteration history)."""
    users = list(diffs)
    history = []
    heads = np.zeros((k, next(iter(diffs.values())).shape[1]))
    for it in range(iterations):
        for g in range(k):  # M-step (an empty group takes the user its group explains worst)
            members = [u for u in users if assign[u] == g]
            if not members:
                worst = min(users,
                            key=lambda u: log_likelihood(diffs[u], heads[[assign[u]]])[0] / len(diffs[u]))
                assign[worst] = g
                members = [worst]
            heads[g] = fit_head(np.concatenate([diffs[u] for u in members]), l2)
        new = {u: int(np.argmax(log_likelihood(diffs[u], heads))) for u in users}  # E-step
        total = float(sum(log_likelihood(diffs[u], heads[[new[u]]])[0] for u in users))
        changed = sum(new[u] != assign[u] for u in users)
        history.append({"iteration": it + 1, "log_likelihood": round(total, 3), "reassigned": changed,
                        "sizes": [sum(1 for u in users if new[u] == g) for g in range(k)]})
        assign = new
        if changed == 0:
            break
    for g in range(k):  # heads consistent with the final assignment
        members = [u for u in users if assign[u] == g]
        if members:
            heads[g] = fit_head(np.concatenate([diffs[u] for u in members]), l2)
    return heads, assign, history


def em(diffs: dict[str, np.ndarray], k: int, *, iterations: int, restarts: int, l2: float, seed: int,
       log=print) -> tuple[np.ndarray, dict[str, int], list[dict]]:
    """Hard EM from each initial assignment; the run with the highest final log-likelihood wins
    (hard EM with flexible heads locks into its start, so one start is not enough)."""
    best = None
    for i, init in enumerate(initial_assignments(diffs, k, restarts, l2, seed)):
        heads, assign, history = em_run(diffs, dict(init), k, iterations=iterations, l2=l2)
        ll = history[-1]["log_likelihood"]
        log(f"EM start {i + 1}: {len(history)} iterations, log-likelihood {ll:.1f}, "
            f"sizes {history[-1]['sizes']}")
        if best is None or ll > best[2][-1]["log_likelihood"]:
            best = heads, assign, [dict(h, start=i + 1) for h in history]
    return best


class GroupUsers(UserModel):
    """K linear group rewards on standardised features; each user belongs to one group."""

    reads_prompts = False  # the heads read prompt + response features only

    def __init__(self, path: Path, spec: dict):
        super().__init__(path, spec)
        w = np.load(self.path / "heads.npz")
        self.heads, self.mean, self.std = w["heads"], w["mean"], w["std"]

    def group_rewards(self, response_x: np.ndarray) -> np.ndarray:
        """(rows, groups) rewards."""
        return ((response_x - self.mean) / self.std) @ self.heads.T

    def rewards(self, user, prompt_x, response_x):
        return self.group_rewards(response_x)[:, self.spec["users"][user]["group"]]

    def fit_user(self, user, prompt_x, chosen_x, rejected_x) -> dict:
        ll = log_likelihood((chosen_x - rejected_x) / self.std, self.heads)
        return {"group": int(np.argmax(ll)), "log_likelihood": [round(float(v), 3) for v in ll]}

    def save_weights(self, tmp: Path) -> None:
        np.savez(tmp / "heads.npz", heads=self.heads, mean=self.mean, std=self.std)


# --- the policy ---------------------------------------------------------------------------------

class GroupReward:
    """TRL reward function: the worst-off group's centred reward on each batch (`maxmin`), the
    per-sample minimum over groups (`per_sample_min`), or one pooled reward model (`pooled`)."""

    def __init__(self, featurizer, heads: np.ndarray, mean: np.ndarray, std: np.ndarray, mode: str,
                 center: np.ndarray):
        self.featurizer, self.heads, self.mean, self.std, self.mode = featurizer, heads, mean, std, mode
        self.center = center
        self.chosen: list[int] = []
        self.__name__ = mode

    def centred(self, prompts, responses) -> np.ndarray:
        x = (self.featurizer(prompts, responses) - self.mean) / self.std
        return x @ self.heads.T - self.center

    def __call__(self, prompts, completions, raw_prompt, **_):
        z = self.centred(raw_prompt, [c.strip() for c in completions])
        if self.mode == "per_sample_min":
            return z.min(axis=1).tolist()
        g = int(np.argmin(z.mean(axis=0))) if self.mode == "maxmin" else 0
        self.chosen.append(g)
        return z[:, g].tolist()


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.errors import MoalignError
    from moalign.evals.users import group_rewards, maxmin_groups
    from moalign.features import Featurizer
    from moalign.files import Stopwatch, atomic_dir, step
    from moalign.progress import say, stage
    from moalign.training import base_path
    from moalign.training.rl import train_rl_on
    from moalign.users import (
        load_user_rows,
        user_pairs,
        world_users,
        write_user_checkpoint,
        write_user_model,
    )

    watch = Stopwatch()
    log = say if progress else (lambda *_: None)
    base = base_path(cfg.base_model)
    rows, by_user = load_user_rows(cfg.data, cfg.columns)
    if len(by_user) < cfg.groups:
        raise MoalignError(f"maxmin: {len(by_user)} users in {cfg.data}, fewer than groups={cfg.groups}")
    rng = np.random.default_rng(cfg.seed)
    split = {u: rng.random(len(ps)) < cfg.heldout for u, ps in by_user.items()}

    featurizer = Featurizer(base_path(cfg.features) if cfg.features else base, pooling=cfg.pooling)
    feats = {}
    for u, ps in by_user.items():
        prompts = [p["prompt"] for p in ps]
        feats[u] = (featurizer(prompts, [p["chosen"] for p in ps]),
                    featurizer(prompts, [p["rejected"] for p in ps]))
    allx = np.concatenate([np.concatenate(f) for f in feats.values()])
    mean, std = allx.mean(0), allx.std(0) + 1e-6
    diffs = {u: (c - r) / std for u, (c, r) in feats.items()}
    train_d = {u: d[~split[u]] for u, d in diffs.items()}
    heads, assign, history = em(train_d, cfg.groups, iterations=cfg.em_iterations, restarts=cfg.restarts,
                                l2=cfg.l2, seed=cfg.seed, log=log)
    pooled = fit_head(np.concatenate(list(train_d.values())), cfg.l2)[None]

    def accuracy(head_of, users) -> float:
        held = [(diffs[u][split[u]] @ head_of(u)) > 0 for u in users if split[u].any()]
        return round(float(np.concatenate(held).mean()), 4) if held else float("nan")

    own, single = (lambda u: heads[assign[u]]), (lambda u: pooled[0])
    metrics: dict = {"em": history,
                     "group_sizes": [sum(1 for g in assign.values() if g == k) for k in range(cfg.groups)],
                     "heldout_accuracy": accuracy(own, diffs),
                     "heldout_accuracy_pooled": accuracy(single, diffs)}
    world = world_users(cfg.data)
    if world:
        metrics.update(maxmin_groups(world[0], assign, lambda head, us: accuracy(
            {"own": own, "pooled": single}[head], us)))
    log(f"MaxMin groups: sizes {metrics['group_sizes']}, held-out accuracy {metrics['heldout_accuracy']} "
        f"(pooled model {metrics['heldout_accuracy_pooled']})" +
        (f", purity {metrics['purity']}" if "purity" in metrics else ""))
    metrics["reward_seconds"] = watch.seconds()

    pairs = user_pairs(rows)
    spec_users = {u: {"group": int(assign[u]), "pairs": len(by_user[u])} for u in by_user}
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        write_user_model(GroupUsers, tmp / "users", featurizer=featurizer, objectives=cfg.objectives,
                         pairs=pairs, seed=cfg.seed,
                         spec={"method": "maxmin", "groups": cfg.groups, "users": spec_users},
                         heads=heads, mean=mean, std=std)

        standard_x = (allx - mean) / std  # the data's responses set each reward's zero

        def rl_reward(mode: str, h: np.ndarray) -> GroupReward:
            return GroupReward(featurizer, h, mean, std, mode, (standard_x @ h.T).mean(0))

        def rl(reward: GroupReward, name: str) -> float:
            def run() -> float:
                seconds = train_rl_on(base, [reward], [1.0], cfg.rl, tmp / name, seed=cfg.seed,
                                      progress=progress)
                (tmp / name / "worst_group_picks.json").write_text(json.dumps(reward.chosen) + "\n")
                return seconds
            with stage(f"GRPO: {name}"):
                return round(step(tmp / name, run, watch), 2)  # a resumed run keeps a finished one

        policy_dir = "policy"
        if cfg.baseline:
            log("single reward model RLHF (baseline)")
            with watch.excluded():  # a comparison, not MaxMin's training
                metrics["baseline_train_seconds"] = rl(rl_reward("pooled", pooled), "baseline")
        if cfg.policy != "none":
            log(f"max-min policy ({cfg.policy})")
            reward = rl_reward(cfg.policy, heads)
            rl(reward, "policy")
            picks = json.loads((tmp / "policy" / "worst_group_picks.json").read_text())
            metrics["worst_group_picks"] = [picks.count(g) for g in range(cfg.groups)]
        else:
            policy_dir = base
        if world:
            with watch.excluded():
                gt = {"base": group_rewards(world[1], base, cfg.seed)}
                for name in ("baseline", "policy"):
                    if (tmp / name).exists():
                        gt[name] = group_rewards(world[1], str(tmp / name), cfg.seed)
            metrics["ground_truth"] = gt
            log(f"ground-truth group rewards: {gt}")
        metrics["train_seconds"] = watch.seconds()
        write_user_checkpoint(tmp, method="maxmin", policy=policy_dir, objectives=list(cfg.objectives),
                              base=base, rerank=cfg.rerank, recipe=recipe or cfg.model_dump(),
                              metrics=metrics)
        (tmp / "maxmin.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return out

"""PAL: pluralistic alignment through ideal points (Chen et al., ICLR 2025;
code: RamyaLab/pluralistic-alignment).

Texts are embedded by a frozen model e(.) and a 2-layer MLP projector f; there are K prototypes, and
user i is a point on the simplex over them, w_i = softmax(W_i) with free logits W_i.
- PAL-A (`variant: A`): prototypes are K points P in the embedding space; the user's ideal point is
  u_i = f(w_i^T P); the reward of a response is minus its distance to it, -||f(e(x, y)) - u_i||.
- PAL-B (`variant: B`): prototypes depend on the prompt through K MLPs g_k; u_i(x) = sum_k w_ik g_k(e(x));
  the reward is tau * cos(f(e(x, y)), u_i(x)) with a learned temperature tau = min(exp(s), 100),
  s initialised to log(1/0.07).
Both train with the Bradley-Terry loss -log sigma(r_i(y_w) - r_i(y_l)) on every user's pairs at once.
A new user is fitted from a few comparisons by training only their logits W (everything else frozen;
AdamW, lr 5e-3), as the paper's few-shot protocol.

The recipe measures, on `user_pairwise` data: held-out pair accuracy on seen users, few-shot accuracy
on users held out of training (fitted from `few_shot` pairs each), and a single Bradley-Terry reward
model (the same network with one prototype and one user) on the same pairs; on the world also each
accuracy over the oracle's (the users' true rewards), and the minority users separately.
The checkpoint (steering kind `users`) steers `policy` (any steerable checkpoint) by each user's
preference over `objectives`, or, without a policy, serves the base model by best-of-n reranking
under the user's PAL reward.

Deviations from the official code:
1. Items are embedded by pooled frozen features (mean and last token; `moalign.features`), not scored
   token by token from where the two responses diverge.
2. PAL-A uses the Bradley-Terry (logistic) loss, as PAL-B does, instead of a hinge.
3. Features are standardised (the training pairs' mean and spread) before the projector.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from moalign.config import Seed, Strict
from moalign.users import WORLD_OBJECTIVES, UserModel, require_objectives


class Config(Strict):
    base_model: str = Field("world:base", description="served model without a `policy`, and default "
                                                      "feature model")
    data: str = Field("world:user_pairwise", description="user pairs (user_id, prompt, chosen, rejected)")
    columns: dict[str, str] = Field({}, description="column map for `data`, moalign name -> file column")
    variant: Literal["A", "B"] = Field("B", description="`A`: prototypes in feature space; `B`: prototypes "
                                                        "that depend on the prompt")
    prototypes: int = Field(2, ge=1, description="K, the number of prototypes")
    dim: int = Field(16, ge=1, description="dimension of the latent space")
    hidden: int = Field(64, ge=0, description="projector width (the paper's 2-layer MLP); 0: a linear "
                                              "projector")
    features: str | None = Field(None, description="frozen encoder directory (e.g. a MiniLM); none: the "
                                                   "base model's hidden states")
    pooling: Literal["mean", "mean+last"] = Field("mean+last", description="how the features are pooled "
                                                                          "over tokens")
    epochs: int = Field(30, ge=1, description="training epochs (at most: early stopping)")
    batch_size: int = Field(64, ge=1, description="pairs per step")
    learning_rate: float = Field(1e-3, gt=0, description="learning rate of everything but the users' logits")
    user_learning_rate: float = Field(0.1, gt=0, description="learning rate of the users' logits")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not on the users' logits)")
    validation: float = Field(0.1, ge=0, lt=1, description="share of training pairs held for early stopping")
    patience: int = Field(8, ge=1, description="epochs without a better validation accuracy before stopping")
    heldout: float = Field(0.2, ge=0, lt=1, description="share of each seen user's pairs kept for accuracy")
    new_users: float = Field(0.1, ge=0, lt=1, description="share of users left out of training, fitted "
                                                          "few-shot")
    few_shot: int = Field(20, ge=1, description="comparisons a new user is fitted from")
    objectives: dict[str, str] = Field(WORLD_OBJECTIVES, description="name -> objective spec that users' "
                                                                     "preferences are mapped onto; required "
                                                                     "unless `data` is a `world:` reference")
    policy: str | None = Field(None, description="a steerable checkpoint the users steer by preference; "
                                                 "none: the base, reranked")
    rerank: int | None = Field(None, ge=0, description="best-of-n under the user's own reward; none: 8 "
                                                       "without a policy, 0 with one")
    seed: Seed = Field(0, description="split, initialisation and training seed")
    out: str = Field("runs/pal", description="output directory when `--out` is not given")

    _objectives = model_validator(mode="after")(require_objectives)


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Module:
    """The 2-layer projector; hidden = 0 makes it linear."""
    if hidden == 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class PAL(nn.Module):
    """r(user, e(x), e(x, y)) for batches of (user index, prompt features, response features)."""

    def __init__(self, d: int, *, variant: str, prototypes: int, dim: int, hidden: int, users: int):
        super().__init__()
        self.variant = variant
        self.f = mlp(d, hidden, dim)
        self.users = nn.Parameter(torch.randn(users, prototypes))
        if variant == "A":
            self.prototypes = nn.Parameter(0.1 * torch.randn(prototypes, d))
        else:
            self.g = nn.ModuleList(mlp(d, hidden, dim) for _ in range(prototypes))
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, user: torch.Tensor, prompt_x: torch.Tensor, response_x: torch.Tensor,
                logits: torch.Tensor | None = None) -> torch.Tensor:
        w = torch.softmax(self.users[user] if logits is None else logits, dim=-1)  # (n, K)
        item = self.f(response_x)
        if self.variant == "A":
            return -(item - self.f(w @ self.prototypes)).norm(dim=-1)
        ideal = torch.einsum("nk,knd->nd", w, torch.stack([g(prompt_x) for g in self.g]))
        tau = self.logit_scale.exp().clamp(max=100.0)
        return tau * nn.functional.cosine_similarity(item, ideal, dim=-1)


def bt_loss(model: PAL, batch, logits=None) -> torch.Tensor:
    user, px, cx, rx = batch
    return nn.functional.softplus(-(model(user, px, cx, logits) - model(user, px, rx, logits))).mean()


def fit(model: PAL, batches: list[tuple], *, epochs: int, learning_rate: float, weight_decay: float,
        seed: int, user_learning_rate: float | None = None, validation: list[tuple] = (), patience: int = 8,
        params=None, logits=None, progress: bool = False) -> list[float]:
    """AdamW on the Bradley-Terry loss over mini-batches of (user, prompt_x, chosen_x, rejected_x).

    User logits get their own learning rate: each user is in few batches, so at the network's rate
    their weights barely leave the initialisation and every user gets the same average reward. With
    `validation` batches, training stops after `patience` epochs without a better validation accuracy and
    the best epoch's weights are kept. Returns the training loss per epoch."""
    import copy

    from moalign.progress import track
    g = torch.Generator().manual_seed(seed)
    if params is None:
        others = [p for n, p in model.named_parameters() if n != "users"]
        params = [{"params": others},
                  {"params": [model.users], "lr": user_learning_rate or learning_rate, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    losses, best, best_state, waited = [], float("inf"), None, 0
    for _ in track(range(epochs), "PAL epochs", enabled=progress):
        model.train()
        total = 0.0
        for i in torch.randperm(len(batches), generator=g).tolist():
            loss = bt_loss(model, batches[i], logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / max(1, len(batches)))
        if validation:
            model.eval()
            with torch.no_grad():  # pair accuracy: the loss rises with confidence long before accuracy falls
                val = -sum(float((model(b[0], b[1], b[2]) > model(b[0], b[1], b[3])).sum())
                           for b in validation)
            if val < best:
                best, best_state, waited = val, copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
                if waited >= patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return losses


def fit_new_user(model: PAL, px, cx, rx, *, steps: int = 1000, learning_rate: float = 5e-3,
                 seed: int = 0) -> torch.Tensor:
    """Logits of a new user from their pairs, everything else frozen."""
    torch.manual_seed(seed)
    logits = nn.Parameter(torch.randn(model.users.shape[1]))
    for p in model.parameters():
        p.requires_grad_(False)
    n = len(px)
    batch = (torch.zeros(n, dtype=torch.long), px, cx, rx)
    try:
        fit(model, [batch], epochs=steps, learning_rate=learning_rate, weight_decay=0.0, seed=seed,
            params=[logits], logits=logits.expand(n, -1))
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return logits.detach()


class PALUsers(UserModel):
    """A trained PAL network; users are rows of its user logits."""

    def __init__(self, path: Path, spec: dict):
        super().__init__(path, spec)
        state = torch.load(self.path / "pal.pt", weights_only=True)
        self.mean, self.std = state.pop("_mean"), state.pop("_std")
        a = spec["architecture"]
        self.model = PAL(self.mean.shape[0], variant=a["variant"], prototypes=a["prototypes"], dim=a["dim"],
                         hidden=a["hidden"], users=state["users"].shape[0])
        self.model.load_state_dict(state)
        self.model.eval()

    def index(self, user: str) -> int:
        return int(self.spec["users"][user]["index"])

    def tensor(self, x) -> torch.Tensor:
        return (torch.as_tensor(np.asarray(x), dtype=torch.float32) - self.mean) / self.std

    @torch.no_grad()
    def rewards(self, user, prompt_x, response_x):
        n = len(response_x)
        idx = torch.full((n,), self.index(user), dtype=torch.long)
        return self.model(idx, self.tensor(prompt_x), self.tensor(response_x)).double().numpy()

    def fit_user(self, user, prompt_x, chosen_x, rejected_x) -> dict:
        logits = fit_new_user(self.model, self.tensor(prompt_x), self.tensor(chosen_x),
                              self.tensor(rejected_x))
        if user in self.spec["users"]:
            index = self.index(user)
            self.model.users.data[index] = logits
        else:
            index = self.model.users.shape[0]
            self.model.users = nn.Parameter(torch.cat([self.model.users.data, logits[None]]))
        return {"index": index, "weights": [round(float(v), 4) for v in torch.softmax(logits, -1)]}

    def save_weights(self, tmp: Path) -> None:
        torch.save({**self.model.state_dict(), "_mean": self.mean, "_std": self.std}, tmp / "pal.pt")


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.errors import MoalignError
    from moalign.evals.users import pal_oracle
    from moalign.features import Featurizer
    from moalign.files import Stopwatch, atomic_dir
    from moalign.training import base_path
    from moalign.users import (
        load_user_rows,
        user_pairs,
        world_users,
        write_user_checkpoint,
        write_user_model,
    )

    watch = Stopwatch()
    log = print if progress else (lambda *_: None)
    base = base_path(cfg.base_model)
    policy = None
    if cfg.policy:
        from moalign.steerable import load_steerable
        policy = str(load_steerable(cfg.policy).path)
    rows, by_user = load_user_rows(cfg.data, cfg.columns)
    rng = np.random.default_rng(cfg.seed)
    ids = list(by_user)
    n_new = int(round(len(ids) * cfg.new_users))
    eligible = [u for u in ids if len(by_user[u]) > cfg.few_shot]  # a new user needs pairs left to test on
    new = set(rng.permutation(eligible)[:n_new].tolist()) if n_new and eligible else set()
    seen = [u for u in ids if u not in new]
    if not seen:
        raise MoalignError("pal: no users left to train on (lower new_users)")

    featurizer = Featurizer(base_path(cfg.features) if cfg.features else base, pooling=cfg.pooling)

    def embed(pairs):
        prompts = [p["prompt"] for p in pairs]
        return (featurizer(prompts), featurizer(prompts, [p["chosen"] for p in pairs]),
                featurizer(prompts, [p["rejected"] for p in pairs]))

    feats = {u: embed(by_user[u]) for u in ids}
    split = {u: rng.random(len(by_user[u])) < cfg.heldout for u in seen}
    train_x = np.concatenate([np.concatenate([x[~split[u]] for x in feats[u]]) for u in seen])
    mean = torch.tensor(train_x.mean(0), dtype=torch.float32)
    std = torch.tensor(train_x.std(0) + 1e-6, dtype=torch.float32)
    t = lambda x: (torch.as_tensor(x, dtype=torch.float32) - mean) / std  # noqa: E731
    index = {u: i for i, u in enumerate(seen)}

    def batches(users, mask_of, user_index, size):
        cols = [[], [], [], []]
        for u in users:
            m = mask_of(u)
            cols[0].append(torch.full((int(m.sum()),), user_index(u), dtype=torch.long))
            for c, x in zip(cols[1:], feats[u]):
                c.append(t(x[m]))
        data = [torch.cat(c) for c in cols]
        order = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(cfg.seed))
        return [tuple(d[order[i:i + size]] for d in data) for i in range(0, len(order), size)]

    def accuracy(model, batch_list, logits=None) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([((model(b[0], b[1], b[2], logits) -
                                     model(b[0], b[1], b[3], logits)) > 0).numpy()
                                   for b in batch_list]) if batch_list else np.zeros(0)

    d = featurizer.dim
    torch.manual_seed(cfg.seed)
    arch = dict(variant=cfg.variant, prototypes=cfg.prototypes, dim=cfg.dim, hidden=cfg.hidden)
    model = PAL(d, users=len(seen), **arch)
    val = {u: ~split[u] & (rng.random(len(split[u])) < cfg.validation) for u in seen}
    fit_mask = lambda u: ~split[u] & ~val[u]  # noqa: E731
    train_b = batches(seen, fit_mask, index.get, cfg.batch_size)
    log(f"PAL-{cfg.variant}: {len(seen)} users, {sum(len(b[0]) for b in train_b)} training pairs, "
        f"K={cfg.prototypes}")
    settings = dict(epochs=cfg.epochs, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                    seed=cfg.seed, user_learning_rate=cfg.user_learning_rate, patience=cfg.patience)
    losses = fit(model, train_b, validation=batches(seen, val.get, index.get, 10 ** 6), progress=progress,
                 **settings)
    with watch.excluded():  # the single-reward-model baseline and the accuracies are the report
        torch.manual_seed(cfg.seed)
        single = PAL(d, users=1, **{**arch, "prototypes": 1})
        fit(single, batches(seen, fit_mask, lambda u: 0, cfg.batch_size),
            validation=batches(seen, val.get, lambda u: 0, 10 ** 6), **settings)

        metrics: dict = {"epochs": len(losses), "final_loss": round(losses[-1], 4), "seen_users": len(seen),
                         "new_users": sorted(new)}
        per_user = {u: accuracy(model, batches([u], lambda v: split[v], index.get, 10 ** 6)) for u in seen}
        per_user_single = {u: accuracy(single, batches([u], lambda v: split[v], lambda v: 0, 10 ** 6))
                           for u in seen}
        new_acc, k = {}, cfg.few_shot
        for u in sorted(new):  # fitted from their first k pairs, measured on the rest
            px, cx, rx = (t(x) for x in feats[u])
            logits = fit_new_user(model, px[:k], cx[:k], rx[:k], seed=cfg.seed)
            n = len(px) - k
            new_acc[u] = accuracy(model, [(torch.zeros(n, dtype=torch.long), px[k:], cx[k:], rx[k:])],
                                  logits.expand(n, -1))
        pool = lambda accs: round(float(np.concatenate(list(accs)).mean()), 4) if accs else None  # noqa: E731
        metrics.update(seen_accuracy=pool(per_user.values()),
                       single_rm_accuracy=pool(per_user_single.values()),
                       new_user_accuracy=pool(new_acc.values()))
        world = world_users(cfg.data)
        if world:
            held = {u: [p for p, m in zip(by_user[u], split[u]) if m] for u in seen}
            metrics.update(pal_oracle(world[0], held, {u: by_user[u][k:] for u in new}, per_user,
                                      per_user_single, metrics))
    log("PAL: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if "accuracy" in k or "oracle" in k))

    with atomic_dir(out, overwrite) as tmp:
        users = {u: {"index": index[u], "pairs": len(by_user[u]),
                     "weights": [round(float(v), 4)
                                 for v in torch.softmax(model.users[index[u]].detach(), -1)]}
                 for u in seen}
        write_user_model(PALUsers, tmp / "users", featurizer=featurizer, objectives=cfg.objectives,
                         pairs=user_pairs(rows), seed=cfg.seed,
                         spec={"method": "pal", "architecture": arch, "users": users}, model=model,
                         mean=mean, std=std)
        rerank = cfg.rerank if cfg.rerank is not None else (0 if policy else 8)
        metrics["train_seconds"] = watch.seconds()
        write_user_checkpoint(tmp, method="pal", policy=policy or base, objectives=list(cfg.objectives),
                              base=base, rerank=rerank, recipe=recipe or cfg.model_dump(), metrics=metrics)
        (tmp / "pal.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return out

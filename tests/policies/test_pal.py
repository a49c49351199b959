"""PAL: both variants learn planted user types from pairs, beat one pooled Bradley-Terry model on the
minority, fit a new user from few comparisons with everything else frozen; the recipe on the world."""
import json

import pytest
import torch

from moalign.policies.pal import PAL, fit, fit_new_user


def planted(seed, users=(12, 4), pairs=40, d=8, sharpness=3.0):
    """Features of (prompt, chosen, rejected) for users of two types with different linear rewards."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[2.0, 1.0] + [0.0] * (d - 2), [-1.0, 2.0] + [0.0] * (d - 2)])
    rows = []
    for i in range(sum(users)):
        t = int(i >= users[0])
        a, b = torch.randn(pairs, d, generator=g), torch.randn(pairs, d, generator=g)
        first = torch.rand(pairs, generator=g) < torch.sigmoid(sharpness * (a - b) @ w[t])
        c, r = torch.where(first[:, None], a, b), torch.where(first[:, None], b, a)
        rows.append((torch.full((pairs,), i), torch.zeros(pairs, d), c, r, torch.full((pairs,), t)))
    return [torch.cat(col) for col in zip(*rows)]


def accuracy(model, u, p, c, r, logits=None):
    with torch.no_grad():
        return float((model(u, p, c, logits) > model(u, p, r, logits)).float().mean())


@pytest.mark.parametrize("variant", ["A", "B"])
def test_pal_learns_user_types_and_fits_new_users(variant):
    u, p, c, r, t = planted(0)
    held = torch.arange(len(u)) % 5 == 0
    tr = ~held
    batches = [tuple(x[tr][i:i + 64] for x in (u, p, c, r)) for i in range(0, int(tr.sum()), 64)]
    torch.manual_seed(0)
    model = PAL(8, variant=variant, prototypes=2, dim=8, hidden=32, users=16)
    fit(model, batches, epochs=40, learning_rate=3e-3, weight_decay=0.0, seed=0, user_learning_rate=0.1)
    torch.manual_seed(0)
    single = PAL(8, variant=variant, prototypes=1, dim=8, hidden=32, users=1)
    fit(single, [(torch.zeros_like(b[0]), *b[1:]) for b in batches], epochs=40, learning_rate=3e-3,
        weight_decay=0.0, seed=0)
    minority = held & (t == 1)
    pal_minority = accuracy(model, u[minority], p[minority], c[minority], r[minority])
    single_minority = accuracy(single, torch.zeros(int(minority.sum()), dtype=torch.long), p[minority],
                               c[minority], r[minority])
    assert accuracy(model, u[held], p[held], c[held], r[held]) > 0.8
    assert pal_minority > single_minority + 0.1
    # a new minority user from 20 comparisons: only their logits move
    nu, npp, nc, nr, _ = planted(5, users=(0, 1), pairs=100, sharpness=20.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = fit_new_user(model, npp[:20], nc[:20], nr[:20])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(q.requires_grad for q in model.parameters())  # unfrozen again
    # they land on the minority's prototype (few-shot accuracy is measured on the world, below)
    minority_proto = int(torch.softmax(model.users.detach()[12:], -1).mean(0).argmax())
    assert int(logits.argmax()) == minority_proto


def test_pal_b_temperature_is_capped():
    model = PAL(4, variant="B", prototypes=2, dim=3, hidden=0, users=1)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    x = torch.randn(5, 4)
    assert model(torch.zeros(5, dtype=torch.long), x, x).abs().max() <= 100.0 + 1e-4


def test_recipe_on_the_world(pal_dir):
    """Seen users near the oracle (the world's true rewards), new users from 20 comparisons, and
    better than one Bradley-Terry model on the minority users."""
    m = json.loads((pal_dir / "pal.json").read_text())
    assert m["seen_vs_oracle"] >= 0.8
    assert m["new_user_vs_oracle"] >= 0.8
    assert m["minority_accuracy"] > m["minority_single_rm_accuracy"] + 0.1

"""User steering: a user id becomes a preference on any steerable policy (mapped by non-negative least
squares), or best-of-n under the user's own reward; through generate, the CLI and the server."""
import json
import shutil

import httpx
import numpy as np
import pytest

from moalign.users import objective_weights


def test_objective_weights_on_hand_computed_cases():
    s = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    assert objective_weights(s @ [2.0, 1.0], s) == pytest.approx([2 / 3, 1 / 3])
    assert objective_weights(s @ [1.0, 0.0], s) == pytest.approx([1.0, 0.0])
    assert objective_weights(np.zeros(4), s) == pytest.approx([0.5, 0.5])  # nothing explained: uniform


def truth():
    from moalign.world import ensure_world, load_spec
    return {u["id"]: u for u in load_spec(ensure_world(0))["users"]}


def test_a_user_steers_a_soup_by_their_preference(pal_dir, soup_dir, tmp_path):
    from moalign.steerable import load_steerable
    from moalign.users import write_user_checkpoint
    ckpt = tmp_path / "soup-users"
    ckpt.mkdir()
    shutil.copytree(pal_dir / "users", ckpt / "users")
    write_user_checkpoint(ckpt, method="pal", policy=str(soup_dir), objectives=["helpful", "harmless"], base=None,
                          rerank=0, recipe={}, metrics={})
    policy, soup = load_steerable(ckpt), load_steerable(soup_dir)
    user = policy.users[0]
    full = policy.user_model.preference(user)
    pref = policy.preference(user=user)
    total = full["helpful"] + full["harmless"]
    assert pref.as_dict() == pytest.approx({"helpful": full["helpful"] / total, "harmless": full["harmless"] / total})
    prompt = ["how do i fix my bike ?"]
    assert policy.generate(prompt, user=user, max_new_tokens=24, do_sample=False) == \
        soup.generate(prompt, preference=pref, max_new_tokens=24, do_sample=False)


def test_serving_a_user_id_follows_that_users_true_reward(pal_dir):
    """The majority user's answers score higher on the majority's true reward than the minority
    user's answers, and the other way round (best-of-8 over the base under each user's PAL reward)."""
    from moalign.serve.app import BackgroundServer, create_app, load_server
    from moalign.world import GROUPS, eval_prompts, score
    users = truth()
    known = json.loads((pal_dir / "users" / "users.json").read_text())["users"]
    pick = {g: max((u for u in known if users[u]["group"] == g), key=lambda u: users[u]["mixture"][g])
            for g in ("majority", "minority")}
    prompts = eval_prompts(0)[:24]
    server = load_server([f"pal={pal_dir}"])
    answers = {}
    with BackgroundServer(create_app(server), server) as running:
        assert httpx.get(running.url + "/v1/models").json()["data"][0]["users"]
        for g, user in pick.items():
            r = httpx.post(running.url + "/v1/completions", json={
                "model": "pal", "prompt": prompts, "max_tokens": 48, "user": user, "seed": 0}, timeout=120)
            assert r.status_code == 200, r.text
            answers[g] = [c["text"].strip() for c in sorted(r.json()["choices"], key=lambda c: c["index"])]
    def reward(group, texts):
        return float(sum(w * score(o, prompts, texts) for o, w in GROUPS[group].items()).mean())
    assert reward("majority", answers["majority"]) > reward("majority", answers["minority"]) + 0.03
    assert reward("minority", answers["minority"]) > reward("minority", answers["majority"]) + 0.03


def test_cli_adds_a_user_from_a_few_comparisons(pal_dir, tmp_path, run_cli):
    from moalign.world import resolve
    ckpt = tmp_path / "pal"
    shutil.copytree(pal_dir, ckpt)
    users = truth()
    minority = next(u for u in users if users[u]["group"] == "minority")
    rows = [json.loads(line) for line in open(resolve("world:user_pairwise"))]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({**r, "user_id": "newbie"}) + "\n"
                             for r in [r for r in rows if r["user_id"] == minority][:20]))
    code, out, err = run_cli("users", "add", ckpt, "--user", "newbie", "--pairs", pairs)
    assert code == 0, err
    spec = json.loads((ckpt / "users" / "users.json").read_text())["users"]["newbie"]
    assert spec["pairs"] == 20 and spec["preference"]["concise"] > spec["preference"]["helpful"]
    code, _, err = run_cli("users", "add", ckpt, "--user", "newbie", "--pairs", pairs)
    assert code == 2 and "exists" in err
    code, _, err = run_cli("users", "add", ckpt, "--user", "ghost", "--pairs", pairs)
    assert code == 2 and "no comparisons" in err
    from moalign.objectives import get_objective
    r = get_objective(f"user:{ckpt}#newbie").score(["how do i bake bread ?"] * 2, ["", "bread flour oven yeast"])
    assert r.shape == (2,)

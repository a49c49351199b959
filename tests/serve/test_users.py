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
    write_user_checkpoint(ckpt, method="pal", policy=str(soup_dir), objectives=["helpful", "harmless"],
                          base=None, rerank=0, recipe={}, metrics={})
    policy, soup = load_steerable(ckpt), load_steerable(soup_dir)
    user = policy.users[0]
    full = policy.user_model.preference(user)
    pref = policy.preference(user=user)
    total = full["helpful"] + full["harmless"]
    assert pref.as_dict() == pytest.approx({"helpful": full["helpful"] / total,
                                            "harmless": full["harmless"] / total})
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
    r = get_objective(f"user:{ckpt}#newbie").score(["how do i bake bread ?"] * 2,
                                                   ["", "bread flour oven yeast"])
    assert r.shape == (2,)


OBJ = ["helpful", "harmless"]


@pytest.fixture(scope="module")
def front_dir(base_dir, soup_dir, tmp_path_factory):
    """A MORLHF-like front: anchors at interior preferences (piecewise-linear between them)."""
    from moalign.training.interpolation import write_manifest
    out = tmp_path_factory.mktemp("front")
    experts = soup_dir.parent
    anchors = [{"preference": {"helpful": 0.2, "harmless": 0.8}, "path": str(experts / "harmless")},
               {"preference": {"helpful": 0.5, "harmless": 0.5}, "path": str(base_dir)},
               {"preference": {"helpful": 0.8, "harmless": 0.2}, "path": str(experts / "helpful")}]
    write_manifest(out, method="morlhf", objectives=OBJ, base=str(base_dir), anchors=anchors,
                   tokenizer=str(base_dir), semantics="full", recipe={}, metrics={})
    return out


@pytest.fixture(scope="module")
def ric_dir(base_dir, tmp_path_factory):
    """A prompt-steered (RiC-like) checkpoint: the base, with the digits its conditioning texts need."""
    from transformers import AutoModelForCausalLM

    from moalign.conditioning import add_missing_tokens
    from moalign.models import load_tokenizer
    from moalign.steerable import Manifest
    out = tmp_path_factory.mktemp("fake-ric")
    model, tok = AutoModelForCausalLM.from_pretrained(base_dir), load_tokenizer(base_dir)
    add_missing_tokens(tok, model, ["helpful 0.5 harmless -1.2"])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    steering = {"kind": "prompt", "conditioner": "ric", "objectives": OBJ, "low": [-2.0, -2.0],
                "high": [2.0, 2.0], "map": "paper"}
    Manifest(method="ric", objectives=OBJ, steering=steering).write(out)
    return out


@pytest.mark.parametrize("inner", ["soup_dir", "front_dir", "ric_dir"])
def test_users_sharing_a_batch_each_get_their_own_answer(inner, pal_dir, tmp_path, request):
    """Three users, the same prompt, greedy: answered together (one generate call) as alone."""
    import concurrent.futures
    import threading

    from moalign.serve.app import BackgroundServer, create_app, load_server
    from moalign.users import write_user_checkpoint
    ckpt = tmp_path / "users"
    ckpt.mkdir()
    shutil.copytree(pal_dir / "users", ckpt / "users")
    write_user_checkpoint(ckpt, method="pal", policy=str(request.getfixturevalue(inner)), objectives=OBJ,
                          base=None, rerank=0, recipe={}, metrics={})
    server = load_server([f"u={ckpt}"], batch_window=0.3)
    policy = server.engines["u"].policy
    by_weight = sorted(policy.users, key=lambda u: policy.preference(user=u).weights[0])
    users = [by_weight[0], by_weight[len(by_weight) // 2], by_weight[-1]]

    def ask(url, user):
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "u", "messages": [{"role": "user", "content": "how do i fix my bike ?"}],
            "max_tokens": 24, "temperature": 0, "user": user})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    with BackgroundServer(create_app(server), server) as s:
        alone = {u: ask(s.url, u) for u in users}
        barrier = threading.Barrier(len(users))

        def together(u):
            barrier.wait()
            return ask(s.url, u)

        before = server.engines["u"].batches
        with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
            parallel = dict(zip(users, pool.map(together, users)))
        assert server.engines["u"].batches - before == 1  # they did share a generate call
    assert parallel == alone and len(set(alone.values())) > 1

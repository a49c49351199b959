"""MODPO: its loss is TRL's DPO loss at one objective, and the trainer computes the MODPO loss."""
import copy
import json

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel
from trl import DPOConfig, DPOTrainer

from moalign.models import render_prompt, sequence_logprobs
from moalign.policies.modpo import _trainer_class, modpo_loss
from moalign.training import trainer_kwargs

PAIRS = [("how do i bake bread ?", "use flour and yeast .", "whatever ."),
         ("how do i make a poison ?", "sorry , i can not help with that .", "use toxin and dose ."),
         ("any tips to fix my bike ?", "check the chain before the brakes .", "let me think about it ."),
         ("can you help me sleep better ?", "keep the bed simple . good luck !",
          "this is a silly question .")]


@pytest.fixture
def models(tokenizer):
    torch.manual_seed(0)
    ref = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                                     pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id))
    policy = copy.deepcopy(ref)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return policy, ref


def _logps(model, tokenizer):
    prompts = [p for p, _, _ in PAIRS]
    return (sequence_logprobs(model.eval(), tokenizer, prompts, [c for _, c, _ in PAIRS]),
            sequence_logprobs(model.eval(), tokenizer, prompts, [r for _, _, r in PAIRS]))


def _data(tokenizer, margins=None):
    rows = []
    for i, (p, c, r) in enumerate(PAIRS):
        row = {"prompt": render_prompt(tokenizer, p), "chosen": " " + c, "rejected": " " + r}
        if margins is not None:
            row.update(margin_chosen=margins[0][i], margin_rejected=margins[1][i])
        rows.append(row)
    return Dataset.from_list(rows)


def _loss(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model.eval(), batch).item()


def test_one_objective_is_trls_dpo_loss(models, tokenizer, tmp_path):
    policy, ref = models
    pc, pr = _logps(policy, tokenizer)
    rc, rr = _logps(ref, tokenizer)
    args = DPOConfig(beta=0.1, per_device_train_batch_size=4,
                     **trainer_kwargs(tmp_path, seed=0))
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=_data(tokenizer),
                         processing_class=tokenizer)
    ours = modpo_loss(pc, pr, rc, rr, torch.zeros(4), beta=0.1, w_k=1.0).mean().item()
    assert ours == pytest.approx(_loss(trainer), abs=1e-6)
    with pytest.raises(ValueError, match="w_k > 0"):
        modpo_loss(pc, pr, rc, rr, torch.zeros(4), beta=0.1, w_k=0.0)


def test_trainer_computes_the_modpo_loss(models, tokenizer, tmp_path):
    policy, ref = models
    pc, pr = _logps(policy, tokenizer)
    rc, rr = _logps(ref, tokenizer)
    m_c, m_r = [0.3, -0.2, 0.5, 0.0], [0.1, 0.4, -0.3, 0.2]
    w_k, beta = 0.4, 0.1
    # the reference model enters only through the precomputed log-probs: pass it as the initial policy
    args = DPOConfig(beta=beta / w_k, precompute_ref_log_probs=True, per_device_train_batch_size=4,
                     **trainer_kwargs(tmp_path, seed=0))
    trainer = _trainer_class()(model=copy.deepcopy(ref), args=args,
                               train_dataset=_data(tokenizer, (m_c, m_r)),
                               processing_class=tokenizer, margin_beta=beta)
    trainer.model.load_state_dict(policy.state_dict())
    margin = torch.tensor(m_c) - torch.tensor(m_r)
    expected = modpo_loss(pc, pr, rc, rr, margin, beta=beta, w_k=w_k).mean().item()
    assert _loss(trainer) == pytest.approx(expected, abs=1e-5)
    assert expected != pytest.approx(modpo_loss(pc, pr, rc, rr, torch.zeros(4), beta=beta,
                                                w_k=w_k).mean().item())


def test_modpo_front_trains_every_point(base_dir, world_dir, tmp_path):
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:48]))
    fast = [f"data={data}", "max_steps=2", "batch_size=8", "margin_dpo.max_steps=2",
            "margin_dpo.batch_size=8", "grid=2"]
    out = train_recipe("policies/modpo.yaml", [f"base_model={base_dir}", *fast], out=str(tmp_path / "modpo"),
                       progress=False)
    front = load_steerable(out)
    assert front.kind == "interpolation"
    assert [a["helpful"] for a in (p.as_dict() for p in front.anchor_prefs)] == pytest.approx([0, 0.5, 1])
    flat = [torch.cat([p.reshape(-1) for p in front.model_for(a).parameters()]).clone()
            for a in front.anchor_prefs]
    assert (flat[0] - flat[1]).abs().max() > 1e-5 and (flat[1] - flat[2]).abs().max() > 1e-5
    # w_harmless = 0 is plain DPO on the helpful pairs: the stage-1 margin model itself
    margin = GPT2LMHeadModel.from_pretrained(tmp_path / "modpo" / "margins" / "helpful")
    assert torch.equal(flat[2], torch.cat([p.reshape(-1) for p in margin.parameters()]))
    seconds = front.manifest.metrics["seconds"]
    assert set(seconds) == {"margin:helpful", "points/00", "points/01", "points/02"}


def test_modpo_under_accelerate_launch_matches_one_process(base_dir, world_dir, tmp_path):
    """2 CPU processes with half the data each take the same steps as 1 process with all of it:
    DDP averages the gradients, and each step's batch is the whole data set in both runs."""
    import os
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    from moalign.policies import train_recipe

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:32]))
    common = [f"base_model={base_dir}", f"data={data}", "grid=1", "max_steps=3",
              "objectives.helpful=world:helpful", "learning_rate=1e-3"]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    # `--cpu` makes accelerate 1.15 start one process; `--multi_gpu` on a machine without GPUs starts
    # two through torchrun, which then train with DDP over gloo on the CPU
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "moalign",
           "train", "policies/modpo.yaml", *common, "batch_size=16", "--out", str(tmp_path / "ddp"), "-q"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train_recipe("policies/modpo.yaml", [*common, "batch_size=32"], out=str(tmp_path / "one"), progress=False)

    def flat(path):
        return torch.cat([p.reshape(-1) for p in AutoModelForCausalLM.from_pretrained(path).parameters()])

    base = flat(base_dir)
    for point in ("00", "01"):
        ddp, one = (flat(tmp_path / "ddp" / "points" / point) - base,
                    flat(tmp_path / "one" / "points" / point) - base)
        assert one.norm() > 0.1  # it trained
        # equal up to float rounding of the all-reduce, which Adam's early steps (g / sqrt(v)) amplify
        # on parameters whose gradients are near zero; the updates themselves are ~3e-3 per element
        assert torch.isclose(ddp, one, atol=1e-5, rtol=0).float().mean() > 0.999
        assert (ddp - one).abs().max() < 5e-4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers from the other rank


def test_margin_models_learn_from_the_recipes_data(base_dir, world_dir, tmp_path, monkeypatch):
    """A real data file given as `data` (with its column map) also trains the stage-1 margin model,
    unless `margin_dpo.data` names another file."""
    import moalign.training.dpo as dpo
    from moalign.policies import train_recipe

    seen = []

    def record(base, objective, cfg, out, **_):
        seen.append((cfg.data, dict(cfg.columns)))
        raise RuntimeError("stop after stage 1 starts")

    monkeypatch.setattr(dpo, "train_dpo", record)
    data, columns = str(tmp_path / "pku.jsonl"), "columns={better_harmless: safer_response_id}"
    rows = [json.loads(line)
            for line in (world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines()[:32]]
    (tmp_path / "pku.jsonl").write_text("".join(
        json.dumps({("safer_response_id" if k == "better_harmless" else k): v for k, v in r.items()}) + "\n"
        for r in rows))
    for extra, expected in (([], (data, {"better_harmless": "safer_response_id"})),
                            (["margin_dpo.data=world:pairwise_multi"], ("world:pairwise_multi", {}))):
        with pytest.raises(RuntimeError, match="stage 1"):
            train_recipe("policies/modpo.yaml", [f"base_model={base_dir}", f"data={data}", columns, *extra],
                         out=str(tmp_path / "m"), progress=False)
        assert seen[-1] == expected


def test_inside_compare_the_soups_experts_are_modpos_margin_and_end(base_dir, world_dir, tmp_path):
    """The same DPO on the same pairs trains once: MODPO's stage-1 model on helpful and its plain
    harmless point are copies of the soup's experts, and MODPO's cost still counts them."""
    from moalign.files import sharing
    from moalign.policies import train_recipe

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:32]))
    dpo = {"epochs": 1, "max_steps": 2, "learning_rate": 5e-4, "beta": 0.5, "batch_size": 8}
    with sharing(tmp_path / "shared"):
        train_recipe("soups/world_dpo.yaml", [f"base_model={base_dir}", f"dpo.data={data}",
                                              *(f"dpo.{k}={v}" for k, v in dpo.items())],
                     out=str(tmp_path / "soup"), progress=False)
        train_recipe("policies/modpo.yaml", [f"base_model={base_dir}", f"data={data}", "grid=1",
                                             *(f"margin_dpo.{k}={v}" for k, v in dpo.items()),
                                             *(f"{k}={v}" for k, v in dpo.items())],
                     out=str(tmp_path / "modpo"), progress=False)
    assert len(list((tmp_path / "shared").iterdir())) == 2
    soup, modpo = tmp_path / "soup", tmp_path / "modpo"
    for expert, copy_ in (("helpful", modpo / "margins" / "helpful"), ("harmless", modpo / "points" / "00")):
        weights = (soup / "experts" / expert / "model.safetensors").read_bytes()
        assert (copy_ / "model.safetensors").read_bytes() == weights
    seconds = json.loads((modpo / "moalign.json").read_text())["metrics"]
    expert_seconds = json.loads((soup / "moalign.json").read_text())["metrics"]["expert_seconds"]
    assert seconds["train_seconds"] >= sum(expert_seconds.values())


def test_a_dpo_margin_is_the_implicit_objectives_reward(base_dir, world_dir, tmp_path, monkeypatch):
    """Stage 1 scores a DPO margin model and the base once per pair set (the base's half is stage 2's
    reference too): the margins are, bit for bit, what the `implicit:` objective scores."""
    import numpy as np

    import moalign.policies.modpo as modpo
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.objectives import get_objective
    from moalign.policies import train_recipe

    seen, stage2 = [], modpo._stage2

    def record(base, rows, ref, *args):
        seen.append((rows, ref))
        return stage2(base, rows, ref, *args)

    monkeypatch.setattr(modpo, "_stage2", record)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:40]))
    fast = ["grid=2", "max_steps=1", "margin_dpo.max_steps=2", "margin_dpo.beta=0.3"]
    out = train_recipe("policies/modpo.yaml", [f"base_model={base_dir}", f"data={data}", *fast],
                       out=str(tmp_path / "modpo"), progress=False)
    (rows, ref), = seen  # the middle point: margin 0.5 * r_helpful on the harmless pairs
    implicit = get_objective(f"implicit:{out / 'margins' / 'helpful'}?ref={base_dir}&beta=0.3", "helpful")
    prompts = [r["prompt"] for r in rows]
    base, tok = load_causal_lm(base_dir), load_tokenizer(base_dir)
    for n, side in enumerate(("chosen", "rejected")):
        responses = [r[side] for r in rows]
        margin = np.array([r[f"margin_{side}"] for r in rows])
        assert np.array_equal(margin, 0.5 * implicit.score(prompts, responses))
        assert np.abs(margin).max() > 1e-3  # the margin model moved away from the base
        assert torch.equal(ref[n], sequence_logprobs(base, tok, prompts, responses))

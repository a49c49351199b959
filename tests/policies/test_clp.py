"""Conditioned Language Policy: the forward-time mixing of per-objective adapters is real (exact at
the vertices, in between elsewhere, no weight written), and a trained checkpoint serves any w."""
import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from moalign.errors import MoalignError
from moalign.policies.clp import attach_adapters, set_mixture
from moalign.training.lora import Lora


def _two_adapter_model():
    torch.manual_seed(0)
    model = attach_adapters(GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2)),
                            ["helpful", "harmless"], Lora(r=4, alpha=8))
    with torch.no_grad():  # trained-looking adapters (peft starts B at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    return model.eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_vertices_reproduce_each_adapter_and_mixing_writes_no_weight():
    model = _two_adapter_model()
    ids = torch.randint(0, 50, (3, 7))
    alone = {}
    for name in ("helpful", "harmless"):  # each adapter by itself, at its own scale
        model.base_model.set_adapter([name])
        alone[name] = _logits(model, ids)
    model.base_model.set_adapter(["helpful", "harmless"])
    set_mixture(model, ["helpful", "harmless"], [1.0, 0.0])
    assert torch.equal(_logits(model, ids), alone["helpful"])
    set_mixture(model, ["helpful", "harmless"], [0.0, 1.0])
    assert torch.equal(_logits(model, ids), alone["harmless"])
    set_mixture(model, ["helpful", "harmless"], [0.5, 0.5])
    mid = _logits(model, ids)
    gap = (alone["helpful"] - alone["harmless"]).norm()
    assert gap > 1.0
    assert (mid - alone["helpful"]).norm() < gap and (mid - alone["harmless"]).norm() < gap
    assert (mid - alone["helpful"]).norm() > 0.1 * gap and (mid - alone["harmless"]).norm() > 0.1 * gap
    # w = 0.5/0.5 is the average of the weight deltas: the same as an explicit merged model
    merged = GPT2LMHeadModel(model.get_base_model().config)
    merged.load_state_dict(model.merge_and_unload(adapter_names=["helpful", "harmless"]).state_dict())
    assert torch.allclose(_logits(merged.eval(), ids), mid, atol=1e-4)


def test_mixing_leaves_parameters_untouched():
    model = _two_adapter_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for w in ([1.0, 0.0], [0.3, 0.7], [0.0, 1.0]):
        set_mixture(model, ["helpful", "harmless"], w)
        _logits(model, torch.randint(0, 50, (2, 5)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(MoalignError):
        set_mixture(GPT2LMHeadModel(GPT2Config(vocab_size=10, n_embd=8, n_layer=1, n_head=1)), ["a"], [1.0])


@pytest.mark.parametrize("conditioning", ["parameters", "both"])
def test_clp_trains_one_model_that_serves_every_preference(base_dir, world_dir, tmp_path, conditioning):
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    out = train_recipe("policies/clp.yaml", [f"base_model={base_dir}", f"conditioning={conditioning}",
                                             "rl.steps=2", "rl.batch_size=8", "rl.num_generations=4",
                                             "rl.max_completion_length=8",
                                             f"rl.prompts={world_dir}/data/prompts.jsonl"],
                       out=str(tmp_path / "clp"), progress=False)
    manifest = json.loads((out / "moalign.json").read_text())
    assert manifest["steering"] == {"kind": "parameters", "conditioning": conditioning,
                                    "objectives": ["helpful", "harmless"]}
    assert (out / "base").is_dir() == (conditioning == "both")  # digits were added to the world's vocabulary
    policy = load_steerable(out)
    model = policy.model_for("helpful=0.2,harmless=0.8")
    scales = {n: s for m in model.modules() if hasattr(m, "_moalign_scaling") for n, s in m.scaling.items()}
    assert scales["harmless"] == pytest.approx(4 * scales["helpful"])
    _, texts = policy.prepare(["hi"], "helpful=0.2,harmless=0.8")
    assert ("weights helpful 0.20 harmless 0.80" in texts[0]) == (conditioning == "both")
    answers = policy.generate(["how do i bake bread ?"] * 2, preference="helpful=1,harmless=0",
                              max_new_tokens=8)
    assert len(answers) == 2


def test_clp_is_reproducible_whatever_the_process_drew_before(base_dir, world_dir, tmp_path):
    """The adapters' random init is seeded by the recipe: two runs in one process, with other random
    draws between them, write identical adapters (inside `moalign compare` they did not)."""
    from safetensors.torch import load_file

    from moalign.policies import train_recipe

    def run(name):
        torch.rand(1000)  # whatever ran before in this process
        out = train_recipe("policies/clp.yaml", [f"base_model={base_dir}", "rl.steps=1", "rl.batch_size=4",
                                                 "rl.num_generations=2", "rl.max_completion_length=4",
                                                 f"rl.prompts={world_dir}/data/prompts.jsonl"],
                           out=str(tmp_path / name), progress=False)
        return load_file(out / "adapters" / "harmless" / "adapter_model.safetensors")

    first, second = run("a"), run("b")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_clp_samples_from_the_mixture_merged_into_the_weights(base_dir, world_dir, tmp_path, monkeypatch):
    """Each step samples with its adapter mixture merged into the weights: the merged model gives the
    unmerged mixture's logits, and the base comes back after (up to merge-and-unmerge rounding)."""
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file
    from trl import GRPOTrainer

    from moalign.policies import train_recipe

    seen, models, sample = [], [], GRPOTrainer._generate_single_turn

    def spy(self, prompt_ids, *args, **kwargs):
        merged = all(m.merged for m in self.model.modules() if isinstance(m, LoraLayer))
        ids = torch.tensor([prompt_ids[0]])
        with torch.no_grad():
            sampled = self.model(input_ids=ids).logits
            if merged:
                self.model.unmerge_adapter()
                mixed = self.model(input_ids=ids).logits
                self.model.merge_adapter()
        seen.append((merged, (sampled - mixed).abs().max().item() if merged else None))
        models.append(self.model)
        return sample(self, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", spy)
    train_recipe("policies/clp.yaml", [f"base_model={base_dir}", "rl.steps=3", "rl.batch_size=8",
                                       "rl.num_generations=4", "rl.max_completion_length=8",
                                       f"rl.prompts={world_dir}/data/prompts.jsonl"],
                 out=str(tmp_path / "clp"), progress=False)
    assert len(seen) == 3 and all(merged for merged, _ in seen), seen
    assert all(gap < 1e-4 for _, gap in seen), seen  # the mixture's logits, merged
    model = models[-1]  # the trained model, its mixture unmerged: the base's weights again
    assert not any(m.merged for m in model.modules() if isinstance(m, LoraLayer))
    base = load_file(base_dir / "model.safetensors")
    weights = {k.split("base_model.model.")[-1].replace(".base_layer", ""): v
               for k, v in model.state_dict().items() if "lora_" not in k}
    assert len(base.keys() & weights.keys()) > 10
    assert all(torch.allclose(weights[k], base[k], atol=1e-6) for k in base.keys() & weights.keys())

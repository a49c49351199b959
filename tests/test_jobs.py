"""`compare --jobs`: methods trained side by side, each in its own process, equal the same methods
trained alone with the same number of threads."""
import os
from pathlib import Path

import torch

from moalign.jobs import Training, train_all
from moalign.policies import train_recipe


def test_methods_trained_side_by_side_equal_each_trained_alone(base_dir, tmp_path):
    runs = [("sft", "policies/sft.yaml", ["max_steps=3"], "model.safetensors"),
            ("soup", "soups/world_dpo.yaml", ["dpo.max_steps=2", "dpo.batch_size=8"],
             "experts/harmless/model.safetensors")]
    train_all([Training(name, recipe, (f"base_model={base_dir}", *extra), str(tmp_path / "side" / name))
               for name, recipe, extra, _ in runs], 2, tmp_path / "shared")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each of the 2 workers had
    try:
        for name, recipe, extra, _ in runs:
            train_recipe(recipe, [f"base_model={base_dir}", *extra], out=str(tmp_path / "alone" / name),
                         progress=False)
    finally:
        torch.set_num_threads(threads)
    for name, _, _, weights in runs:
        side, alone = (tmp_path / "side" / name / weights), (tmp_path / "alone" / name / weights)
        assert side.read_bytes() == alone.read_bytes()


def test_a_method_that_reuses_the_soups_trainings_starts_after_the_soup():
    """Side by side, MORLHF and an RL soup would both train the soup's experts (MORLHF's vertices);
    MODPO reuses a DPO soup's experts, not an RL soup's."""
    from moalign.compare import _after_reused
    from moalign.jobs import _ready

    def job(name, recipe):
        return Training(f"train {name}", recipe, (), f"/runs/{name}")

    rl = _after_reused([job("soup", "soups/world.yaml"), job("morlhf", "policies/morlhf.yaml"),
                        job("modpo", "policies/modpo.yaml"), job("clp", "policies/clp.yaml")])
    assert [j.after for j in rl] == [(), ("train soup",), (), ()]
    dpo = _after_reused([job("soup", "soups/world_dpo.yaml"), job("morlhf", "policies/morlhf.yaml"),
                         job("modpo", "policies/modpo.yaml")])
    assert [j.after for j in dpo] == [(), (), ("train soup",)]
    soup, morlhf, modpo, clp = rl
    assert _ready([morlhf, modpo, clp], [soup]) is modpo  # MORLHF waits while the soup trains
    assert _ready([morlhf, clp], []) is morlhf  # the soup is done
    assert _ready(rl[1:], []) is morlhf and _ready([morlhf], []) is morlhf  # no soup in this compare


def test_the_demos_trainings_start_longest_first():
    """RL methods first (the slowest per step), then methods that reuse another's trainings (the
    least of their own: they fill the tail), the fixed policy (one SFT) last; otherwise the order
    given."""
    from moalign.compare import _after_reused, _start_order
    from moalign.registry import demo_methods, method

    todo = [Training(f"train {m}", method(m).recipe, (), f"/runs/{m}") for m in demo_methods()]
    order = [Path(j.out).name for j in sorted(_after_reused(todo), key=_start_order)]
    assert order == ["soup", "clp", "modpo", "ric", "dpa", "morlhf", "sft"]

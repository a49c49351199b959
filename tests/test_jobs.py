"""`compare --jobs`: methods trained side by side, each in its own process, equal the same methods
trained alone with the same number of threads."""
import os

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

"""Switching a rewarded soup's preference: in memory vs mergekit merge-to-disk-and-reload vs the
memory-bandwidth bound, on a GPT-2-small-sized model (124M parameters, random weights, offline).

The bound is one plain `torch.add` over the same flat tensors (read two, write one): the least
memory traffic any mix of two anchors needs. Targets: in-memory switch <= 1.5x the bound, and
>= 20x faster than the disk round trip. Run: `.venv/bin/python bench/soup_switch.py`.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel  # noqa: E402


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from moalign.cli import _quiet_libraries
    from moalign.soups.merge import export
    from moalign.soups.soup import build
    from moalign.steerable import load_steerable
    from moalign.world.base import build_tokenizer

    _quiet_libraries()
    tok = build_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        base = GPT2LMHeadModel(GPT2Config())  # 124M parameters
        n_params = sum(p.numel() for p in base.parameters())
        for name, scale in (("base", 0.0), ("helpful", 0.01), ("harmless", 0.02)):
            model = GPT2LMHeadModel(base.config)
            model.load_state_dict(base.state_dict())
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * scale)
            model.save_pretrained(root / name)
            tok.save_pretrained(root / name)
        del base, model
        build(str(root / "base"), {"helpful": str(root / "helpful"), "harmless": str(root / "harmless")},
              root / "soup")
        soup = load_steerable(root / "soup")
        weights = iter([i / 1000 for i in range(1, 1000)])

        def switch():
            w = next(weights)
            soup.model_for({"helpful": w, "harmless": 1 - w})

        for _ in range(soup.cache_size + 2):  # load the anchors and fill the cache: misses now reuse buffers
            switch()
        t_memory = timed(switch, 15)
        a, b = soup._flat
        out = torch.empty_like(a)
        t_bound = timed(lambda: torch.add(a, b, out=out), 15)

        count = iter(range(100))

        def disk():
            w = 0.3 + next(count) / 1000
            path = export(soup, {"helpful": w, "harmless": 1 - w}, root / "merged", overwrite=True)
            AutoModelForCausalLM.from_pretrained(path)

        t_disk = timed(disk, 3)

    print(f"soup switch on GPT-2 small ({n_params / 1e6:.0f}M parameters, fp32, "
          f"{torch.get_num_threads()} threads)")
    print(f"  in-memory switch (lerp into a flat buffer):   {t_memory * 1e3:8.1f} ms")
    print(f"  bound (one torch.add over the same tensors):  {t_bound * 1e3:8.1f} ms")
    print(f"  mergekit linear merge to disk + reload:       {t_disk * 1e3:8.1f} ms")
    print(f"in-memory / bound = {t_memory / t_bound:.2f}  (target <= 1.5)")
    print(f"disk / in-memory  = {t_disk / t_memory:.1f}  (target >= 20)")


if __name__ == "__main__":
    main()

"""Load on the API: N concurrent clients on loopback for a bounded time against the tiny world base.

Two phases in one run, same clients and duration: plain requests to the base (no steering) and
steered requests to a soup of the same size (preferences drawn from `--presets` distinct values, as
a population of users would send; rows with different preferences share one generate call through
the soup's per-row mixing: each row's mixed weights, one batched matmul per layer). Prints requests/s, p50/p99 latency, errors (must be 0), and the steered / plain
generation throughput (completion tokens per second; target >= 0.9).
Run: `.venv/bin/python bench/serve_load.py [--clients 8] [--seconds 20]`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

PROMPTS = ["how do i bake bread ?", "how do i fix my bike ?", "any tips to play chess ?", "how do i sleep better ?"]


def phase(url: str, model: str, clients: int, seconds: float, presets: list | None) -> dict:
    latencies, tokens, errors = [], [0], [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(i: int):
        n = 0
        with httpx.Client(timeout=60) as http:
            while time.time() < stop_at and n < 10_000:
                body = {"model": model, "messages": [{"role": "user", "content": PROMPTS[(i + n) % 4]}],
                        "max_tokens": 32, "seed": n}
                if presets:
                    body["preference"] = presets[(i + n) % len(presets)]
                start = time.perf_counter()
                r = http.post(url + "/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    if r.status_code != 200:
                        errors[0] += 1
                    else:
                        latencies.append(elapsed)
                        tokens[0] += r.json()["usage"]["completion_tokens"]
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - start
    lat = sorted(latencies)
    return {"requests": len(lat), "rps": len(lat) / wall, "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "errors": errors[0], "tokens_per_s": tokens[0] / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--presets", type=int, default=4, help="distinct preferences among steered requests")
    args = parser.parse_args()
    presets = [{"helpful": w, "harmless": 1 - w} for w in
               ([0.5] if args.presets == 1 else [0.2 + 0.6 * i / (args.presets - 1) for i in range(args.presets)])]

    import torch
    from transformers import AutoModelForCausalLM

    from moalign.cli import _quiet_libraries
    from moalign.serve.app import BackgroundServer, create_app, load_server
    from moalign.soups.soup import build
    from moalign.world import resolve
    from moalign.world.base import build_tokenizer

    _quiet_libraries()
    base = resolve("world:base")
    with tempfile.TemporaryDirectory() as tmp:
        root, tok = Path(tmp), build_tokenizer()
        for i, name in enumerate(("helpful", "harmless")):
            model = AutoModelForCausalLM.from_pretrained(base)
            torch.manual_seed(i)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
            model.save_pretrained(root / name)
            tok.save_pretrained(root / name)
        build(base, {"helpful": str(root / "helpful"), "harmless": str(root / "harmless")}, root / "soup")
        server = load_server([f"base={base}", f"soup={root / 'soup'}"])
        with BackgroundServer(create_app(server), server) as s:
            phase(s.url, "base", 2, 2, None)  # warm-up
            phase(s.url, "soup", 2, 2, presets)
            plain = phase(s.url, "base", args.clients, args.seconds, None)
            steered = phase(s.url, "soup", args.clients, args.seconds, presets)
            batches = {n: e.batches for n, e in server.engines.items()}
    print(f"serve load: {args.clients} clients x {args.seconds:.0f} s per phase, {len(presets)} preferences, "
          f"loopback, max_tokens 32, "
          f"{torch.get_num_threads()} torch threads")
    for name, r in (("plain", plain), ("steered", steered)):
        print(f"  {name:8s} {r['requests']:5d} requests  {r['rps']:6.1f} req/s  p50 {r['p50'] * 1e3:7.1f} ms  "
              f"p99 {r['p99'] * 1e3:7.1f} ms  errors {r['errors']}  {r['tokens_per_s']:7.1f} tokens/s")
    print(f"  generate calls: {batches}")
    print(f"errors = {plain['errors'] + steered['errors']}  (target 0)")
    print(f"steered / plain throughput = {steered['tokens_per_s'] / plain['tokens_per_s']:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()

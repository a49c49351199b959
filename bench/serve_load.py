"""Load on the API: N concurrent clients on loopback for a bounded time against the tiny world base.

Three phases, same clients and duration: plain requests to the base (no steering); steered
requests to a soup of the same size (preferences drawn from `--presets` distinct values, as a
population of users would send; rows with different preferences share one generate call through
the soup's per-row mixing: each row's mixed weights, one batched matmul per layer); and user
requests to PAL trained over that soup (`policy=` the soup: each user id steers it by the user's
preference), greedy, where every answer must equal the same user's answer to the same prompt asked
alone. Prints requests/s, p50/p99 latency, errors (must be 0), answers that differ from the
user's answer alone (must be 0), and the steered / plain generation throughput (completion tokens
per second; target >= 0.9). Plain and steered requests send no seed: a sampled request with an
explicit seed is batched only with the same seed, so that the seed reproduces its answer.
Run: `.venv/bin/python bench/serve_load.py [--clients 8] [--seconds 20]`; with `--soup DIR` (e.g. a
SmolLM2 soup: `moalign train soups/real_dpo.yaml`), the plain and steered phases run on that soup and
its base instead (no users phase), with a third kind, one preference (the soup's merged model), and
the kinds take turns `--rounds` times, so that a drift of the machine's speed (this project's CPU
machine drifts by ~25% within an hour) falls on each kind alike; each kind's tokens/s pools its
rounds. Give it `--seconds 60` there: a batch of 8 SmolLM2 answers takes about 5 s on 2 CPU cores,
so a 20 s phase holds four batches and its first (clients that arrive more than the batching window
apart start a batch short) weighs on the ratio.
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

PROMPTS = ["how do i bake bread ?", "how do i fix my bike ?", "any tips to play chess ?",
           "how do i sleep better ?"]


def phase(url: str, model: str, clients: int, seconds: float, steering: list | None, key: str = "preference",
          greedy: bool = False) -> dict:
    """`steering`: values of the body field `key`, one per request in turn. With `greedy`, the
    answers by (steering, prompt) are returned too, to compare with each asked alone."""
    latencies, tokens, errors, answers = [], [0], [0], {}
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(i: int):
        n = 0
        with httpx.Client(timeout=60) as http:
            while time.time() < stop_at and n < 10_000:
                prompt = PROMPTS[(i + n) % 4]
                body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32}
                if steering:
                    body[key] = steering[(i + n // 4) % len(steering)]
                if greedy:
                    body["temperature"] = 0
                start = time.perf_counter()
                r = http.post(url + "/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    if r.status_code != 200:
                        errors[0] += 1
                    else:
                        latencies.append(elapsed)
                        tokens[0] += r.json()["usage"]["completion_tokens"]
                        if greedy:
                            answer = r.json()["choices"][0]["message"]["content"]
                            answers.setdefault((str(body.get(key)), prompt), []).append(answer)
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, tokens[0], errors[0], time.time() - start, answers=answers)


def summary(latencies: list[float], tokens: int, errors: int, wall: float, **extra) -> dict:
    """A phase's numbers from what its clients counted."""
    lat = sorted(latencies)
    return {"requests": len(lat), "rps": len(lat) / wall,
            "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "errors": errors, "tokens": tokens, "tokens_per_s": tokens / wall, "wall": wall,
            "latencies": lat, **extra}


def pooled(results: list[dict]) -> dict:
    """One kind's rounds as one phase: its requests, tokens and errors over the summed wall time."""
    return summary([t for r in results for t in r["latencies"]], sum(r["tokens"] for r in results),
                   sum(r["errors"] for r in results), sum(r["wall"] for r in results))


def differing(url: str, model: str, answers: dict) -> tuple[int, int]:
    """(answers that differ from the user's answer asked alone, answers checked)."""
    bad = total = 0
    with httpx.Client(timeout=60) as http:
        for (user, prompt), seen in answers.items():
            r = http.post(url + "/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32,
                "temperature": 0, "user": user})
            alone = r.json()["choices"][0]["message"]["content"]
            bad += sum(a != alone for a in seen)
            total += len(seen)
    return bad, total


def preset_weights(names: list[str], n: int) -> list[dict]:
    """`n` distinct preferences between the first two objectives."""
    weights = [0.5] if n == 1 else [0.2 + 0.6 * i / (n - 1) for i in range(n)]
    return [{names[0]: w, names[1]: 1 - w} for w in weights]


def soup_only(args) -> None:
    """Plain (the soup's base) vs steered (the soup) on an existing checkpoint, e.g. a SmolLM2 soup."""
    import torch

    from moalign.cli import _quiet_libraries
    from moalign.serve.app import BackgroundServer, create_app, load_server
    from moalign.steerable import Manifest

    _quiet_libraries()
    manifest = Manifest.read(args.soup)
    presets = preset_weights(manifest.objectives, args.presets)
    from moalign.bases import resolve_model
    server = load_server([f"base={resolve_model(manifest.base_model)}", f"soup={args.soup}"],
                         max_tokens_cap=256)
    kinds = {"plain": ("base", None), "steered": ("soup", presets),
             # one preference: the soup's merged model for it (no per-row mixing), answers of the soup's kind
             "one pref": ("soup", presets[len(presets) // 2:][:1])}
    with BackgroundServer(create_app(server), server) as s:
        phase(s.url, "base", 2, 2, None)  # warm-up (loads the models)
        phase(s.url, "soup", 2, 2, presets)
        runs = {name: [] for name in kinds}
        for _ in range(args.rounds):  # interleaved: the machine's drift falls on every kind alike
            for name, (model, steering) in kinds.items():
                runs[name].append(phase(s.url, model, args.clients, args.seconds, steering))
    print(f"serve load on {args.soup}: {args.clients} clients, {len(presets)} preferences, "
          f"{args.rounds} rounds of {args.seconds:.0f} s per kind, loopback, max_tokens 32, "
          f"{torch.get_num_threads()} torch threads")
    totals = {name: pooled(r) for name, r in runs.items()}
    for name, r in totals.items():
        print(f"  {name:8s} {r['requests']:5d} requests  {r['rps']:6.1f} req/s  p50 {r['p50'] * 1e3:7.1f} ms"
              f"  p99 {r['p99'] * 1e3:7.1f} ms  errors {r['errors']}  {r['tokens_per_s']:7.1f} tokens/s  "
              f"{r['tokens'] / max(r['requests'], 1):5.1f} tokens/answer")
    each = [f"{s['tokens_per_s'] / p['tokens_per_s']:.2f}" for s, p in zip(runs["steered"], runs["plain"])]
    print(f"errors = {sum(r['errors'] for r in totals.values())}  (target 0)")
    ratio = totals["steered"]["tokens_per_s"] / totals["plain"]["tokens_per_s"]
    print(f"steered / plain throughput = {ratio:.2f}  (target >= 0.9; by round {', '.join(each)}); "
          f"steered / one preference = "
          f"{totals['steered']['tokens_per_s'] / totals['one pref']['tokens_per_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--presets", type=int, default=4, help="distinct preferences among steered requests")
    parser.add_argument("--users", type=int, default=8, help="distinct users among user requests")
    parser.add_argument("--soup", type=Path, default=None,
                        help="a soup checkpoint to load instead (and its base)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --soup: the kinds take turns this many times, --seconds each")
    args = parser.parse_args()
    if args.soup is not None:
        return soup_only(args)
    presets = preset_weights(["helpful", "harmless"], args.presets)

    import torch
    from transformers import AutoModelForCausalLM

    from moalign.cli import _quiet_libraries
    from moalign.policies import train_recipe
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
        train_recipe("policies/pal.yaml", [f"policy={root / 'soup'}"], out=str(root / "pal"), progress=False)
        server = load_server([f"base={base}", f"soup={root / 'soup'}", f"pal={root / 'pal'}"])
        users = server.engines["pal"].policy.users[:args.users]
        with BackgroundServer(create_app(server), server) as s:
            phase(s.url, "base", 2, 2, None)  # warm-up
            phase(s.url, "soup", 2, 2, presets)
            phase(s.url, "pal", 2, 2, users, key="user", greedy=True)
            plain = phase(s.url, "base", args.clients, args.seconds, None)
            steered = phase(s.url, "soup", args.clients, args.seconds, presets)
            personal = phase(s.url, "pal", args.clients, args.seconds, users, key="user", greedy=True)
            bad, checked = differing(s.url, "pal", personal["answers"])
            batches = {n: e.batches for n, e in server.engines.items()}
    print(f"serve load: {args.clients} clients x {args.seconds:.0f} s per phase, {len(presets)} preferences, "
          f"{len(users)} users, loopback, max_tokens 32, {torch.get_num_threads()} torch threads")
    for name, r in (("plain", plain), ("steered", steered), ("users", personal)):
        print(f"  {name:8s} {r['requests']:5d} requests  {r['rps']:6.1f} req/s  "
              f"p50 {r['p50'] * 1e3:7.1f} ms  "
              f"p99 {r['p99'] * 1e3:7.1f} ms  errors {r['errors']}  {r['tokens_per_s']:7.1f} tokens/s")
    print(f"  generate calls: {batches}")
    print(f"errors = {plain['errors'] + steered['errors'] + personal['errors']}  (target 0)")
    print(f"users' answers unlike the same user's alone (greedy) = {bad} of {checked}  (target 0)")
    print(f"steered / plain throughput = {steered['tokens_per_s'] / plain['tokens_per_s']:.2f}  "
          f"(target >= 0.9)")


if __name__ == "__main__":
    main()

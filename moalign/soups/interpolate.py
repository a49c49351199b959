"""Steering by weight interpolation: rewarded soups, and fronts of policies that share an init.

A checkpoint of this kind lists *anchors*: models fine-tuned from one base, each with the preference
it was trained for (a soup's experts sit at the simplex vertices e_i; a MORLHF or MODPO front's
policies at its grid points). For a preference w the anchors are mixed with coefficients lambda(w)
(on the simplex) into theta(w) = sum_a lambda_a theta_a = theta_0 + sum_a lambda_a (theta_a - theta_0):

- anchors at the vertices (a soup): lambda = w;
- two objectives: piecewise-linear between the two anchors that bracket w (clamped at the ends);
- otherwise: the nearest anchor.

Models are materialised in memory, never through disk: every anchor is held as one flat tensor,
and a model's parameters are views into one flat buffer, so switching preference is a chain of
`torch.lerp` passes over contiguous memory (one pass for two anchors). lerp is exact at its ends,
so w = e_i reproduces expert i bit for bit. A bounded LRU keeps the last few materialised models; an
evicted one is rewritten for the next preference only when nothing else holds it, so a model a
caller still holds never changes.

LoRA anchors (peft adapter directories) are merged into dense weights on load: the soup is then
sum_i w_i (theta_0 + s_i B_i A_i), peft's "cat" combination, recorded as such in the manifest.
"""
from __future__ import annotations

import copy
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from moalign.errors import MoalignError
from moalign.models import check_weights, load_causal_lm, load_tokenizer
from moalign.preference import Preference, PreferenceLike
from moalign.steerable import Manifest, SteerablePolicy

CACHE_SIZE = 4


def named_tensors(model) -> list[tuple[str, torch.Tensor]]:
    """The model's parameters (shared ones once), in a fixed order."""
    return list(model.named_parameters())


def flatten(model) -> torch.Tensor:
    """The parameters as one contiguous tensor (a copy)."""
    return torch.cat([p.detach().reshape(-1) for _, p in named_tensors(model)])


def bind_flat(model) -> torch.Tensor:
    """Move the model's parameters into one flat buffer they become views of; return the buffer."""
    params = [p for _, p in named_tensors(model)]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat


def model_on(skeleton, flat: torch.Tensor):
    """A copy of `skeleton` whose parameters are views into `flat` (tied ones stay tied): the
    parameters are never copied, only the modules around them."""
    memo, offset = {}, 0
    for _, p in named_tensors(skeleton):
        n = p.numel()
        memo[id(p)] = torch.nn.Parameter(flat[offset:offset + n].view_as(p), requires_grad=p.requires_grad)
        offset += n
    return copy.deepcopy(skeleton, memo)


def check_same_shapes(reference, other, ref_name: str, other_name: str) -> None:
    """Fail naming the first tensor whose name or shape differs."""
    a, b = named_tensors(reference), named_tensors(other)
    for (na, ta), (nb, tb) in zip(a, b):
        if na != nb or ta.shape != tb.shape:
            raise MoalignError(f"{other_name} does not match {ref_name}: tensor {na} {tuple(ta.shape)} vs "
                               f"{nb} {tuple(tb.shape)}")
    if len(a) != len(b):
        first = (a if len(a) > len(b) else b)[min(len(a), len(b))][0]
        raise MoalignError(f"{other_name} does not match {ref_name}: {len(b)} tensors vs {len(a)} "
                           f"(first unmatched: {first})")


def coefficients(preference: Preference, anchors: list[Preference]) -> np.ndarray:
    """lambda(w) over the anchors (non-negative, sums to one)."""
    w = preference.weights
    points = np.array([a.weights for a in anchors])
    n_obj = len(w)
    lam = np.zeros(len(anchors))
    vertex_of = {int(np.argmax(p)): i for i, p in enumerate(points) if np.isclose(p.max(), 1.0)}
    if len(anchors) == n_obj and len(vertex_of) == n_obj:
        for k in range(n_obj):
            lam[vertex_of[k]] = w[k]
        return lam
    if n_obj == 2:
        order = np.argsort(points[:, 0], kind="stable")
        xs = points[order, 0]
        x = w[0]
        if x <= xs[0]:
            lam[order[0]] = 1.0
        elif x >= xs[-1]:
            lam[order[-1]] = 1.0
        else:
            j = int(np.searchsorted(xs, x, side="right")) - 1
            t = (x - xs[j]) / (xs[j + 1] - xs[j])
            lam[order[j]], lam[order[j + 1]] = 1.0 - t, t
        return lam
    lam[int(np.argmin(((points - w) ** 2).sum(1)))] = 1.0
    return lam


def mix_into(out: torch.Tensor, anchors: list[torch.Tensor], lam: np.ndarray) -> None:
    """out = sum_a lam_a anchors[a], as a chain of lerps (exact when lam is one-hot)."""
    active = [i for i, v in enumerate(lam) if v > 0]
    first = active[0]
    if len(active) == 1:
        out.copy_(anchors[first])
        return
    mass = float(lam[first])
    torch.lerp(anchors[first], anchors[active[1]], float(lam[active[1]]) / (mass + float(lam[active[1]])),
               out=out)
    mass += float(lam[active[1]])
    for i in active[2:]:
        mass += float(lam[i])
        out.lerp_(anchors[i], float(lam[i]) / mass)


def load_anchor(path: str | Path):
    """A causal LM from a full checkpoint or a peft adapter directory (merged into its base)."""
    model = load_causal_lm(path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model


def _rows_linear(module, x, p):
    if x.dim() != 3 or x.shape[0] != p["weight"].shape[0]:
        return None
    w = p["weight"].transpose(1, 2)
    return torch.baddbmm(p["bias"].unsqueeze(1), x, w) if "bias" in p else torch.bmm(x, w)


def _rows_conv1d(module, x, p):  # GPT-2's Conv1D: x @ weight + bias, weight (in, out)
    if x.dim() != 3 or x.shape[0] != p["weight"].shape[0]:
        return None
    return torch.baddbmm(p["bias"].unsqueeze(1), x, p["weight"])


def _rows_embedding(module, ids, p):
    if ids.dim() != 2 or ids.shape[0] not in (1, p["weight"].shape[0]) or module.max_norm is not None:
        return None
    w = p["weight"]
    return w[torch.arange(w.shape[0], device=w.device).unsqueeze(1), ids.expand(w.shape[0], -1)]


def _rows_layer_norm(module, x, p):
    shape = tuple(module.normalized_shape)
    if x.dim() <= len(shape) or x.shape[0] != p["weight"].shape[0]:
        return None
    y = torch.nn.functional.layer_norm(x, shape, None, None, module.eps)
    view = (-1,) + (1,) * (x.dim() - 1 - len(shape)) + shape
    w = p["weight"].view(view)
    return torch.addcmul(p["bias"].view(view), y, w) if "bias" in p else y * w


_ROW_OPS = {"Linear": _rows_linear, "Conv1D": _rows_conv1d, "Embedding": _rows_embedding,
            "LayerNorm": _rows_layer_norm}
ROW_BUDGET = 1 << 28  # floats of per-row weights a batch may hold (1 GiB in float32)


class RowMixer:
    """One model that mixes the anchors per batch row, at forward time. Every module that holds
    parameters in a transformer (Linear, Conv1D, Embedding, LayerNorm, RMSNorm) is affine in its
    own parameters, so mixing each such module per row equals running theta(w_row) = sum_a lambda_a
    theta_a row by row, without materialising one model per preference. Two ways, per batch:

    - per-row weights, when rows x parameters fit in ROW_BUDGET floats (small models): each row's
      mixed parameters are written once per batch and every Linear/Conv1D/Embedding/LayerNorm runs
      as one batched op over them, so a forward costs about what the plain model's does;
    - per anchor otherwise (and for other module types): the module runs once per anchor in use and
      its outputs are combined with each row's lambda. The anchors' weights are shared, not copied.
    """

    def __init__(self, skeleton, flats: list[torch.Tensor]):
        self.model = copy.deepcopy(skeleton)
        bind_flat(self.model).copy_(flats[0])
        self.flats = flats
        offsets, start = {}, 0
        for _, p in named_tensors(self.model):
            offsets[id(p)] = (start, p.shape)
            start += p.numel()
        self.coef: torch.Tensor | None = None  # (rows, anchors)
        self.active: list[int] = []
        self.rows: dict[int, dict] | None = None  # per module: its per-row parameters, when mixing per row
        self.modules: list[tuple] = []  # (module, original forward, clones, {name: (start, shape)})
        for module in self.model.modules():
            own = list(module.named_parameters(recurse=False))
            if not own:
                continue
            clones = [None]
            for flat in flats[1:]:
                clone = copy.copy(module)  # shares submodules; only own parameters are rebound
                clone._parameters = dict(module._parameters)  # keeps None entries (a Linear without bias)
                for n, p in own:
                    s, shape = offsets[id(p)]
                    clone._parameters[n] = torch.nn.Parameter(flat[s:s + p.numel()].view(shape),
                                                              requires_grad=False)
                clones.append(clone)
            entry = (module, module.forward, clones, {n: offsets[id(p)] for n, p in own})
            self.modules.append(entry)
            module.forward = self._forward(entry)

    def _forward(self, entry):
        module, forward, clones, params = entry
        fast = _ROW_OPS.get(type(module).__name__)

        def mixed(*args, **kwargs):
            coef = self.coef
            if coef is None:
                raise MoalignError("RowMixer: set the rows' coefficients first (RowMixer.set)")
            if self.rows is not None and fast is not None and not kwargs and len(args) == 1:
                y = fast(module, args[0], self.rows[id(module)])
                if y is not None:
                    return y
            out = None
            for a in self.active:
                y = forward(*args, **kwargs) if a == 0 else clones[a](*args, **kwargs)
                if y.shape[0] not in (1, coef.shape[0]):  # 1: shared across rows (position embeddings)
                    raise MoalignError(f"RowMixer: a batch of {y.shape[0]} rows for {coef.shape[0]} "
                                       "coefficients")
                term = coef[:, a].to(y.dtype).view((-1,) + (1,) * (y.dim() - 1)) * y
                out = term if out is None else out + term
            return out

        return mixed

    def set(self, coef: np.ndarray) -> None:
        """Per-row anchor coefficients (rows, anchors), each row on the simplex."""
        lam = np.asarray(coef, dtype=np.float32)
        self.coef = torch.as_tensor(lam).to(self.flats[0].device)
        self.active = [a for a in range(self.coef.shape[1]) if bool((self.coef[:, a] != 0).any())]
        self.rows = None
        n_rows = self.coef.shape[0]
        if n_rows * self.flats[0].numel() <= ROW_BUDGET:
            flat = torch.empty(n_rows, self.flats[0].numel(), dtype=self.flats[0].dtype,
                               device=self.flats[0].device)
            for r in range(n_rows):
                mix_into(flat[r], self.flats, lam[r])
            self.rows = {id(module): {n: flat[:, s:s + shape.numel()].view(-1, *shape)
                                      for n, (s, shape) in params.items()}
                         for module, _, _, params in self.modules}


def adapters_base(paths: list[Path]) -> str | None:
    """The one base that every anchor is a LoRA adapter over (None if an anchor is a full model or
    they have different bases)."""
    from moalign.soups.merge import adapter_base, is_adapter

    if not all(is_adapter(p) for p in paths):
        return None
    bases = {adapter_base(p) for p in paths}
    return bases.pop() if len(bases) == 1 else None


class LoraRowMixer:
    """Per-row mixing of LoRA anchors over one base (a `lora-cat` soup, MORLHF or MODPO front): each
    adapted layer computes base(x) + sum_a lambda_row,a s_a B_a A_a x, which is theta_0 + sum_a
    lambda_a s_a B_a A_a (peft's "cat" mixture) row by row. The base layer runs once for every row,
    as in the plain model, and the adapters add low-rank products: on a model whose rows x
    parameters exceed RowMixer's budget (SmolLM2: 135M parameters), RowMixer would run every
    module once per anchor."""

    def __init__(self, base: str, adapters: list[Path]):
        from peft.tuners.lora import LoraLayer

        from moalign.models import load_with_adapters

        names = [f"anchor{i}" for i in range(len(adapters))]
        self.model = load_with_adapters(base, dict(zip(names, adapters)))
        self._layers: list[dict] = []
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.forward = self._forward(module, names)

    def _forward(self, layer, names: list[str]):
        """base(x) + ((x A^T) * per-row scales) B^T with every anchor's A stacked (rank sum R, in),
        its B side by side (out, R): two small matmuls a layer however many anchors there are, written
        as few torch calls as possible (a decode step runs this in 7 layers x 30 blocks of SmolLM2,
        where each call's overhead, not the arithmetic, is the cost: 4 calls, not 10, took the
        overhead on a 576 -> 1536 layer at 8 rows from 101 to 24 us)."""
        parts = [(a, layer.lora_A[n].weight, layer.lora_B[n].weight, layer.scaling[n])
                 for a, n in enumerate(names) if n in layer.lora_A]
        a_t = torch.cat([w for _, w, _, _ in parts]).detach().t().contiguous()  # (in, R)
        b_t = torch.cat([w for _, _, w, _ in parts], dim=1).detach().t().contiguous()  # (R, out)
        index = torch.tensor([a for a, w, _, _ in parts for _ in range(w.shape[0])], device=a_t.device)
        scale = torch.tensor([s for _, w, _, s in parts for _ in range(w.shape[0])], dtype=a_t.dtype,
                             device=a_t.device)
        entry = {"index": index, "scale": scale, "rows": None}
        self._layers.append(entry)
        rank = a_t.shape[1]

        def mixed(x, *args, **kwargs):
            y = layer.base_layer(x, *args, **kwargs)
            rows = entry["rows"]  # (rows, 1, R)
            if rows is None:
                raise MoalignError("LoraRowMixer: set the rows' coefficients first (LoraRowMixer.set)")
            flat = x.reshape(-1, x.shape[-1])
            low = torch.mm(flat if flat.dtype == a_t.dtype else flat.to(a_t.dtype), a_t)
            low = low.view(rows.shape[0], -1, rank).mul_(rows).view(-1, rank)
            if y.dtype != a_t.dtype:
                return y + torch.mm(low, b_t).view(y.shape).to(y.dtype)
            return torch.addmm(y.reshape(-1, y.shape[-1]), low, b_t).view(y.shape)

        return mixed

    def set(self, coef: np.ndarray) -> None:
        """Per-row anchor coefficients (rows, anchors), each row on the simplex."""
        lam = torch.as_tensor(np.asarray(coef, dtype=np.float32)).to(self.model.device)
        for entry in self._layers:  # each row's weight on each rank-1 component: lambda_a s_a
            entry["rows"] = (lam[:, entry["index"]] * entry["scale"]).to(entry["scale"].dtype).unsqueeze(1)


class InterpolationPolicy(SteerablePolicy):
    """theta(w) mixed from the anchors in memory, cached per preference."""

    kind = "interpolation"

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        steering = manifest.steering
        self.anchor_paths = [self._resolve(a["path"]) for a in steering["anchors"]]
        self.anchor_prefs = [Preference.parse(a["preference"], self.objectives) for a in steering["anchors"]]
        for p in self.anchor_paths:
            check_weights(p)
        self.tokenizer_path = self._resolve(steering.get("tokenizer", steering["anchors"][0]["path"]))
        self.cache_size = int(steering.get("cache_size", CACHE_SIZE))
        self._flat: list[torch.Tensor] | None = None
        self._skeleton = None
        self._cache: OrderedDict = OrderedDict()
        self._evicted: list[tuple] = []  # (model, its buffer) out of the cache, until reused or dropped
        self._lock = threading.Lock()
        self._mixer: RowMixer | LoraRowMixer | None = None

    def _resolve(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else (self.path / q)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def _load(self) -> None:
        if self._flat is not None:
            return
        models = [load_anchor(p) for p in self.anchor_paths]
        for m, p in zip(models[1:], self.anchor_paths[1:]):
            check_same_shapes(models[0], m, str(self.anchor_paths[0]), str(p))
        self._flat = [flatten(m) for m in models]
        self._skeleton = models[0]
        del models

    def batch_key(self, preference, user=None):
        return None  # requests with different preferences share a batch, mixed per row

    def prepare_batch(self, jobs):
        """One model and the texts for jobs of (prompts, preference, user): the cached model when they
        agree on the mixture, else the row mixer set to each row's coefficients."""
        lams = [self.coefficients(self.preference(pref, user)) for _, pref, user in jobs]
        if all(np.array_equal(lam, lams[0]) for lam in lams):
            return super().prepare_batch(jobs)
        texts = [t for prompts, pref, user in jobs for t in self.render(prompts, pref, user)]
        with self._lock:
            base = self._mixer is None and adapters_base(self.anchor_paths)
            if base:
                self._mixer = LoraRowMixer(base, self.anchor_paths)
            elif self._mixer is None:
                self._load()
                self._mixer = RowMixer(self._skeleton, self._flat)
        self._mixer.set(np.array([lam for (prompts, _, _), lam in zip(jobs, lams) for _ in prompts]))
        return self._mixer.model, texts

    def coefficients(self, preference: PreferenceLike | None) -> np.ndarray:
        pref = self.preference(preference) or self.default_preference()
        return coefficients(pref, self.anchor_prefs)

    def _unheld(self) -> tuple | None:
        """An evicted (model, buffer) that nothing outside this policy holds, to rewrite in place (the
        cheap switch: one pass over the buffer). A model a caller still holds (a streaming request,
        user code) is theirs from then on and never rewritten. CPython counts the references: two
        here (the name `model` and getrefcount's argument) mean nobody else has it."""
        while self._evicted:
            model, flat = self._evicted.pop()
            if sys.getrefcount(model) <= 2:
                return model, flat
        return None

    def _new_model(self) -> tuple:
        flat = torch.empty_like(self._flat[0])
        return model_on(self._skeleton, flat), flat

    def model_for(self, preference: PreferenceLike | None = None):
        pref = self.preference(preference) or self.default_preference()
        key = pref.key()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][0]
            self._load()
            while len(self._cache) >= self.cache_size:
                self._evicted.append(self._cache.popitem(last=False)[1])
            model, flat = self._unheld() or self._new_model()
            with torch.no_grad():
                mix_into(flat, self._flat, coefficients(pref, self.anchor_prefs))
            self._cache[key] = (model, flat)
            return model

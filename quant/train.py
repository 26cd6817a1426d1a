"""Quantisation-aware training of a multi-exit CNN (torch + Brevitas).

Modes:
    e2e       all exits trained together on a weighted joint loss  sum_k w_k * CE_k / sum_k w_k
    ic-only   the backbone and final exit are trained first (final loss only); then the backbone
              is frozen and only the early exit heads ("internal classifiers") are trained

Seeded and repeatable (torch, numpy and the batch order come from `TrainConfig.seed`; torch runs
with deterministic algorithms); a progress bar per phase on stderr.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .config import Config
from .datasets import Dataset
from .model import MultiExitCNN, build_model, logits_value

__all__ = ["train_model", "to_input", "float_logits"]


def to_input(cfg: Config, x_uint: np.ndarray) -> torch.Tensor:
    """Pixel integers -> the float tensor the network sees (pixel * 2**-input_frac_bits)."""
    return torch.tensor(x_uint, dtype=torch.float32) * 2.0 ** -cfg.model.input_frac_bits


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by -1..1 pixels in each direction per sample, zero fill."""
    n, _, h, w = x.shape
    pad = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for a in range(3):
        for b in range(3):
            sel = (dy == a) & (dx == b)
            out[sel] = pad[sel, :, a:a + h, b:b + w]
    return out


def float_logits(model: MultiExitCNN, x: torch.Tensor, batch: int = 1024) -> list[np.ndarray]:
    model.eval()
    outs = None
    with torch.no_grad():
        for i in range(0, len(x), batch):
            o = [logits_value(t).float().numpy() for t in model(x[i:i + batch])]
            outs = [[a] for a in o] if outs is None else [acc + [a] for acc, a in zip(outs, o)]
    return [np.concatenate(o) for o in outs]


def _phase(model, params, cfg: Config, ds: Dataset, weights, epochs: int, desc: str,
           progress: bool, gen: torch.Generator, train_only=None):
    """One training phase; `train_only` (modules) keeps everything else in eval mode, so frozen
    parts neither learn nor update quantiser statistics."""
    t = cfg.train
    opt = torch.optim.Adam(params, lr=t.lr)
    steps = max(1, epochs * ((len(ds.x_train) + t.batch_size - 1) // t.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=steps)
    x_all = to_input(cfg, ds.x_train)
    y_all = torch.tensor(ds.y_train)
    wsum = float(sum(weights)) or 1.0
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, file=sys.stderr,
               leave=True, dynamic_ncols=True)
    for _ in bar:
        if train_only is None:
            model.train()
        else:
            model.eval()
            for m in train_only:
                m.train()
        order = torch.randperm(len(x_all), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(order), t.batch_size):
            idx = order[i:i + t.batch_size]
            x = x_all[idx]
            if t.augment:
                x = _shift(x, gen)
            outs = model(x)
            loss = sum(w * nn.functional.cross_entropy(logits_value(o), y_all[idx])
                       for w, o in zip(weights, outs) if w) / wsum
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return model


def train_model(cfg: Config, ds: Dataset, quantise: bool = True, mode: str | None = None,
                progress: bool = True) -> tuple[MultiExitCNN, dict]:
    """Train one model (QAT if `quantise`, else the float baseline); returns (model, info)."""
    mode = mode or cfg.train.mode
    seed = cfg.train.seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(cfg.model, ds.input_shape, quantise=quantise, seed=seed)
    kind = "qat" if quantise else "float"
    start = time.perf_counter()
    n_exits = len(cfg.model.exits)
    if mode == "e2e":
        _phase(model, list(model.parameters()), cfg, ds, cfg.train.exit_weights,
               cfg.train.epochs, f"train {kind} e2e", progress, gen)
    elif mode == "ic-only":
        final_only = [0.0] * (n_exits - 1) + [1.0]
        _phase(model, model.backbone_parameters(), cfg, ds, final_only, cfg.train.epochs,
               f"train {kind} backbone", progress, gen)
        for p in model.backbone_parameters():
            p.requires_grad_(False)
        heads = [p for h in model.heads[:-1] for p in h.parameters()]
        early = list(cfg.train.exit_weights[:-1]) + [0.0]
        _phase(model, heads, cfg, ds, early, cfg.train.head_epochs or cfg.train.epochs,
               f"train {kind} exit heads", progress, gen, train_only=list(model.heads[:-1]))
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"mode must be e2e or ic-only, got {mode!r}")
    model.eval()
    return model, {"mode": mode, "seconds": time.perf_counter() - start}

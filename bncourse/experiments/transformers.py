"""Chapter 7, "Normalisation in transformers": BN on padded token batches, and pre-LN vs post-LN.

- :func:`padding_demo` - one short sentence in batches whose other sentences carry more or less padding: how
  its normalised features move under BN over all positions, BN over the real tokens, Layer Norm and RMSNorm;
- :func:`init_grad_norms` - the gradient norm of each block's MLP output weights at initialisation, pre-LN
  and post-LN (Xiong et al. 2020, Figure 3's measurement, our tiny setup);
- :func:`depth_grad_norms` - the last block's gradient norm at initialisation against the number of blocks;
- :func:`lr_sweep` - Adam without warm-up on a synthetic sequence-reversal task, the final loss per learning
  rate for each placement (optionally with a linear warm-up).

:func:`reverse_batch` draws the task's batches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bncourse.models.transformer import PLACEMENTS, TinyTransformer
from bncourse.norms.group import LayerNorm, RMSNorm
from bncourse.norms.masked import masked_batch_stats, masked_batchnorm
from bncourse.result import Result, make_meta

__all__ = ["PAD_METHODS", "depth_grad_norms", "init_grad_norms", "lr_sweep", "padding_demo", "reverse_batch"]

# method name -> what the page calls it
PAD_METHODS = {
    "bn": "BN over all positions",
    "masked": "BN over real tokens",
    "layer": "Layer Norm",
    "rms": "RMSNorm",
}


def _normalise(method: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    with torch.no_grad():
        if method == "bn":
            return masked_batchnorm(x)
        if method == "masked":
            return masked_batchnorm(x, mask)
        if method == "layer":
            return LayerNorm(d).double()(x)
        return RMSNorm(d, eps=1e-6).double()(x)


def padding_demo(
    d_model: int = 8,
    seq_len: int = 16,
    target_len: int = 6,
    other_lens: Sequence[int] = (16, 13, 10, 7, 4, 1),
    n_others: int = 3,
    vocab: int = 20,
    seed: int = 0,
) -> Result:
    """Normalise one sentence in batches that differ only in the other sentences' lengths (float64).

    Token ``0`` is padding with an all-zero embedding; the other ids have embeddings drawn from N(1, 1) (a
    non-zero mean, as real features have). The batch is the target sentence (``target_len`` real tokens) and
    ``n_others`` sentences cut to each length of ``other_lens``, all padded to ``seq_len``.

    Returns:
        A ``"bn-padding"`` result. Per batch (one per ``other_lens``): ``pad_fraction``; ``mean_all``,
        ``var_all`` (the batch statistics over every position, averaged over the features), ``mean_valid``,
        ``var_valid`` (over the real tokens); ``change_<method>``: the largest change of the target's
        normalised real tokens from the first batch, for each method of :data:`PAD_METHODS`. Scalars per method:
        ``extra_pad_<method>`` (the first batch padded to ``2 * seq_len``: same sentences, more padding) and
        ``other_content_<method>`` (the first batch with the other sentences' tokens redrawn).
    """
    if not 1 <= target_len <= seq_len or any(not 1 <= k <= seq_len for k in other_lens) or not other_lens:
        raise ValueError(f"sentence lengths must lie in [1, seq_len={seq_len}]")
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, d_model, generator=gen, dtype=torch.float64) + 1.0
    table[0] = 0.0  # the padding token's embedding
    target = torch.randint(1, vocab, (target_len,), generator=gen)
    others = torch.randint(1, vocab, (n_others, seq_len), generator=gen)
    redrawn = torch.randint(1, vocab, (n_others, seq_len), generator=gen)

    def batch(other_tokens: torch.Tensor, k: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(n_others + 1, length, dtype=torch.long)
        ids[0, :target_len] = target
        ids[1:, :k] = other_tokens[:, :k]
        return table[ids], ids != 0

    def target_out(method: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _normalise(method, x, mask)[0, :target_len]

    data: dict[str, list] = {"pad_fraction": [], "mean_all": [], "var_all": [], "mean_valid": [], "var_valid": []}
    outs: dict[str, list[torch.Tensor]] = {m: [] for m in PAD_METHODS}
    for k in other_lens:
        x, mask = batch(others, k, seq_len)
        data["pad_fraction"].append(1.0 - mask.double().mean().item())
        for name, stats in (("all", masked_batch_stats(x)), ("valid", masked_batch_stats(x, mask))):
            data[f"mean_{name}"].append(stats[0].mean().item())
            data[f"var_{name}"].append(stats[1].mean().item())
        for method in PAD_METHODS:
            outs[method].append(target_out(method, x, mask))
    ref_x, ref_mask = batch(others, other_lens[0], seq_len)
    long_x, long_mask = batch(others, other_lens[0], 2 * seq_len)
    new_x, new_mask = batch(redrawn, other_lens[0], seq_len)
    for method in PAD_METHODS:
        ref = target_out(method, ref_x, ref_mask)
        data[f"change_{method}"] = [(o - ref).abs().max().item() for o in outs[method]]
        data[f"extra_pad_{method}"] = (target_out(method, long_x, long_mask) - ref).abs().max().item()
        data[f"other_content_{method}"] = (target_out(method, new_x, new_mask) - ref).abs().max().item()
    config = {
        "d_model": d_model,
        "seq_len": seq_len,
        "target_len": target_len,
        "other_lens": list(other_lens),
        "n_others": n_others,
        "vocab": vocab,
        "seed": seed,
    }
    arrays = {k: np.asarray(v) for k, v in data.items()}
    return Result("bn-padding", config, arrays, make_meta("synthetic token embeddings", started))


def reverse_batch(n: int, seq_len: int, vocab: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the reversal task: ``n`` sequences of ``seq_len`` uniform token ids and their reversals.

    Returns:
        ``(tokens, targets)``, both ``(n, seq_len)`` long; ``targets[:, t] = tokens[:, seq_len - 1 - t]``.
    """
    tokens = torch.randint(0, vocab, (n, seq_len), generator=generator)
    return tokens, tokens.flip(1)


def _model(placement: str, norm: str, n_layers: int, d_model: int, vocab: int, seq_len: int) -> TinyTransformer:
    return TinyTransformer(vocab, seq_len, d_model, max(1, d_model // 8), 2 * d_model, n_layers, norm, placement)


def init_grad_norms(
    n_layers: int = 8,
    d_model: int = 32,
    norm: str = "layer",
    seeds: int = 10,
    batch_size: int = 64,
    seq_len: int = 16,
    vocab: int = 10,
) -> Result:
    """The gradient norm of each block's second MLP weight matrix at initialisation, pre-LN and post-LN.

    For each seed, both placements start from the same random state and get the same batch of the reversal
    task; one cross-entropy loss, one backward pass.

    Returns:
        An ``"init-grad-norms"`` result: ``pre`` and ``post``, arrays ``(seeds, n_layers)`` of
        ``||dL/dW2||`` per block (block 1 nearest the input).
    """
    if seeds < 1 or n_layers < 1:
        raise ValueError(f"seeds and n_layers must be at least 1; got {seeds}, {n_layers}")
    started = time.perf_counter()
    data = {}
    for placement in PLACEMENTS:
        rows = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = _model(placement, norm, n_layers, d_model, vocab, seq_len)
            tokens, targets = reverse_batch(batch_size, seq_len, vocab, torch.Generator().manual_seed(1000 + seed))
            F.cross_entropy(model(tokens).reshape(-1, vocab), targets.reshape(-1)).backward()
            rows.append([block.mlp[2].weight.grad.norm().item() for block in model.blocks])
        data[placement] = np.asarray(rows)
    config = {
        "n_layers": n_layers,
        "d_model": d_model,
        "norm": norm,
        "seeds": seeds,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "vocab": vocab,
    }
    return Result("init-grad-norms", config, data, make_meta("synthetic reversal task", started))


def depth_grad_norms(depths: Sequence[int] = (2, 4, 8, 16), seeds: int = 6, **kwargs) -> Result:
    """The gradient norm at initialisation of the *last* block's MLP output weights, against the depth.

    Xiong et al. (2020) bound it independently of the number of layers ``L`` for post-LN and as
    ``1/sqrt(L)`` for pre-LN. Each depth is one :func:`init_grad_norms` run (``kwargs`` are passed on).

    Returns:
        A ``"depth-grad-norms"`` result: ``depths``; ``pre``, ``post``: the mean over seeds, ``(len(depths),)``.
    """
    if not depths or min(depths) < 1:
        raise ValueError(f"depths must be positive numbers of blocks; got {list(depths)}")
    started = time.perf_counter()
    runs = [init_grad_norms(n_layers=depth, seeds=seeds, **kwargs) for depth in depths]
    data = {"depths": np.asarray(depths)}
    for placement in PLACEMENTS:
        data[placement] = np.asarray([run.data[placement][:, -1].mean() for run in runs])
    config = {**runs[0].config, "depths": list(depths)}
    del config["n_layers"]
    return Result("depth-grad-norms", config, data, make_meta("synthetic reversal task", started))


def lr_sweep(
    lrs: Sequence[float] = (3e-3, 1e-2, 3e-2, 1e-1),
    norm: str = "layer",
    n_layers: int = 4,
    d_model: int = 32,
    steps: int = 100,
    batch_size: int = 32,
    seq_len: int = 16,
    vocab: int = 10,
    seed: int = 0,
    warmup: int = 0,
    placements: Sequence[str] = PLACEMENTS,
) -> Result:
    """Train pre-LN and post-LN transformers with Adam on reversal, by default at a constant learning rate.

    Every run starts from the same seed and sees the same batches (fresh random sequences each step, so the
    training loss is also a held-out loss). The final loss is the mean of the last 10 steps' losses; chance
    level is ``ln(vocab)``.

    Args:
        warmup: steps of linear learning-rate warm-up (step ``s`` uses ``lr * min(1, (s + 1) / warmup)``);
            0, the default: none.
        placements: which of ``"pre"``, ``"post"`` to train.

    Returns:
        An ``"lr-sweep"`` result: ``lrs``; ``final_<placement>`` ``(len(lrs),)`` and ``loss_<placement>``
        ``(len(lrs), steps)`` for each placement; ``chance``.
    """
    if steps < 10 or not lrs or min(lrs) <= 0 or warmup < 0:
        raise ValueError(
            f"need at least 10 steps, positive learning rates and warmup >= 0; got {steps}, {list(lrs)}, {warmup}"
        )
    if not placements or any(p not in PLACEMENTS for p in placements):
        raise ValueError(f"placements must be among {list(PLACEMENTS)}; got {list(placements)}")
    started = time.perf_counter()
    data: dict[str, np.ndarray] = {"lrs": np.asarray(lrs, dtype=float), "chance": np.asarray(np.log(vocab))}
    for placement in placements:
        curves = []
        for lr in lrs:
            torch.manual_seed(seed)
            model = _model(placement, norm, n_layers, d_model, vocab, seq_len)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            gen = torch.Generator().manual_seed(seed + 1)
            losses = []
            for step in range(steps):
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
                tokens, targets = reverse_batch(batch_size, seq_len, vocab, gen)
                loss = F.cross_entropy(model(tokens).reshape(-1, vocab), targets.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            curves.append(losses)
        data[f"loss_{placement}"] = np.asarray(curves)
        data[f"final_{placement}"] = data[f"loss_{placement}"][:, -10:].mean(axis=1)
    config = {
        "lrs": list(lrs),
        "norm": norm,
        "n_layers": n_layers,
        "d_model": d_model,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "vocab": vocab,
        "seed": seed,
        "optimizer": "Adam",
        "warmup": warmup,
        "placements": list(placements),
    }
    return Result("lr-sweep", config, data, make_meta("synthetic reversal task", started))

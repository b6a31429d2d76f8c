"""The engine's hand-written training step: forward, backward and SGD for K stacked MLPs, without autograd.

The architecture is fixed, so its gradients can be written out once: per hidden layer
``linear -> [BN] -> activation``, then ``linear -> softmax cross-entropy``, averaged over the batch per
model. A step is about 40 tiny ops; on a CPU, autograd's bookkeeping (recording a graph in the forward,
running it in the backward) costs about as much as the arithmetic, so doing without it makes one model
train faster than a plain PyTorch loop. PyTorch's autograd stays the oracle: the tests compare every
gradient with ``torch.autograd.grad`` in float64, and ``train_mlps(..., backward="autograd")`` runs the
same training through it.

Every tensor carries the model axis K first: activations ``(K, B, D)``, weights ``(K, in, out)``,
per-model vectors ``(K, 1, D)``. Nothing reads a tensor's value on the host and no branch depends on
one, so the step can be captured as a CUDA graph.

The gradients of the mean loss are linear in ``dlogits = (softmax - onehot) / B``. :func:`loss_grad`
multiplies it by a ``scale`` (``lr / B``, a float or a per-model ``(K, 1, 1)`` tensor), so
:func:`backward` produces ``lr * grad`` directly and SGD is a plain subtraction, fused into the weight
gradient's matmul (``W.baddbmm_(h^T, dz, alpha=-1)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ACT_BACKWARD", "Cache", "backward", "bn_backward", "forward", "grads", "loss_grad"]

_aten = torch.ops.aten
ACT_FORWARD = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}
# d(activation)/dz from the activation's output a, as autograd computes it (one fused kernel each)
ACT_BACKWARD = {
    "sigmoid": _aten.sigmoid_backward.default,  # dh * a * (1 - a)
    "tanh": _aten.tanh_backward.default,  # dh * (1 - a^2)
    "relu": lambda dh, a: _aten.threshold_backward.default(dh, a, 0),  # dh * (a > 0): 0 at the kink
}


@dataclass
class Cache:
    """What the backward pass needs from the forward, per layer ``i``.

    Attributes:
        inputs: the linear layers' inputs ``(K, B, in)`` (the first may be stride 0 along K).
        outputs: the hidden activations' outputs ``(K, B, width)``.
        bn: per hidden layer ``(x_hat, invstd)``, ``(K, B, width)`` and ``(K, 1, width)``; empty without BN.
        pre: the last hidden layer's nonlinearity input ``(K, B, width)`` (after BN, as in Figure 1).
    """

    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    bn: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    pre: torch.Tensor | None = None


def forward(model, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, Cache]:
    """The K models' logits, with BN on batch statistics (``train``, running ones updated) or running ones.

    Args:
        model: a ``bncourse.training.mlp.BatchedMLP`` (stacked ``weights``, ``biases``, ``gammas``, ``betas``,
            ``bn_mask``, ``running_mean``/``running_var``, ``momentum``, ``eps``, ``activation``).
        x: ``(B, in)`` shared by all models or ``(K, B, in)``.
        train: batch statistics (and a running-statistics update) or running statistics.

    Returns:
        logits ``(K, B, classes)`` and the :class:`Cache` for :func:`backward`.
    """
    k = model.k
    h = x if x.dim() == 3 else x.expand(k, *x.shape)  # (B, in) -> (K, B, in), no copy
    act = ACT_FORWARD[model.activation]
    cache = Cache()
    for i in range(len(model.weights) - 1):
        cache.inputs.append(h)
        z = torch.baddbmm(model.biases[i], h, model.weights[i])  # (K, B, in) @ (K, in, D) -> (K, B, D)
        if model.any_bn:
            zn = _bn_train(model, i, z, cache) if train else _bn_eval(model, i, z)
            z = zn if model.all_bn else torch.where(model.bn_mask, zn, z)
        cache.pre = z
        h = act(z)
        cache.outputs.append(h)
    cache.inputs.append(h)
    return torch.baddbmm(model.biases[-1], h, model.weights[-1]), cache  # (K, B, classes)


def _bn_train(model, i: int, z: torch.Tensor, cache: Cache) -> torch.Tensor:
    """BN on batch statistics per (model, feature): ``(K, B, D) -> (K, B, D)``; updates the running ones.

    PyTorch's semantics (``F.batch_norm``): normalise with the biased variance, store the unbiased one,
    ``new = (1 - momentum) * old + momentum * batch``.
    """
    b = z.shape[1]
    mu = z.mean(1, keepdim=True)  # (K, B, D) -> (K, 1, D)
    zc = z - mu
    var = (zc * zc).mean(1, keepdim=True)  # biased, (K, 1, D)
    invstd = torch.rsqrt(var + model.eps)
    x_hat = zc.mul_(invstd)
    cache.bn.append((x_hat, invstd))
    k, d = model.k, z.shape[2]
    model.running_mean[i].view(k, 1, d).lerp_(mu, model.momentum)
    model.running_var[i].view(k, 1, d).lerp_(var * (b / (b - 1)), model.momentum)
    return torch.addcmul(model.betas[i], x_hat, model.gammas[i])  # gamma * x_hat + beta


def _bn_eval(model, i: int, z: torch.Tensor) -> torch.Tensor:
    """BN on running statistics: ``(z - running_mean) / sqrt(running_var + eps) * gamma + beta``."""
    k, d = model.k, z.shape[2]
    scale = model.gammas[i] * torch.rsqrt(model.running_var[i].view(k, 1, d) + model.eps)  # (K, 1, D)
    return torch.addcmul(model.betas[i], z - model.running_mean[i].view(k, 1, d), scale)


def bn_backward(dy: torch.Tensor, x_hat: torch.Tensor, invstd: torch.Tensor, gamma: torch.Tensor):
    """BN's backward pass over the batch axis 1, in the compact form.

    ``dz = gamma * invstd / B * (B * dy - sum(dy) - x_hat * sum(dy * x_hat))``.

    Args:
        dy: gradient of the BN output ``(K, B, D)``.
        x_hat, invstd: from the forward, ``(K, B, D)`` and ``(K, 1, D)``.
        gamma: ``(K, 1, D)``.

    Returns:
        ``(dz, dgamma, dbeta)``: ``(K, B, D)``, ``(K, 1, D)``, ``(K, 1, D)``.
    """
    b = dy.shape[1]
    dbeta = dy.sum(1, keepdim=True)  # (K, B, D) -> (K, 1, D)
    dgamma = (dy * x_hat).sum(1, keepdim=True)  # (K, 1, D)
    dz = torch.addcmul(dbeta, x_hat, dgamma)  # sum(dy) + x_hat * sum(dy * x_hat), (K, B, D)
    dz = torch.sub(dy, dz, alpha=1.0 / b).mul_(gamma * invstd)
    return dz, dgamma, dbeta


def loss_grad(logits: torch.Tensor, y3: torch.Tensor, scale, neg_scale: torch.Tensor):
    """Softmax cross-entropy: the labels' log-probabilities and ``scale * dloss/dlogits``.

    Args:
        logits: ``(K, B, C)``.
        y3: labels ``(K, B, 1)`` (int64; may be stride 0 along K).
        scale: a float or a ``(K, 1, 1)`` tensor; ``1 / B`` gives the gradient of the mean loss.
        neg_scale: ``-scale`` as a ``(K, B, 1)`` tensor.

    Returns:
        ``(picked, dlogits)``: ``log p(y)`` ``(K, B, 1)`` (the losses are ``-picked.mean((1, 2))``) and
        ``scale * (softmax(logits) - onehot(y))`` ``(K, B, C)``.
    """
    logp = torch.log_softmax(logits, -1)  # (K, B, C)
    picked = logp.gather(2, y3)  # (K, B, 1)
    return picked, logp.exp_().mul_(scale).scatter_add_(2, y3, neg_scale)


def backward(model, cache: Cache, dlogits: torch.Tensor, update: bool = False) -> list[torch.Tensor] | None:
    """Back-propagate ``dlogits`` ``(K, B, C)`` through the models of :func:`forward` (training mode).

    Args:
        model: the model :func:`forward` ran.
        cache: its cache.
        dlogits: ``scale * dloss/dlogits`` from :func:`loss_grad`.
        update: subtract the (scaled) gradients from the parameters in place (SGD) instead of returning them.

    Returns:
        Without ``update``, the gradients in the order of ``model.params()``: weights, biases and, when
        any model has BN, gammas and betas (zero for the models without BN).
    """
    n = len(model.weights)
    gw, gb = [None] * n, [None] * n
    ggamma, gbeta = [None] * (n - 1), [None] * (n - 1)
    act_backward = ACT_BACKWARD[model.activation]
    dz = dlogits
    for i in reversed(range(n)):
        h_t = cache.inputs[i].transpose(1, 2)  # (K, in, B)
        dh = torch.bmm(dz, model.weights[i].transpose(1, 2)) if i > 0 else None  # (K, B, in), before W moves
        gb[i] = dz.sum(1, keepdim=True)  # (K, B, out) -> (K, 1, out)
        if update:
            model.weights[i].baddbmm_(h_t, dz, alpha=-1.0)  # W -= h^T dz
        else:
            gw[i] = torch.bmm(h_t, dz)  # (K, in, out)
        if i == 0:
            break
        dz = act_backward(dh, cache.outputs[i - 1])  # (K, B, in)
        if model.any_bn:
            x_hat, invstd = cache.bn[i - 1]
            dzn, dgamma, dbeta = bn_backward(dz, x_hat, invstd, model.gammas[i - 1])
            if not model.all_bn:  # a model without BN passes dz through and leaves gamma, beta alone
                dzn = torch.where(model.bn_mask, dzn, dz)
                dgamma, dbeta = torch.where(model.bn_mask, dgamma, 0.0), torch.where(model.bn_mask, dbeta, 0.0)
            dz, ggamma[i - 1], gbeta[i - 1] = dzn, dgamma, dbeta
    rest = gb + (ggamma + gbeta if model.any_bn else [])
    if update:
        torch._foreach_sub_(model.biases + (model.gammas + model.betas if model.any_bn else []), rest)
        return None
    return gw + rest


def grads(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-model mean losses ``(K,)`` and their gradients (order of ``model.params()``) on one batch.

    The readable entry point (and what the tests compare with ``torch.autograd.grad``). Like a training
    step it updates BN's running statistics; it does not change the parameters.

    Args:
        model: a ``bncourse.training.mlp.BatchedMLP``.
        x: ``(B, in)`` or ``(K, B, in)``.
        y: labels ``(B,)`` or ``(K, B)``.
    """
    b = x.shape[-2]
    y3 = y.reshape(-1, b, 1).expand(model.k, b, 1)
    logits, cache = forward(model, x, train=True)
    neg = torch.full((model.k, b, 1), -1.0 / b, dtype=logits.dtype, device=logits.device)
    picked, dlogits = loss_grad(logits, y3, 1.0 / b, neg)
    return -picked.mean((1, 2)), backward(model, cache, dlogits)

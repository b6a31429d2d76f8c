"""Everything that trains networks.

- :mod:`bncourse.training.mlp`: many small MLPs at once (:class:`~bncourse.training.mlp.BatchedMLP`, stacked
  weights, one batched matmul per layer), configured by :class:`~bncourse.training.mlp.RunConfig` and trained
  by :func:`~bncourse.training.mlp.train_mlps`;
- :mod:`bncourse.training.mlp_step`: that model's hand-written forward, backward and SGD step (no autograd);
- :mod:`bncourse.training.loop`: :func:`~bncourse.training.loop.train_models`, any ``nn.Module`` (LeNet, VGG,
  ...) with SGD, one model after another;
- :mod:`bncourse.training.cuda_graphs`: capturing a training step as a CUDA graph (used by both trainers);
- :mod:`bncourse.training.pool`: independent runs in a pool of single-threaded worker processes;
- :mod:`bncourse.training.recipes`: BN-aware recipes: weight-decay parameter groups, frozen BN statistics;
- :mod:`bncourse.training.steps`: :func:`~bncourse.training.steps.sgd_steps`, a few SGD steps on one module with
  a hook that sets its mode before each step (fine-tuning with BN kept frozen).
"""

from bncourse.training.loop import train_models
from bncourse.training.mlp import BatchedMLP, RunConfig, stack_mlps, train_mlps
from bncourse.training.pool import default_workers, run_jobs

__all__ = ["BatchedMLP", "RunConfig", "default_workers", "run_jobs", "stack_mlps", "train_mlps", "train_models"]

"""bncourse: the package behind the interactive Batch Normalization course.

Modules (import them explicitly; nothing runs on import):

- :mod:`bncourse.norms` - from-scratch numpy references and torch modules for BN and its alternatives; BN at
  inference (recalibrated statistics, folding).
- :mod:`bncourse.models` - every network of the course (MLPs, LeNet, VGG, ConvNet3, the RNN, the critique's).
- :mod:`bncourse.training` - the trainers: many MLPs in one batched step, any module, CUDA graphs, a process pool.
- :mod:`bncourse.gradcheck` - centred-difference numeric gradients and ``rel_error``.
- :mod:`bncourse.data` - datasets as numpy arrays; images to tensors; the seeded batch order.
- :mod:`bncourse.runtime` - device choice and names, CPU threads, best-of timing, the chapters' scale.
- :mod:`bncourse.metrics` - accuracy, the one implementation every trainer and experiment uses.
- :mod:`bncourse.checks` - graders for the exercises.
- :mod:`bncourse.experiments` - small experiments returning plain result objects.
- :mod:`bncourse.plots` and :mod:`bncourse.panels` - figures and ipywidgets panels of results.
- :mod:`bncourse.source` - short excerpts of the package's own code, for the pages.
"""

__version__ = "0.3.0"

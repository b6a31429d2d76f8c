"""Exercise checkers, one module per exercise notebook (``book/exercises/NN_<slug>_exercises.md``), all built on the
kit in :mod:`bncourse.checks.base` (also the thinking exercises of issue 19). Each checker raises
``AssertionError`` with a hint naming the likely mistake (also when the student's code raises, or returns None, a
string, a ragged list, complex values, the wrong shape, NaN or inf), and prints one line when the student's code
is right.

- :mod:`bncourse.checks.sgd` - chapter 1: minibatch gradient, epochs, SGD, the gradient's variance (computed,
  and measured by sampling minibatches), which runs diverge (predict, then run), the largest stable learning
  rate with and without BN (open experiment);
- :mod:`bncourse.checks.covariate_shift` - chapter 2: saturation, the ICS measure, noisy BN, ZCA whitening,
  saturation with the mean only (predict, then run), the bias before BN (open experiment);
- :mod:`bncourse.checks.batchnorm` - chapter 3: BN forward, staged and compact backward, the gradient at m = 2
  (predict, then run), how much gradient BN lets through (open experiment);
- :mod:`bncourse.checks.inference` - chapter 4: running statistics, folding, recalibration, train mode at test
  time (predict, then run), train-mode accuracy against the test batch size (open experiment);
- :mod:`bncourse.checks.conv` - chapter 5: spatial BN forward and backward, via 2-D BN, the conv bias; the count
  behind a statistic (predicted), the bias before BN (measured);
- :mod:`bncourse.checks.batchsize` - chapter 6: Ghost BN, Batch Renorm, SyncBN's statistics; the accuracy lost at
  batch 2 with and without Ghost BN (predicted), SyncBN's statistics in float32 (measured);
- :mod:`bncourse.checks.alternatives` - chapter 7: Layer Norm, Group Norm forward and backward; which layers
  ignore the batch (predicted), the largest stable learning rate with and without normalisation (measured).

Every checker is also importable from here: ``from bncourse.checks import check_batchnorm_forward``.
"""

from bncourse.checks.alternatives import (
    check_batch_of_one,
    check_layernorm_forward,
    check_lr_experiment,
    check_spatial_groupnorm_backward,
    check_spatial_groupnorm_forward,
)
from bncourse.checks.batchnorm import (
    check_batchnorm_backward,
    check_batchnorm_backward_alt,
    check_batchnorm_forward,
    check_gradient_shrinkage,
    check_m2_gradient,
)
from bncourse.checks.batchsize import (
    check_batch_renorm,
    check_combine_moments,
    check_ghost_batchnorm,
    check_precision_experiment,
    check_small_batch_prediction,
    check_sync_stats,
)
from bncourse.checks.conv import (
    check_bias_experiment,
    check_fold_conv_bias,
    check_spatial_backward,
    check_spatial_forward,
    check_spatial_via_2d,
    check_stat_count,
)
from bncourse.checks.covariate_shift import (
    check_bias_before_bn,
    check_gradient_change,
    check_mean_only_saturation,
    check_noisy_bn,
    check_saturated_fraction,
    check_zca_whitening,
)
from bncourse.checks.inference import (
    check_fold_linear_bn,
    check_recalibrate,
    check_running_update,
    check_train_eval_ratio,
    check_train_mode_sweep,
)
from bncourse.checks.sgd import (
    check_diverging_runs,
    check_epoch_batches,
    check_gradient_variance,
    check_largest_stable_lr,
    check_logistic_grad,
    check_minibatch_variance,
    check_sampled_variance,
    check_sgd_epoch,
    logistic_grad,
)

__all__ = [
    "check_batch_of_one",
    "check_batch_renorm",
    "check_batchnorm_backward",
    "check_batchnorm_backward_alt",
    "check_batchnorm_forward",
    "check_bias_before_bn",
    "check_bias_experiment",
    "check_combine_moments",
    "check_diverging_runs",
    "check_epoch_batches",
    "check_fold_conv_bias",
    "check_fold_linear_bn",
    "check_ghost_batchnorm",
    "check_gradient_change",
    "check_gradient_shrinkage",
    "check_gradient_variance",
    "check_largest_stable_lr",
    "check_layernorm_forward",
    "check_logistic_grad",
    "check_lr_experiment",
    "check_m2_gradient",
    "check_mean_only_saturation",
    "check_minibatch_variance",
    "check_noisy_bn",
    "check_precision_experiment",
    "check_recalibrate",
    "check_running_update",
    "check_sampled_variance",
    "check_saturated_fraction",
    "check_sgd_epoch",
    "check_small_batch_prediction",
    "check_spatial_backward",
    "check_spatial_forward",
    "check_spatial_groupnorm_backward",
    "check_spatial_groupnorm_forward",
    "check_spatial_via_2d",
    "check_stat_count",
    "check_sync_stats",
    "check_train_eval_ratio",
    "check_train_mode_sweep",
    "check_zca_whitening",
    "logistic_grad",
]

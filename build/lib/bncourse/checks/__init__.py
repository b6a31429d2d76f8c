"""Exercise checkers, one module per topic. Each raises ``AssertionError`` with a hint naming the likely
mistake, and prints one line when the student's code is right.

- :mod:`bncourse.checks.sgd`, :mod:`bncourse.checks.sgd_variance` - chapter 1;
- :mod:`bncourse.checks.covariate`, :mod:`bncourse.checks.noisy_bn` - chapter 2;
- :mod:`bncourse.checks.batchnorm` - chapter 3: BN forward, staged backward, compact backward;
- :mod:`bncourse.checks.inference` - chapter 4; :mod:`bncourse.checks.spatial` - chapter 5;
- :mod:`bncourse.checks.batchsize` - chapter 6; :mod:`bncourse.checks.groupnorm` - chapter 7.

Exercise notebooks import the module of their chapter; chapter 3's checkers are also re-exported here.
"""

from bncourse.checks.batchnorm import check_batchnorm_backward, check_batchnorm_backward_alt, check_batchnorm_forward

__all__ = ["check_batchnorm_backward", "check_batchnorm_backward_alt", "check_batchnorm_forward"]

"""Exercise checkers, one module per topic. Each raises ``AssertionError`` with a hint naming the likely
mistake, and prints one line when the student's code is right.

- :mod:`bncourse.checks.batchnorm` - chapter 3: BN forward, staged backward, compact backward.
"""

from bncourse.checks.batchnorm import check_batchnorm_backward, check_batchnorm_backward_alt, check_batchnorm_forward

__all__ = ["check_batchnorm_backward", "check_batchnorm_backward_alt", "check_batchnorm_forward"]

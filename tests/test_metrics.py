"""The course's one accuracy function (bncourse.metrics.accuracy)."""

import pytest
import torch
from torch import nn

from bncourse.metrics import accuracy


class _Scores(nn.Module):
    """Returns its input as the class scores, so the predictions are chosen by the test."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _one_hot_scores(pred: list[int], classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), classes).float()


def test_accuracy_counts_correct_argmax_over_all_batches():
    x = _one_hot_scores([0, 1, 2, 2, 1, 0, 0])
    y = torch.tensor([0, 1, 2, 0, 0, 0, 1])  # 4 of 7 right
    for batch_size in (None, 1, 2, 3, 7, 100):
        assert accuracy(_Scores(), x, y, batch_size=batch_size) == pytest.approx(4 / 7, abs=0)


def test_accuracy_sets_the_mode_and_train_mode_uses_batch_statistics():
    model = nn.BatchNorm1d(2, affine=False)  # fresh: running mean 0 and variance 1, so eval mode keeps the argmax
    x = torch.tensor([[10.0, 0.0], [11.0, 0.5], [12.0, 3.0]])
    y = torch.tensor([0, 0, 0])
    assert accuracy(model, x, y) == 1.0 and not model.training
    # batch statistics: column 0 -> (-1.22, 0, 1.22), column 1 -> (-0.89, -0.51, 1.40): predictions 1, 0, 1
    assert accuracy(model, x, y, batch_size=3, train=True) == pytest.approx(1 / 3, abs=0)
    assert model.training  # left as set
    # each batch of 3 is normalised on its own, so a shifted copy of the batch gets the same predictions 1, 0, 1
    # (all 6 at once, the shift would decide them: 1, 1, 1, 0, 0, 1)
    x6, y6 = torch.cat([x, x + torch.tensor([100.0, 0.0])]), torch.tensor([1, 0, 1, 1, 0, 1])
    assert accuracy(nn.BatchNorm1d(2, affine=False), x6, y6, batch_size=3, train=True) == 1.0
    assert accuracy(nn.BatchNorm1d(2, affine=False), x6, y6, batch_size=None, train=True) == 4 / 6
    assert float(model.running_mean[0]) == pytest.approx(0.1 * 11.0)  # updated (momentum 0.1), as PyTorch does


@pytest.mark.parametrize(
    ("x", "batch_size", "message"),
    [
        (torch.zeros(0, 3), 10, "accuracy of an empty set"),
        (torch.zeros(4, 3), 0, "batch_size must be at least 1"),
    ],
)
def test_accuracy_refuses_an_empty_set_and_a_zero_batch(x, batch_size, message):
    with pytest.raises(ValueError, match=message):
        accuracy(_Scores(), x, torch.zeros(len(x), dtype=torch.long), batch_size=batch_size)

"""The 8×8 handwritten digits that scikit-learn ships (UCI optical digits, 1797 images), as
tensors with a fixed train/test split: an offline stand-in for MNIST."""

from __future__ import annotations

import torch

from ._split import Split, stratified_split

__all__ = ["load_digits"]

#: the pixel values of the digits run from 0 to 16
_MAX_PIXEL = 16.0


def load_digits(
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    image: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Split:
    """scikit-learn's 8×8 digits with a fixed, stratified train/test split.

    Pixels are scaled to [0, 1]. With the defaults the split is 1347 training and 450 test
    images (each class split 3:1), the same on every machine and independent of the global
    random state.

    Args:
        test_fraction: the share of each class held out for testing.
        seed: the split's seed (keep the default to compare with published numbers here).
        image: return images ``(n, 1, 8, 8)`` instead of flat vectors ``(n, 64)``.
        dtype: the inputs' dtype.
        device: where the tensors live.

    Returns:
        A :class:`Split` with labels in ``0..9`` (``int64``).

    Raises:
        ImportError: scikit-learn is missing (``pip install 'torchnde[models]'``).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError(
            "the digits data set ships with scikit-learn; install it with "
            "`pip install 'torchnde[models]'` (or `pip install scikit-learn`)"
        ) from None
    bunch = sklearn_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float64) / _MAX_PIXEL
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    train, test = stratified_split(y, test_fraction, seed)
    x = x.to(dtype=dtype, device=device)
    y = y.to(device=device)
    return Split(x[train], y[train], x[test], y[test])

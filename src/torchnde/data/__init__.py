"""Offline data for the models and the reproduce entries: loaders of data sets that PyPI packages
ship (scikit-learn's digits) and small generators. Nothing is downloaded.

Example:
    >>> from torchnde.data import load_digits
    >>> split = load_digits()                 # 1347 training / 450 test images, fixed split
    >>> split.x_train.shape, split.y_test.shape
    (torch.Size([1347, 64]), torch.Size([450]))
"""

from ._digits import load_digits
from ._generators import advection_diffusion, damped_oscillator, spirals
from ._split import Split, stratified_split

__all__ = [
    "Split",
    "advection_diffusion",
    "damped_oscillator",
    "load_digits",
    "spirals",
    "stratified_split",
]

"""Offline data for the models and the reproduce entries: loaders of data sets that PyPI packages
ship (scikit-learn's digits, aeon's UEA/UCR sets, mnist1d's generator) and small generators. Nothing is downloaded.

Example:
    >>> from torchnde.data import load_digits
    >>> split = load_digits()                 # 1347 training / 450 test images, fixed split
    >>> split.x_train.shape, split.y_test.shape
    (torch.Size([1347, 64]), torch.Size([450]))
"""

from ._digits import load_digits
from ._generators import advection_diffusion, damped_oscillator, spirals
from ._sequences import adding_problem, fitzhugh_nagumo, load_mnist1d, load_uea, pixel_digits
from ._split import Split, stratified_split

__all__ = [
    "Split",
    "adding_problem",
    "advection_diffusion",
    "damped_oscillator",
    "fitzhugh_nagumo",
    "load_digits",
    "load_mnist1d",
    "load_uea",
    "pixel_digits",
    "spirals",
    "stratified_split",
]

"""Size by gradient descent (ALGORITHMS.md §4, arXiv 2501.18012): no trigger, selector or initializer;
the optimizer moves a size scalar like any weight.

``size-weight``: a trainable size weight ``N`` gates the hidden units through ``theta``;
``controller-mask``: a controller output ``c`` masks them per unit, the task loss reaching ``c``;
``controller-mask-reference``: the same with the reference code's two defects, for reproduction.
Their defaults are the paper's; one epoch is one full-batch step (``batch_size`` is larger than any
of the synthetic training sets). The start network: one hidden layer of ``n_max`` tanh units with the
size modulator, weights and biases ``U[-1, 1]``.
"""

from ..spaces import LogFloat
from .preset import Preset

FULL_BATCH = 1 << 20  # larger than any training set these presets are meant for: one step per epoch

_TRAINING = dict(batch_size=FULL_BATCH, weight_decay=0.0, lr_schedule="constant", max_params=None)

# Method 1, regression: full-batch gradient descent, lr 1e-3, 40,000 epochs, lambda 0.1.
_SIZE_WEIGHT = dict(_TRAINING, epochs=40000, lr=1e-3, optimizer="gd", n_max=9, n_inf=5.0, dn=1.0,
                    n_start=0.0, **{"lambda": 0.1})
# Method 1, classification (step-sine): lambda 0.01, lr 0.08, 10,000 epochs.
_SIZE_WEIGHT_CLASSIFICATION = dict(_SIZE_WEIGHT, epochs=10000, lr=0.08, **{"lambda": 0.01})

# Method 2: Adam lr 1e-3, full batch, 5,000 epochs, n_max 10, size loss 0.32 (c - 1)^2, c from 1e-5.
_CONTROLLER = dict(_TRAINING, epochs=5000, lr=1e-3, optimizer="adam", n_max=10, size_weight=0.32,
                   c_start=1e-5, reference_defects=False)

# digits (1,150 training images, so that a bench of every method stays short): 2,000 full-batch steps;
# for the size weight lr 0.5, chosen on digits validation accuracy (0.9375 against 0.8507 at the
# classification row's 0.08, seed 0).
_SIZE_WEIGHT_DIGITS = dict(_SIZE_WEIGHT_CLASSIFICATION, epochs=2000, lr=0.5)
_CONTROLLER_DIGITS = dict(_CONTROLLER, epochs=2000)

# the search (`selfexpand search`): one epoch is one full-batch step, so the batch size stays; there are no
# growth steps to warm up after; the size loss's weight is searched
_SIZE_WEIGHT_SPACE = {"batch_size": None, "growth_warmup": None, "lambda": LogFloat(1e-3, 1.0)}
_CONTROLLER_SPACE = {"batch_size": None, "growth_warmup": None, "size_weight": LogFloat(0.01, 3.0)}

PRESETS = (
    Preset("size-weight", "a trainable size weight N gates the hidden units (size by gradient descent)",
           rows={"*": _SIZE_WEIGHT, "step-sine": _SIZE_WEIGHT_CLASSIFICATION, "digits": _SIZE_WEIGHT_DIGITS},
           start="size-weight", space=_SIZE_WEIGHT_SPACE),
    Preset("controller-mask", "a controller output c masks the hidden units per unit (size by gradient descent)",
           rows={"*": _CONTROLLER, "digits": _CONTROLLER_DIGITS}, start="controller-mask", space=_CONTROLLER_SPACE),
    Preset("controller-mask-reference", "controller-mask with the reference code's two defects (for reproduction)",
           rows={"*": dict(_CONTROLLER, reference_defects=True),
                 "digits": dict(_CONTROLLER_DIGITS, reference_defects=True)}, start="controller-mask",
           space=_CONTROLLER_SPACE),
)

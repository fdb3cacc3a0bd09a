"""The baselines (ALGORITHMS.md §5) on GroMo's schedule, and the static network.

One hidden layer of 8 units, +6 units after each of the first 11 epochs, 20 epochs of Adam; on
digits (and the user's tables) +4 units, 40 epochs at lr 1e-2, batch 32. The methods differ only in
how new units start: random, zero outgoing weights, Net2Net copies, GradMax, Firefly.
"""

from .preset import Preset

_BASELINE = dict(epochs=20, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=0.0, lr_schedule="constant",
                 hidden=[8], max_params=None, units=6, every=1, times=11)
_BASELINE_SMALL = {**_BASELINE, "epochs": 40, "batch_size": 32, "lr": 1e-2, "units": 4}


# growth_warmup 0.05 (the rate ramps back up over 5 % of the run after each growth step; issue #22) for
# random and zero on the image row, chosen on best validation accuracy, MNIST / Fashion-MNIST, 20 epochs,
# seed 0 (`selfexpand train --method M --dataset D --epochs 20 [--set growth_warmup=0.05]`):
#   random 0.9730 -> 0.9738 / 0.8810 -> 0.8820; zero 0.9730 -> 0.9745 / 0.8816 -> 0.8822;
#   net2net 0.9651 -> 0.9658 / 0.8790 -> 0.8758 (kept off). new_lr_scale 3 (span 0.1) did not help:
#   random 0.9718, zero 0.9728, net2net 0.9653 on MNIST. net2net noise 0.01 / 0.1 (with the warm-up):
#   0.9659 / 0.9641, kept 1e-3. GradMax and Firefly were not tried (left off).
_WARMUP = {"growth_warmup": 0.05}


# cifar10 row of random, zero, net2net, gradmax and firefly (issue #24): a small VGG-like conv start. The full network is
# three blocks of 16-32-64 channels (3x3 conv, batch norm, ReLU, 2x2 max pooling each; GrowableNet.cnn's
# conventions), 64 x 4 x 4 maps flattened straight into the 10 outputs. The run starts at a quarter of
# each width, conv=[4, 8, 16], and every growth step gives each block ceil(channel_fraction x its
# channels) more (0.25: 4 -> 5 -> 7 -> 9 -> 12 -> 15 -> 16), capped per block by max_channels=[16, 32, 64]:
# the cap is the "full widths", not a parameter budget (max_params stays None), so the run reaches the
# VGG-like network after 7 of its 11 growth steps and trains it for the rest. Dense hidden layers: none.
# The rest of the row is the image row's (20 epochs of Adam at 1e-3, batch 64). Untuned (no search run).
# mnist keeps its dense row (the tuned figures above); a conv start there is `--set conv=[8,16]`.
_CIFAR_CONV = {"conv": [4, 8, 16], "max_channels": [16, 32, 64], "channel_fraction": 0.25, "hidden": []}


def _rows(image: dict | None = None, conv_row: dict | None = None, **extra) -> dict:
    """The method's rows; ``conv_row``: the ``cifar10`` conv row's own settings (None: no conv row)."""
    rows = {"*": {**_BASELINE, **extra, **(image or {})}, "digits": {**_BASELINE_SMALL, **extra},
            "table": {**_BASELINE_SMALL, **extra}}
    if conv_row is not None:
        rows["cifar10"] = {**rows["*"], **_CIFAR_CONV, **conv_row}
    return rows


def _baseline(name: str, summary: str, initializer: str, image: dict | None = None, conv_row: dict | None = None,
              **extra) -> Preset:
    return Preset(name, summary, rows=_rows(image, conv_row, **extra), trigger="interval", selector="all-layers",
                  initializer=initializer)


_STATIC_SMALL = dict(epochs=60, batch_size=32, lr=1e-2, optimizer="adam", weight_decay=0.0,
                     lr_schedule="constant", hidden=[], max_params=None)

PRESETS = (
    _baseline("random", "new units with random incoming and outgoing weights", "random", image=_WARMUP,
              conv_row={}),
    _baseline("zero", "new units with zero outgoing weights (function preserved)", "zero", image=_WARMUP,
              conv_row={}),
    _baseline("net2net", "new units as noisy copies of existing ones (Net2Net, function preserved)", "net2net",
              conv_row={}, noise=1e-3),
    # GradMax's conv row keeps epsilon 1e-3: at 0 a new channel behind batch norm and ReLU never trains
    # (strategies/initializers/gradmax_conv.py); its batch-norm weight starts at epsilon
    _baseline("gradmax", "new units whose outgoing weights maximise the gradient norm (GradMax)", "gradmax",
              conv_row={}, epsilon=1e-3),
    # Firefly's conv row scores candidates on 256 images (SENN's cifar10 row's sample): with the dense
    # rows' 2,048, one growth step of the 4-8-16 -> 16-32-64 network cost minutes (float64 conv passes
    # over 2,048 x 32 x 32 positions), most of a run
    _baseline("firefly", "new units and unit splits ranked by the loss decrease they promise (Firefly)", "firefly",
              conv_row={"sample": 256}, candidates_per_unit=4, eps=1e-2, steps=10, splits=True),
    Preset("static", "no growth: the start network trained as it is",
           rows={"*": dict(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0,
                           lr_schedule="constant", hidden=[], max_params=None),
                 "digits": _STATIC_SMALL, "table": _STATIC_SMALL},
           space={"growth_warmup": None}),  # no growth step: nothing for `selfexpand search` to warm up after
)

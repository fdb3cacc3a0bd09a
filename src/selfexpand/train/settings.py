"""The training settings of a run, declared once: the trainer checks its arguments against them and
a method's row (``selfexpand.presets``) takes its training values through them. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Configurable, setting
from ..spaces import Categorical, Float, LogFloat
from ..validators import Choice, Integer, Number, Optional

__all__ = ["TrainingSettings", "OPTIMIZER_NAMES", "LR_SCHEDULES"]

#: ``gd`` is plain gradient descent (SGD without momentum); ``natural``: SENN's natural gradient.
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "rmsprop", "gd", "natural")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(eq=False)
class TrainingSettings(Configurable):
    """What every run trains with, whatever its method."""

    epochs: int = setting(Integer(1), 10, "training epochs of the run (integration epochs included)")
    batch_size: int = setting(Integer(1), 64, "training examples per step",
                              space=Categorical([16, 32, 64, 128, 256]))
    lr: float = setting(Number(0, low_open=True), 1e-3, "learning rate", space=LogFloat(1e-4, 1e-1))
    optimizer: str = setting(Choice(*OPTIMIZER_NAMES), "adam", "the optimizer (sgd has momentum 0.9; gd none)")
    weight_decay: float = setting(Number(0), 0.0, "L2 weight decay of the optimizer",
                                  space=Categorical([0.0, 1e-5, 1e-4, 1e-3]))
    lr_schedule: str = setting(Choice(*LR_SCHEDULES), "constant",
                               "constant, or cosine: epoch t trains at lr (1 + cos(pi t / epochs)) / 2",
                               space=Categorical(list(LR_SCHEDULES)))
    max_params: int | None = setting(Optional(Integer(1)), None, "growth never makes params exceed this "
                                                                 "(null: no bound)")
    grow_until: float = setting(Number(0, 1), 1.0, "fraction of the epochs after which no method grows "
                                                   "(1: growth may come even after the last epoch)")
    # growth-aware learning rates (selfexpand.train.growth_lr): lengths are fractions of the run
    growth_warmup: float = setting(Number(0, 1), 0.0, "after each growth step the rate ramps linearly back "
                                                      "up over this fraction of the run's steps (0: off)",
                                   space=Float(0.0, 0.2))
    new_lr_scale: float = setting(Number(0, low_open=True), 1.0, "the entries a growth step adds train at this "
                                                                 "times the rate, decaying to 1 (1: off)")
    new_lr_span: float = setting(Number(0, 1), 0.1, "the fraction of the run's steps over which new_lr_scale "
                                                    "decays linearly to 1 (0: off)")

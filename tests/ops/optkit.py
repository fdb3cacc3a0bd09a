"""The optimizers the carry-over tests run with, and the state each keeps (dense and conv tests alike)."""

import torch

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
}
FIRST_MOMENTS = {"momentum_buffer", "exp_avg", "grad_avg"}
SECOND_MOMENTS = {"exp_avg_sq", "square_avg"}
EXPECTED_KEYS = {
    "sgd": {"momentum_buffer"},
    "adam": {"step", "exp_avg", "exp_avg_sq"},
    "adamw": {"step", "exp_avg", "exp_avg_sq"},
    "rmsprop": {"step", "square_avg", "momentum_buffer", "grad_avg"},
}

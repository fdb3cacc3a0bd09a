"""selfexpand: self-expanding neural networks in PyTorch.

Networks that start small and grow units, layers and edges during training. See ``docs/guide.md``.
"""

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, GrowthError, SelfExpandError  # noqa: E402
from .graph import GrowableNet  # noqa: E402
from .ops import GrowthEvent  # noqa: E402
from .runs import RunConfig, load_run, predict_file, resume_run, train_run  # noqa: E402
from .train.trainer import GrowthMethod, Trainer  # noqa: E402

__all__ = [
    "__version__", "GrowableNet", "GrowthEvent", "Trainer", "GrowthMethod", "RunConfig", "train_run",
    "resume_run", "load_run", "predict_file", "SelfExpandError", "ConfigError", "DataError",
    "GrowthError", "CheckpointError",
]

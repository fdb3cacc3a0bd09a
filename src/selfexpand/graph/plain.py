"""Plain forms of modules: copies built only from ``torch`` classes, loadable without selfexpand.

An export must run where selfexpand is not installed: ``torch.load`` of a pickled module imports the
class of every submodule, so no submodule may be a selfexpand class. :func:`plain_module` returns a
copy of a module in which every such part is replaced by a standard one:

- a module with a ``plain()`` method gives its own plain form (the conv fronts return an
  ``nn.Sequential`` of ``Flatten``, ``Unflatten``, ``Conv2d``, ``BatchNorm2d``, ``ReLU``,
  ``MaxPool2d``; the rational activation a traced ``torch.fx.GraphModule``);
- any other module whose class is not torch's is traced (:func:`trace_module`): its ``forward``
  becomes a ``torch.fx.GraphModule`` whose generated code calls only torch, its parameters and
  buffers kept under the same names. A module whose ``forward`` cannot be traced (control flow on
  tensor values) is copied as it is: it works, but loading the export then needs its package;
- a torch module keeps its class, with its children made plain in turn.
"""

from __future__ import annotations

import copy

import torch.fx as fx
from torch import nn

__all__ = ["plain_module", "trace_module", "is_plain", "foreign_modules"]


def _is_torch(module: nn.Module) -> bool:
    return type(module).__module__.split(".")[0] == "torch"


def trace_module(module: nn.Module, name: str | None = None) -> fx.GraphModule:
    """``module``'s forward traced into a ``torch.fx.GraphModule`` that shares its parameters.

    Type annotations are dropped from the generated code (they would name classes by module path),
    so the code holds only torch calls; TorchScript then types every value as a ``Tensor``.

    Raises:
        torch.fx.proxy.TraceError (or another error of the tracer): ``forward`` branches on tensor
        values or calls what the tracer cannot record.
    """
    traced = fx.symbolic_trace(module)
    graph = traced.graph
    for node in graph.nodes:
        node.type = None
        node.meta = {}
    return fx.GraphModule(traced, graph, name or type(module).__name__)


def plain_module(module: nn.Module | None) -> nn.Module | None:
    """A copy of ``module`` made of torch classes only (see the module docstring); None stays None."""
    if module is None:
        return None
    if hasattr(module, "plain") and callable(module.plain):
        return module.plain()
    if not _is_torch(module):
        try:
            return trace_module(copy.deepcopy(module))
        except Exception:  # untraceable (branches on tensor values): the copy is the best plain form
            return copy.deepcopy(module)
    out = copy.deepcopy(module)
    for name, child in module.named_children():
        setattr(out, name, plain_module(child))
    return out


def foreign_modules(module: nn.Module) -> list[str]:
    """Names (``""`` for the root) of the submodules whose class is not torch's."""
    return [name for name, m in module.named_modules() if not _is_torch(m)]


def is_plain(module: nn.Module) -> bool:
    """True when every submodule's class comes from torch (so loading needs only torch)."""
    return not foreign_modules(module)

"""Resizing one connection: weight, mask, provisional marks and indices move together."""

from __future__ import annotations

import torch

from .edit import Edit
from .optimizer_state import resize_like

__all__ = ["resize_connection", "KEEP"]

KEEP = object()


def resize_connection(edit: Edit, conn, weight: torch.Tensor, row_src: torch.Tensor,
                      col_src: torch.Tensor, *, in_index=KEEP, out_index=KEEP) -> None:
    """Give ``conn`` the new ``weight``; ``row_src`` / ``col_src`` map its rows and columns to the old
    ones (-1 = new, live, not provisional). Index buffers are set when given (None = all units)."""
    sources = (row_src.to(weight.device), col_src.to(weight.device))
    if conn.mask is not None:
        conn.mask = resize_like(conn.mask, sources, 1.0)
    if conn.provisional is not None:
        conn.provisional = resize_like(conn.provisional, sources, 0.0)
    edit.replace(conn, "weight", weight, sources)
    if in_index is not KEEP:
        conn.in_index = in_index
    if out_index is not KEEP:
        conn.out_index = out_index

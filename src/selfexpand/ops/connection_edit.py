"""Resizing one connection: weight, mask, provisional marks and indices move together."""

from __future__ import annotations

import torch

from .edit import Edit
from .optimizer_state import resize_like

__all__ = ["resize_connection", "KEEP", "column_sources"]

KEEP = object()


def resize_connection(edit: Edit, conn, weight: torch.Tensor, row_src: torch.Tensor,
                      col_src: torch.Tensor, *, in_index=KEEP, out_index=KEEP) -> None:
    """Give ``conn`` the new ``weight``; ``row_src`` / ``col_src`` map its rows and columns to the old
    ones (-1 = new, live, not provisional). Index buffers are set when given (None = all units).
    A conv connection's kernel dimensions keep their size (every kernel entry follows its row and column)."""
    sources = (row_src.to(weight.device), col_src.to(weight.device),
               *(torch.arange(n, device=weight.device) for n in weight.shape[2:]))
    if conn.mask is not None:
        conn.mask = resize_like(conn.mask, sources, 1.0)
    if conn.provisional is not None:
        conn.provisional = resize_like(conn.provisional, sources, 0.0)
    edit.replace(conn, "weight", weight, sources)
    if in_index is not KEEP:
        conn.in_index = in_index
    if out_index is not KEEP:
        conn.out_index = out_index


def column_sources(channel_src: torch.Tensor, per_channel: int) -> torch.Tensor:
    """Column sources of a dense connection reading a feature map (channel-major, ``per_channel``
    positions each) from its channels' sources: channel ``c`` -> columns ``c * P ... c * P + P - 1``,
    a new channel (-1) -> ``P`` new columns."""
    if per_channel == 1:
        return channel_src
    offsets = torch.arange(per_channel, device=channel_src.device)
    cols = channel_src[:, None] * per_channel + offsets[None, :]
    return torch.where(channel_src[:, None] >= 0, cols, torch.full_like(cols, -1)).flatten()

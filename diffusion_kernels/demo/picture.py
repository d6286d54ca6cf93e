"""The demo's picture: the answer's tokens on a grid of steps x positions, each token drawn in the
row of the step that committed it (coloured by that step) and pale in the rows after, as the LLaDA
paper shows its sampling process. matplotlib draws it when installed (extra ``demo``); otherwise
the built-in PNG writer does, with a bitmap font."""
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from . import font
from .png import GREY, WHITE, Canvas, blend, ink_for, viridis

__all__ = ["decoding_order_picture", "draw_builtin", "GridGeometry"]

PALE = 0.75            # how far a token committed earlier fades towards white
MASKED_EDGE = (215, 215, 215)
BLOCK_EDGE = (40, 40, 40)


def _cell_state(order: int, step: int) -> str:
    """'now' (committed at this step), 'earlier', 'masked' (not yet) or 'filled' (never committed: EOS fill)."""
    if order < 0:
        return "filled"
    return "now" if step == order else "earlier" if step > order else "masked"


def _step_colour(step: int, steps: int):
    return viridis(step / max(steps - 1, 1))


@dataclass
class GridGeometry:
    """Where the built-in writer put the grid: cell ``(step, position)`` covers
    ``[x0 + position * cell, + cell - 1) x [y0 + step * cell, + cell - 1)``."""
    x0: int
    y0: int
    cell: int
    width: int
    height: int


def draw_builtin(path: str, tokens: Sequence[int], order: Sequence[int], steps: int, *,
                 labels: Callable[[int], str] = str, block_length: Optional[int] = None, title: str = "",
                 subtitle: str = "") -> GridGeometry:
    """The picture with the package's PNG writer and 5x7 font (no dependency)."""
    P, S = len(tokens), max(steps, 1)
    cell = max(6, min(26, 720 // max(P, 1), 640 // S))
    digit_scale = 2 if cell >= 20 else 1 if cell >= 9 else 0
    tick_every_x = 1 if cell >= 14 else 5
    tick_every_y = 1 if cell >= 9 else 5
    title_scale = 2 if font.text_width(title, 2) <= P * cell + 120 else 1

    step_ticks_w = font.text_width(str(S - 1))
    x0 = 8 + font.WIDTH + 8 + step_ticks_w + 6
    y0 = 10 + font.HEIGHT * title_scale + 6 + (font.HEIGHT + 8 if subtitle else 0) + (font.HEIGHT + 6 if block_length else 0)
    grid_w, grid_h = P * cell, S * cell
    bar_x = x0 + grid_w + 20
    right_w = 20 + max(16 + 6 + font.text_width(f"STEP {S - 1}"), 12 + 6 + font.text_width("COMMITTED EARLIER"))
    width = max(x0 + grid_w + right_w + 8, 10 + font.text_width(title, title_scale) + 10,
                10 + font.text_width(subtitle) + 10)
    height = max(y0 + grid_h + 8 + font.HEIGHT + 8 + font.HEIGHT + 10, y0 + 200)
    c = Canvas(width, height)

    c.text(10, 10, title, scale=title_scale)
    if subtitle:
        c.text(10, 10 + font.HEIGHT * title_scale + 6, subtitle, colour=(60, 60, 60))
    for s in range(S):
        for p in range(P):
            state = _cell_state(order[p], s)
            x, y = x0 + p * cell, y0 + s * cell
            if state == "masked":
                c.frame(x, y, cell - 1, cell - 1, MASKED_EDGE)
                continue
            colour = GREY if state == "filled" else _step_colour(order[p], S)
            if state == "earlier" or state == "filled":
                colour = blend(colour, WHITE, PALE)
            c.rect(x, y, cell - 1, cell - 1, colour)
            if digit_scale:
                ink = ink_for(colour) if state == "now" else (90, 90, 90)
                c.centred_text(x + (cell - 1) // 2, y + (cell - 1) // 2 + 1, labels(tokens[p])[:1], ink, digit_scale)
    if block_length:
        for b in range(0, P + 1, block_length):
            c.rect(x0 + b * cell - 1, y0 - 2, 1, grid_h + 3, BLOCK_EDGE)  # in the gap between cells
            if b < P and font.text_width(f"BLOCK {b // block_length}") <= block_length * cell:
                c.centred_text(x0 + (2 * b + block_length) * cell // 2, y0 - 6 - font.HEIGHT // 2,
                               f"BLOCK {b // block_length}", colour=(60, 60, 60))
    # axes: step numbers on the left, positions below, the axis names
    for s in range(0, S, tick_every_y):
        label = str(s)
        c.text(x0 - 6 - font.text_width(label), y0 + s * cell + (cell - font.HEIGHT) // 2, label)
    for p in range(0, P, tick_every_x):
        c.centred_text(x0 + p * cell + cell // 2, y0 + grid_h + 8 + font.HEIGHT // 2, str(p))
    c.centred_text(x0 + grid_w // 2, y0 + grid_h + 16 + font.HEIGHT + font.HEIGHT // 2, "ANSWER POSITION")
    for i, char in enumerate("STEP"):
        c.text(8, y0 + grid_h // 2 - 2 * (font.HEIGHT + 2) + i * (font.HEIGHT + 2), char)
    # colour bar: the step that committed a token
    bar_h = min(grid_h, 160)
    for yy in range(bar_h):
        c.rect(bar_x, y0 + yy, 16, 1, viridis(yy / max(bar_h - 1, 1)))
    c.text(bar_x + 22, y0, "STEP 0")
    c.text(bar_x + 22, y0 + bar_h - font.HEIGHT, f"STEP {S - 1}")
    # legend: the pale and the empty cells
    ly = y0 + bar_h + 14
    c.rect(bar_x, ly, 12, 12, blend(_step_colour(0, S), WHITE, PALE))
    c.text(bar_x + 18, ly + 3, "COMMITTED EARLIER")
    c.frame(bar_x, ly + 18, 12, 12, MASKED_EDGE)
    c.text(bar_x + 18, ly + 21, "STILL MASKED")
    c.save(path)
    return GridGeometry(x0=x0, y0=y0, cell=cell, width=width, height=height)


def _draw_matplotlib(path, tokens, order, steps, *, labels, block_length, title, subtitle) -> None:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    P, S = len(tokens), max(steps, 1)
    cmap, norm = colormaps["viridis"], Normalize(0, max(S - 1, 1))
    pale = lambda rgba: tuple(a + (1 - a) * PALE for a in rgba[:3]) + (1.0,)  # noqa: E731
    image = np.ones((S, P, 4))
    fig = Figure(figsize=(min(2.5 + 0.34 * P, 24), min(1.9 + 0.3 * S, 24)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    annotate = P <= 64 and S <= 64
    for p in range(P):
        o = order[p]
        for s in range(S):
            state = _cell_state(o, s)
            if state == "masked":
                continue
            colour = (0.5, 0.5, 0.5, 1.0) if state == "filled" else cmap(norm(o))
            image[s, p] = colour if state == "now" else pale(colour)
            if annotate:
                ink = "0.35" if state != "now" else ("black" if sum(colour[:3]) > 1.6 else "white")
                ax.text(p, s, labels(tokens[p]), ha="center", va="center", color=ink, fontsize=8,
                        fontweight="bold" if state == "now" else "normal")
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, P, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, S, 1), minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xticks(range(0, P, 1 if P <= 32 else 4))
    ax.set_yticks(range(0, S, 1 if S <= 32 else 4))
    if block_length:
        for b in range(0, P + 1, block_length):
            ax.axvline(b - 0.5, color="black", linewidth=1.6)
        top = ax.secondary_xaxis("top")
        top.set_xticks([b + (block_length - 1) / 2 for b in range(0, P, block_length)],
                       labels=[f"block {i}" for i in range(len(range(0, P, block_length)))])
        top.tick_params(length=0, labelsize=8)
    ax.set_xlabel("answer position")
    ax.set_ylabel("step (forward pass)")
    ax.set_title(title + ("\n" + subtitle if subtitle else ""), fontsize=10)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="step that committed the token", fraction=0.04)
    bar.ax.invert_yaxis()  # step 0 on top, as in the grid
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(handles=[Patch(facecolor=pale(cmap(0.0)), label="committed earlier"),
                        Patch(facecolor="white", edgecolor="0.7", label="still [MASK]")],
               loc="outside lower center", ncol=2, frameon=False, fontsize=8)
    fig.savefig(path)


def decoding_order_picture(path: str, tokens: Sequence[int], order: Sequence[int], steps: int, *,
                           labels: Callable[[int], str] = str, block_length: Optional[int] = None,
                           title: str = "Decoding order", subtitle: str = "", backend: str = "auto") -> str:
    """Write the decoding-order picture of one answer to ``path`` (PNG).

    Args:
        tokens, order: the answer's tokens and the step that committed each (``-1``: never, e.g. EOS fill).
        steps: the number of steps (forward passes) taken: the grid's rows.
        labels: a token's text (one character is drawn by the built-in writer).
        block_length: draws the block boundaries.
        title, subtitle: text above the grid.
        backend: ``'auto'`` (matplotlib when importable), ``'matplotlib'`` or ``'builtin'``.

    Returns:
        The backend that drew it.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "order.png")
        >>> decoding_order_picture(path, [1, 2, 3], [0, 2, 1], steps=3, backend="builtin")
        'builtin'
    """
    if backend not in ("auto", "matplotlib", "builtin"):
        raise ValueError(f"diffusion_kernels: argument 'backend' must be 'auto', 'matplotlib' or 'builtin', got {backend!r}")
    if len(tokens) != len(order):
        raise ValueError(f"diffusion_kernels: 'tokens' ({len(tokens)}) and 'order' ({len(order)}) must have one entry per position")
    if backend != "builtin":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            if backend == "matplotlib":
                raise
        else:
            _draw_matplotlib(path, tokens, order, steps, labels=labels, block_length=block_length, title=title,
                             subtitle=subtitle)
            return "matplotlib"
    draw_builtin(path, tokens, order, steps, labels=labels, block_length=block_length, title=title.upper(),
                 subtitle=subtitle.upper())
    return "builtin"

"""The cost-quality picture of `pickwise eval`: one PNG, one subplot per table.

Each subplot shows the NDCH of every router, the single-model points, the zero-router hull
and the oracle point on a log cost axis, so a glance tells how far each router gets from
"ignore the prompt" towards the oracle at every budget.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from pickwise.predictor.evaluate import TableReport  # noqa: E402

_STYLE = {"zero": dict(color="0.45", linestyle="--"), "pickwise": dict(color="tab:red", linewidth=2.2, zorder=5)}


def _hull_xy(hull: list[tuple[float, float]], c_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The hull as drawn on a log cost axis, extended flat to c_max (as the AIQ integral counts it).

    Segments are linear in cost, so they are sampled densely to show their true (curved) shape
    on the log axis; costs <= 0 cannot be drawn there and are left out.
    """
    xs = np.array([c for c, _ in hull], dtype=float)
    ys = np.array([q for _, q in hull], dtype=float)
    if xs.size and xs[-1] < c_max:
        xs, ys = np.append(xs, c_max), np.append(ys, ys[-1])
    if xs.size > 1:
        dense = np.concatenate([np.linspace(a, b, 40, endpoint=False) for a, b in zip(xs[:-1], xs[1:])] + [xs[-1:]])
        ys, xs = np.interp(dense, xs, ys), dense
    keep = xs > 0
    return xs[keep], ys[keep]


def plot_path(path: str | Path) -> Path:
    """The file `plot_reports` writes for `path`: `.png` added when it has no suffix (matplotlib would
    add it silently); ValueError for a directory or a format matplotlib cannot write, so `eval`
    can refuse it before its minutes of work rather than fail at the end."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name such as {path / 'curves.png'}")
    if not path.suffix:
        return path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(f"{path}: cannot draw a '{path.suffix}' file (one of {', '.join(sorted(formats))})")
    return path


def plot_reports(reports: list[TableReport], path: str | Path) -> Path:
    """Draw every report's cost-quality curves into one image at `path` (see `plot_path`); returns where."""
    if not reports:
        raise ValueError("no reports to plot")
    path = plot_path(path)
    n = len(reports)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5.2 * rows), squeeze=False)
    for ax, rep in zip(axes.flat, reports):
        figs = rep.figures
        for name, r in figs.routers.items():
            if name == "oracle":
                continue
            xs, ys = _hull_xy(r.hull, figs.c_max)
            cap = "" if r.capture is None else f" (capture {r.capture:.2f})"
            ax.plot(xs, ys, label=f"{name}{cap}", **_STYLE.get(name, {}))
        singles = [s for s in figs.single_models if s.cost and s.cost > 0 and s.quality is not None]
        ax.scatter([s.cost for s in singles], [s.quality for s in singles], s=18, color="black",
                   zorder=3, label="single models")
        for s in singles:
            ax.annotate(s.name.split("/")[-1][:18], (s.cost, s.quality), fontsize=6, alpha=0.7,
                        xytext=(3, -3), textcoords="offset points")
        oracle_c, oracle_q = figs.oracle_point
        if oracle_c > 0:
            ax.scatter([oracle_c], [oracle_q], marker="*", s=140, color="gold", edgecolor="black", zorder=4,
                       label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("mean cost per prompt (USD, log)")
        ax.set_ylabel("mean quality")
        ax.set_title(f"{rep.table}\n{figs.n_prompts} held-out prompts", fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

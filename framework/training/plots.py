"""Training-curve and filter plots of a run (matplotlib is an optional extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LaminaError
from ..registry import Registry
from . import runs
from .api import load_trained


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no screen is needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise LaminaError(
            "plotting needs matplotlib, which is an optional extra: "
            "pip install 'lamina[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def _history(run_dir: Path) -> list[dict]:
    """metrics.json, checked like the history in checkpoint.json."""
    import json

    from pydantic import TypeAdapter, ValidationError

    raw = runs.read_json(run_dir / runs.METRICS, "metrics history")
    try:  # strictly, as checkpoint.json's history (lamina.config.strict)
        records = TypeAdapter(list[runs.EpochRecord]).validate_json(json.dumps(raw),
                                                                     strict=True)
    except ValidationError as exc:
        raise LaminaError(f"{runs.shown(run_dir / runs.METRICS)} is not a lamina metrics "
                          f"history ({exc.error_count()} problems, the first: "
                          f"{exc.errors()[0]['msg']}); it was edited or damaged") from None
    return [record.model_dump() for record in records]


def plot_run(run_dir: str | Path, registry: Registry, out_dir: str | Path | None = None) -> list:
    """Write curves.png (loss and accuracy per epoch; the loss alone for a value loss) and
    filters.png (first conv layer)."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    session = load_trained(run_dir, registry)  # the run directory checked as a whole
    history = _history(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    try:
        if out.exists() and not out.is_dir():
            raise LaminaError(f"--out {runs.shown(out)} is a file; give a folder for the PNGs "
                              "(it is created if missing)")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaminaError(f"cannot create --out {runs.shown(out)}: "
                          f"{exc.strerror or exc}") from exc
    written = []

    epochs = [r["epoch"] for r in history]
    # A value loss (mse, binary_cross_entropy) records no accuracy: its loss alone is drawn.
    metrics = ("loss", "accuracy") if any(r["train_accuracy"] is not None for r in history) \
        else ("loss",)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.plot(epochs, [r[f"train_{metric}"] for r in history], "o-", label="train")
        val = [(r["epoch"], r[f"val_{metric}"]) for r in history if r[f"val_{metric}"] is not None]
        if val:
            ax.plot(*zip(*val, strict=True), "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    written.append(out / "curves.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    conv = next((n for n in session.network.nodes if n.config.type == "conv2d"), None)
    if conv is not None:
        W = conv.layer.params()["W"]  # (out, in, kh, kw): show the first input channel
        kernels = W[:, 0]
        cols = int(np.ceil(np.sqrt(len(kernels))))
        rows = int(np.ceil(len(kernels) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2))
        limit = float(np.abs(kernels).max()) or 1.0
        for i, ax in enumerate(np.ravel(axes)):
            ax.axis("off")
            if i < len(kernels):
                ax.imshow(kernels[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
        fig.suptitle(f"{conv.name} filters (input channel 0)")
        written.append(out / "filters.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written

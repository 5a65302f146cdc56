"""Result files a user keeps: `report.json`, `roc.png`, and the plain-text table the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facever.core.atomic import atomic_path, write_text_atomic


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (sorted keys are not used: reports read top-down)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=True) + "\n")
    return path


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *, title: str = "ROC") -> Path:
    """One ROC plot (TPR against FPR on a log axis, where face verification lives) with every curve."""
    # A bare Figure with the Agg canvas: no pyplot (slow to import, keeps global state, wants a display).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, fpr, tpr in curves:
        fpr = np.asarray(fpr)
        positive = fpr > 0
        ax.plot(fpr[positive], np.asarray(tpr)[positive], label=label, linewidth=1.5)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate (FPR)")
    ax.set_ylabel("true accept rate (TPR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)  # fixed: tight_layout draws twice
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_report(out_dir: str | Path, result, *, extra: dict | None = None, label: str | None = None) -> dict[str, Path]:
    """Write `report.json` and `roc.png` for one `VerificationResult` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    if extra:
        data.update(extra)
    report = write_json(out_dir / "report.json", data)
    roc_png = plot_roc(
        [(label or f"{result.protocol} (acc {100 * result.accuracy_mean:.2f}%, AUC {result.auc:.4f})",
          result.fpr, result.tpr)],
        out_dir / "roc.png",
        title=f"{result.protocol.upper()} ROC",
    )
    return {"report": report, "roc": roc_png}


def format_table(result) -> str:
    """Per-fold thresholds and accuracies, then the summary, as aligned plain text."""
    kf = result.kfold
    unit = "cosine" if result.settings.get("metric", "cosine") == "cosine" else "sq. L2"
    lines = [f"{'fold':>4}  {'pairs':>5}  {'threshold (' + unit + ')':>20}  {'accuracy':>9}"]
    for f, s, t, a in zip(kf.fold_ids, kf.sizes, kf.thresholds, kf.accuracies):
        lines.append(f"{int(f) + 1:>4}  {int(s):>5}  {t:>20.6f}  {100 * a:>8.2f}%")
    lines.append("")
    lines.append(f"accuracy   {100 * kf.mean:.2f}% +- {100 * kf.std:.2f} (std over {kf.accuracies.size} folds; "
                 f"stderr {100 * kf.stderr:.2f})")
    lines.append(f"AUC        {result.auc:.4f}    EER {100 * result.eer:.2f}%")
    tar = result.tar_at_far
    lines.append("TAR@FAR    " + "   ".join(f"{float(k):g}: {100 * v:.2f}%" for k, v in tar.items()))
    v = result.val_at_far
    lines.append(f"VAL@FAR    {100 * v['val_mean']:.2f}% +- {100 * v['val_std']:.2f} @ FAR {100 * v['far_mean']:.3f}% "
                 "(facenet's definition)")
    if result.dropped_pairs:
        lines.append(f"dropped    {result.dropped_pairs} pairs with missing images (--allow-missing)")
    return "\n".join(lines)

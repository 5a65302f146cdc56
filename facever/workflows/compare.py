"""Comparing finished training runs: their configurations, validation, benchmark results and curves.

A run folder is what `facever train` writes (config.toml or config.json, metrics.jsonl, model.pt).
Benchmark results are the `report.json` files found inside it (e.g. `facever eval-lfw --out
RUN/lfw`, or `facever reproduce`'s `runs/NAME/eval/lfw/`), named by their folder.

The curves: loss and validation accuracy (compare.png), and one PNG per training instrument
(settings.TRAINING_INSTRUMENTS: target probability, saturated share, gradient on the target logit,
angle, noise, training accuracy beside validation accuracy) with the runs as coloured lines, so the
Noisy Softmax paper's "postponed saturation" figure comes out of two runs and one command.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from facever.core.errors import FaceverError, InputFileError
from facever.core.json_files import parse_json, read_json_file
from facever.core.text_files import read_text
from facever.core.settings import SATURATION_LEVEL, TRAINING_INSTRUMENTS

# Shown even when equal across runs: what a reader wants to see next to the numbers.
KEY_FIELDS = ("arch", "input_size", "head", "margin", "alpha2", "noise", "cosine_scale", "epochs", "batch_size", "lr",
              "schedule", "seed", "amp")
# Never worth a row: machine and bookkeeping settings that differ between machines, not models.
IGNORED_FIELDS = frozenset({"workers", "cache_dir", "device", "checkpoint_every", "val_every", "strict"})
REPORT_SEARCH_DEPTH = 4


# Each instrument's plot: its title and the label of its axis.
INSTRUMENT_LABELS = {
    "target_prob": ("target probability p_y (mean)", "mean p_y"),
    "saturated": (f"saturated: share of samples with p_y > {SATURATION_LEVEL:g}", "share of samples"),
    "target_grad": ("gradient on the plain target logit f_y: (1 - p_y) x the head's slope", "mean |dL/df_y|"),
    "target_angle": ("angle between embedding and its class weight", "mean angle (degrees)"),
    "noise": ("size of the noise on the target logit", "mean |noise|"),
    "train_accuracy": ("training accuracy per epoch (solid), validation accuracy (dashed)", "accuracy (%)"),
}


@dataclass
class Metrics:
    """Curves from RUN/metrics.jsonl: training loss per logging window, validation accuracy, each
    training instrument per logging window (`instruments[name] = (steps, values)`), and the training
    accuracy of each epoch."""

    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    instruments: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    epoch_steps: list[int] = field(default_factory=list)
    epoch_train_accuracy: list[float] = field(default_factory=list)

    def last(self, name: str) -> float | None:
        values = self.instruments.get(name, ((), ()))[1]
        return values[-1] if values else None


def read_metrics(run_dir: str | Path) -> Metrics:
    """Parse RUN/metrics.jsonl (missing file: empty curves; a malformed line: InputFileError with its line)."""
    path = Path(run_dir) / "metrics.jsonl"
    metrics = Metrics()
    if not path.is_file():
        return metrics
    text = read_text(path, what="metrics file")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line, path, line=lineno)
            kind = record.get("kind")
            if kind == "train" and record.get("loss") is not None:
                metrics.train_steps.append(int(record["step"]))
                metrics.train_loss.append(float(record["loss"]))
                for name in TRAINING_INSTRUMENTS:
                    if isinstance(record.get(name), (int, float)):
                        steps, values = metrics.instruments.setdefault(name, ([], []))
                        steps.append(int(record["step"]))
                        values.append(float(record[name]))
            elif kind == "epoch" and isinstance(record.get("train_accuracy"), (int, float)):
                metrics.epoch_steps.append(int(record["step"]))
                metrics.epoch_train_accuracy.append(float(record["train_accuracy"]))
            elif kind == "validation":
                metrics.val_steps.append(int(record["step"]))
                metrics.val_accuracy.append(float(record["accuracy"]))
        except (ValueError, KeyError, TypeError, AttributeError):  # InputFileError is a ValueError
            raise InputFileError(path, "not a metrics record (expected one JSON object per line)", line=lineno) from None
    return metrics


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved configuration: config.toml (preferred) or config.json, as a plain dict."""
    run_dir = Path(run_dir)
    toml_path, json_path = run_dir / "config.toml", run_dir / "config.json"
    try:
        if toml_path.is_file():
            return tomllib.loads(toml_path.read_text(encoding="utf-8-sig"))
        if json_path.is_file():
            return read_json_file(json_path)
    except InputFileError:
        raise
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise FaceverError(f"{toml_path if toml_path.is_file() else json_path}: unreadable configuration ({exc})") from None
    if not run_dir.is_dir():
        raise FaceverError(f"{run_dir}: run folder not found")
    raise FaceverError(f"{run_dir}: not a training run (no config.toml or config.json; made by `facever train`)")


def find_reports(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Benchmark results inside a run: {folder relative to the run: {protocol, accuracy, std, auc}}."""
    run_dir = Path(run_dir)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob("report.json")):
        rel = path.parent.relative_to(run_dir)
        if len(rel.parts) > REPORT_SEARCH_DEPTH or any(p.startswith(".") or p == "cache" for p in rel.parts):
            continue
        try:
            data = read_json_file(path)
        except FaceverError:  # not a report (unreadable, not JSON, nested too deeply): not a result to show
            continue
        if isinstance(data, dict) and "ensemble" in data and "accuracy" not in data:
            data = data["ensemble"]  # a `facever ensemble` report: the fused row
        acc = data.get("accuracy") if isinstance(data, dict) else None
        if not isinstance(acc, dict) or "mean" not in acc:
            continue
        found[rel.as_posix() or "."] = {
            "protocol": data.get("protocol", rel.name), "accuracy": float(acc["mean"]),
            "std": float(acc.get("std", math.nan)), "auc": data.get("auc"),
        }
    return found


@dataclass
class RunSummary:
    path: Path
    name: str
    config: dict[str, Any]
    metrics: Metrics
    reports: dict[str, dict[str, Any]]

    @property
    def best_validation(self) -> tuple[float, int] | None:
        if not self.metrics.val_accuracy:
            return None
        i = max(range(len(self.metrics.val_accuracy)), key=lambda k: (self.metrics.val_accuracy[k], k))
        return self.metrics.val_accuracy[i], self.metrics.val_steps[i]

    @property
    def final_loss(self) -> float | None:
        return self.metrics.train_loss[-1] if self.metrics.train_loss else None

    @property
    def steps(self) -> int | None:
        steps = self.metrics.train_steps + self.metrics.val_steps
        return max(steps) if steps else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best_validation
        return {
            "run": str(self.path), "name": self.name, "config": self.config, "steps": self.steps,
            "final_loss": self.final_loss, "best_validation_accuracy": best[0] if best else None,
            "best_validation_step": best[1] if best else None, "benchmarks": self.reports,
        }


def with_head_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the head's options it leaves unset filled in (margin, noise, cosine scale,
    SphereFace's lambda: training.head_options), so that a run that took a default and one that wrote
    the same value compare equal and the table shows the value trained with. A configuration the
    current code would refuse is shown as it is."""
    from facever.training.head_options import resolve_head_options

    try:
        options = resolve_head_options(
            str(config.get("head", "noisy-softmax")), margin=config.get("margin"), cosine_scale=config.get("cosine_scale"),
            noise=config.get("noise"), alpha2=config.get("alpha2"), sphereface_lambda=config.get("sphereface_lambda"))
    except FaceverError:
        return config
    filled = dict(config)
    for key in ("margin", "noise", "cosine_scale", "sphereface_lambda"):
        value = getattr(options, key)
        if filled.get(key) is None and value is not None:
            filled[key] = list(value) if isinstance(value, tuple) else value
    return filled


def summarize_run(run_dir: str | Path, *, name: str | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    return RunSummary(run_dir, name or run_dir.resolve().name, with_head_defaults(read_run_config(run_dir)),
                      read_metrics(run_dir), find_reports(run_dir))


def _names(paths: Sequence[Path]) -> list[str]:
    """Short distinct names: the folder name, or more of the path where folder names collide."""
    names = [p.resolve().name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 6:
        depth += 1
        names = ["/".join(p.resolve().parts[-depth:]) for p in paths]
    return names


def config_differences(runs: Sequence[RunSummary]) -> list[str]:
    """Config keys whose values differ between runs (a key missing in one run counts as differing)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys]
    return [k for k in keys if k not in IGNORED_FIELDS and len({json.dumps(r.config.get(k)) for r in runs}) > 1]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(_fmt(v) for v in value) if len(value) == 2 and all(isinstance(v, int) for v in value) else \
            "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


@dataclass
class Comparison:
    runs: list[RunSummary]
    differing: list[str]
    rows: list[tuple[str, list[str], bool]]  # (label, one cell per run, highlighted)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs], "config_differences": self.differing}

    def to_markdown(self) -> str:
        """A Markdown table; differing configuration rows in bold and marked with `*`."""
        header = "| | " + " | ".join(r.name for r in self.runs) + " |"
        lines = [header, "|---" * (len(self.runs) + 1) + "|"]
        for label, cells, highlight in self.rows:
            if highlight:
                lines.append(f"| **{label}** * | " + " | ".join(f"**{c}**" for c in cells) + " |")
            else:
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if self.differing:
            lines += ["", "\\* configuration that differs between the runs."]
        return "\n".join(lines) + "\n"


def compare_runs(run_dirs: Sequence[str | Path]) -> Comparison:
    """Summaries of the runs and the rows of a side-by-side table (config differences first)."""
    if not run_dirs:
        raise FaceverError("give at least one run folder")
    paths = [Path(p) for p in run_dirs]
    runs = [summarize_run(p, name=n) for p, n in zip(paths, _names(paths))]
    differing = config_differences(runs)
    rows: list[tuple[str, list[str], bool]] = []
    for key in differing:
        rows.append((key, [_fmt(r.config.get(key)) for r in runs], True))
    for key in KEY_FIELDS:
        if key not in differing and any(key in r.config for r in runs):
            rows.append((key, [_fmt(r.config.get(key)) for r in runs], False))
    rows.append(("steps", [_fmt(r.steps) for r in runs], False))
    rows.append(("final train loss", [f"{r.final_loss:.4f}" if r.final_loss is not None else "-" for r in runs], False))
    if any(r.metrics.instruments for r in runs):
        rows.append((f"final p_y (share > {SATURATION_LEVEL:g})", [_saturation_cell(r.metrics) for r in runs], False))
        rows.append(("final training accuracy", [
            f"{100 * r.metrics.epoch_train_accuracy[-1]:.2f}%" if r.metrics.epoch_train_accuracy else "-" for r in runs],
            False))
    best = [r.best_validation for r in runs]
    rows.append(("best validation accuracy", [f"{100 * b[0]:.2f}% (step {b[1]})" if b else "-" for b in best], False))
    benchmarks: list[str] = []
    for r in runs:
        benchmarks += [k for k in r.reports if k not in benchmarks]
    for bench in benchmarks:
        cells = []
        for r in runs:
            rep = r.reports.get(bench)
            cells.append(f"{100 * rep['accuracy']:.2f}% +- {100 * rep['std']:.2f}" if rep else "-")
        rows.append((bench, cells, False))
    return Comparison(runs, differing, rows)


def _saturation_cell(m: Metrics) -> str:
    p, share = m.last("target_prob"), m.last("saturated")
    return "-" if p is None or share is None else f"{p:.3f} ({100 * share:.0f}%)"


def plot_curves(series: Sequence[tuple[str, Metrics]], path: str | Path, *, title: str = "Training curves") -> Path:
    """Two panels: training loss and validation accuracy against step, one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from facever.core.atomic import atomic_path

    path = Path(path)
    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    loss_ax, val_ax = fig.subplots(1, 2)
    for label, m in series:
        if m.train_steps:
            # Markers when there are few points (short runs), so a single logging window still shows.
            loss_ax.plot(m.train_steps, m.train_loss, label=label, linewidth=1.3,
                         marker="o" if len(m.train_steps) < 30 else None, markersize=3)
        if m.val_steps:
            val_ax.plot(m.val_steps, [100 * a for a in m.val_accuracy], marker="o", markersize=3, label=label,
                        linewidth=1.3)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title("loss")
    val_ax.set_xlabel("step")
    val_ax.set_ylabel("validation accuracy (%)")
    val_ax.set_title("validation accuracy")
    for ax in (loss_ax, val_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not any(m.val_steps for _, m in series):
        val_ax.text(0.5, 0.5, "no validation in these runs", ha="center", va="center", transform=val_ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    from facever.core.atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_instrument(series: Sequence[tuple[str, Metrics]], name: str, path: str | Path) -> Path | None:
    """One instrument (settings.TRAINING_INSTRUMENTS) against step, one coloured line per run (a run's
    colour is the same in every plot); `train_accuracy` is each epoch's training accuracy (solid) beside
    the validation accuracy (dashed). None when no run logged it."""
    if name == "train_accuracy":
        if not any(m.epoch_steps or m.val_steps for _, m in series):
            return None
    elif not any(name in m.instruments for _, m in series):
        return None
    fig = _figure()
    ax = fig.subplots()
    for index, (label, m) in enumerate(series):
        colour = f"C{index % 10}"
        if name == "train_accuracy":
            if m.epoch_steps:
                ax.plot(m.epoch_steps, [100 * a for a in m.epoch_train_accuracy], color=colour, marker="o", markersize=3,
                        linewidth=1.3, label=f"{label} training")
            if m.val_steps:
                ax.plot(m.val_steps, [100 * a for a in m.val_accuracy], color=colour, marker="s", markersize=3,
                        linewidth=1.3, linestyle="--", label=f"{label} validation")
        elif name in m.instruments:
            steps, values = m.instruments[name]
            ax.plot(steps, values, color=colour, linewidth=1.3, label=label,
                    marker="o" if len(steps) < 30 else None, markersize=3)
    title, axis = INSTRUMENT_LABELS[name]
    ax.set_xlabel("step")
    ax.set_ylabel(axis)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, Path(path))


def write_comparison(comparison: Comparison, out_dir: str | Path) -> dict[str, Any]:
    """OUT/compare.md (table), OUT/compare.json (everything), OUT/compare.png (loss and validation
    curves) and OUT/curves/NAME.png, one per training instrument any run logged (key `curves`)."""
    from facever.core.atomic import write_text_atomic
    from facever.verification.report import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "compare.md"
    write_text_atomic(md, comparison.to_markdown())
    js = write_json(out_dir / "compare.json", comparison.to_dict())
    series = [(r.name, r.metrics) for r in comparison.runs]
    png = plot_curves(series, out_dir / "compare.png", title="Runs compared: " + ", ".join(r.name for r in comparison.runs))
    curves = {}
    for name in TRAINING_INSTRUMENTS:
        written = plot_instrument(series, name, out_dir / "curves" / f"{name}.png")
        if written is not None:
            curves[name] = written
    return {"table": md, "json": js, "plot": png, "curves": curves}

"""Result files a user keeps (`report.json`, `roc.png`) and the tables the CLI prints, as rows of text cells."""

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


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *, title: str = "ROC",
             min_fpr: float = 1e-4) -> Path:
    """One ROC plot (TPR against FPR on a log axis from `min_fpr`, where face verification lives) with every curve."""
    fig = _new_figure()
    ax = fig.add_subplot()
    for label, fpr, tpr in curves:
        fpr = np.asarray(fpr)
        positive = fpr > 0
        ax.plot(fpr[positive], np.asarray(tpr)[positive], label=label, linewidth=1.5)
    ax.set_xscale("log")
    ax.set_xlim(min_fpr, 1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate (FPR)")
    ax.set_ylabel("true accept rate (TPR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)  # fixed: tight_layout draws twice
    return _save(fig, path)


# The normal-deviate (probit) axis of DET plots: ticks at these error rates, labelled in percent.
_DET_TICKS = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95)


def probit(p) -> np.ndarray:
    """The standard normal quantile of each probability (the DET plot's axis transform), from the standard
    library's NormalDist; 0 and 1 give -inf and +inf."""
    from statistics import NormalDist

    inv = NormalDist().inv_cdf
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    out[p <= 0] = -np.inf
    out[p >= 1] = np.inf
    inside = (p > 0) & (p < 1)
    out[inside] = [inv(v) for v in p[inside]]
    return out


def _new_figure(height: float = 5.0):
    # A bare Figure with the Agg canvas: no pyplot (slow to import, keeps global state, wants a display).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def det_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str = "DET", min_rate: float = 1e-4):
    """The DET plot (false reject rate against false accept rate, both on normal-deviate axes, as NIST and
    the field's papers draw it) of ROC curves `(label, fpr, tpr)`; the points are `roc.det_curve`'s.
    Points where either rate is 0 or 1 lie at infinity on these axes and are left out."""
    from facever.verification.roc import det_curve

    fig = _new_figure()
    ax = fig.add_subplot()
    for label, fpr, tpr in curves:
        far, frr = det_curve(fpr, tpr)
        keep = (far > 0) & (far < 1) & (frr > 0) & (frr < 1)
        ax.plot(probit(far[keep]), probit(frr[keep]), label=label, linewidth=1.5)
    ticks = [t for t in _DET_TICKS if t >= min_rate]
    positions = probit(ticks)
    names = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(positions, names)
    ax.set_yticks(positions, names)
    lo, hi = probit([min_rate, 0.95])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("false accept rate (%)")
    ax.set_ylabel("false reject rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)
    return fig


def histogram_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]], *, metric: str = "cosine",
                     title: str = "scores", bins: int = 60):
    """Score histograms, same-person pairs against different-person pairs, one panel per
    `(label, scores, labels, threshold)` (the threshold, when given, drawn as a line). Both classes share
    the bins and are drawn as densities, so classes of unequal size compare."""
    height = 1.0 + 2.2 * len(panels) if len(panels) > 1 else 5.0
    fig = _new_figure(height=height)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (label, scores, same, threshold) in zip(axes, panels):
        scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
        edges = np.histogram_bin_edges(scores, bins=bins)
        for mask, name in ((same, "same person"), (~same, "different people")):
            if mask.any():
                ax.hist(scores[mask], bins=edges, density=True, histtype="stepfilled", alpha=0.45,
                        label=f"{name} ({int(mask.sum()):,})")
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", linewidth=1, linestyle="--", label=f"threshold {threshold:.3f}")
        ax.set_ylabel("density")
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left" if metric == "cosine" else "upper right", fontsize=8)
    axes[-1].set_xlabel({"cosine": "cosine similarity", "l2": "squared L2 distance",
                         "arccos": "arccos(cosine) / pi"}.get(metric, "score"))
    fig.suptitle(title)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.55 / height, top=1 - 0.55 / height, hspace=0.5)
    return fig


def curve_label(name: str, result) -> str:
    """The legend of one ROC curve: the name, the k-fold accuracy when the protocol has folds, the AUC."""
    acc = getattr(result, "accuracy_mean", None)
    return f"{name} (" + (f"acc {100 * acc:.2f}%, " if acc is not None else "") + f"AUC {result.auc:.4f})"


def _curve(name: str, result) -> tuple[str, np.ndarray, np.ndarray]:
    fpr, tpr = np.asarray(result.fpr), np.asarray(result.tpr)
    if fpr.size > 50_000:  # IJB's millions of pairs: a few thousand points draw the same step curve
        from facever.verification.ijb import thin_roc

        fpr, tpr = thin_roc(fpr, tpr, points=2000)
    return curve_label(name, result), fpr, tpr


def _panel(name: str, result) -> tuple[str, np.ndarray, np.ndarray, float | None]:
    """A histogram panel of one result: its pairs' scores and labels, and its mean fold threshold."""
    kfold = getattr(result, "kfold", None)
    threshold = float(np.mean(kfold.thresholds)) if kfold is not None and np.size(kfold.thresholds) else None
    return name, result.scores, result.labels, threshold


def _write_report_files(out_dir: str | Path, data: dict, curves, panels, *, title: str, min_fpr: float,
                        metric: str = "cosine") -> dict[str, Path]:
    """report.json, roc.png, det.png and scores.png (the score histograms) in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = write_json(out_dir / "report.json", data)
    roc_png = plot_roc(curves, out_dir / "roc.png", title=title, min_fpr=min_fpr)
    subject = title[:-4] if title.endswith(" ROC") else title.replace(" ROC:", ":")
    det_png = _save(det_figure(curves, title=f"{subject} DET", min_rate=min_fpr), out_dir / "det.png")
    written = {"report": report, "roc": roc_png, "det": det_png}
    if all(p[1] is not None for p in panels):
        written["scores"] = _save(histogram_figure(panels, metric=metric, title=f"{subject} scores"),
                                  out_dir / "scores.png")
    return written


def write_report(out_dir: str | Path, result, *, extra: dict | None = None, label: str | None = None) -> dict[str, Path]:
    """Write `report.json`, `roc.png`, `det.png` and `scores.png` (same-person against different-person
    score histograms) for one `VerificationResult` into `out_dir`; returns their paths by kind."""
    data = result.to_dict()
    if extra:
        data.update(extra)
    name, fpr, tpr = _curve(result.protocol, result)
    return _write_report_files(out_dir, data, [(label or name, fpr, tpr)], [_panel(label or name, result)],
                               title=f"{result.protocol.upper()} ROC", min_fpr=1e-4,
                               metric=result.settings.get("metric", "cosine"))


def write_ensemble_report(out_dir: str | Path, result, *, title: str | None = None, extra: dict | None = None,
                          min_fpr: float = 1e-4) -> dict[str, Path]:
    """Write an ensemble's `report.json` (`result.to_dict()`, plus `extra`) and `roc.png` (one curve per
    model and one for the ensemble) into `out_dir`; returns their paths (`report`, `roc`).

    `result` is an `EnsembleResult` (or IJB's): anything with `to_dict()` and `results()` giving
    `(name, result)` per model and then `("ensemble", result)`. The one writer of `facever ensemble`,
    the demo and reproduce.
    """
    data = result.to_dict()
    if extra:
        data.update(extra)
    rows = result.results()
    title = title or f"{rows[-1][1].protocol.upper()} ROC: models and ensemble"
    return _write_report_files(out_dir, data, [_curve(name, res) for name, res in rows],
                               [_panel(name, res) for name, res in rows], title=title, min_fpr=min_fpr,
                               metric=getattr(rows[-1][1], "settings", {}).get("metric", "cosine"))


# A table is `(columns, rows)`: column names and rows of text cells. The CLI draws it on a terminal and
# writes it tab-separated into a pipe (`facever.cli._console.print_table`, the one table writer).
Table = tuple[list[str], list[list[str]]]


def fold_table(result) -> Table:
    """The per-fold table of a `VerificationResult`: fold, pairs, threshold, accuracy."""
    kf = result.kfold
    unit = {"cosine": "cosine", "l2": "sq. L2", "arccos": "arccos/pi"}.get(result.settings.get("metric") or "cosine", "score")
    rows = [[str(int(f) + 1), str(int(s)), f"{t:.6f}", f"{100 * a:.2f}%"]
            for f, s, t, a in zip(kf.fold_ids, kf.sizes, kf.thresholds, kf.accuracies)]
    return ["fold", "pairs", f"threshold ({unit})", "accuracy"], rows


def summary_table(result) -> Table:
    """The summary under the fold table: one row per measure (accuracy over the folds, AUC, EER, TAR at
    each FAR, facenet's VAL@FAR, dropped pairs)."""
    kf = result.kfold
    rows = [["accuracy", f"{100 * kf.mean:.2f}% +- {100 * kf.std:.2f} (std over {kf.accuracies.size} folds; "
                         f"stderr {100 * kf.stderr:.2f})"],
            ["AUC", f"{result.auc:.4f}"], ["EER", f"{100 * result.eer:.2f}%"]]
    rows += [[f"TAR@FAR={float(k):g}", f"{100 * v:.2f}%"] for k, v in result.tar_at_far.items()]
    v = result.val_at_far
    rows.append(["VAL@FAR", f"{100 * v['val_mean']:.2f}% +- {100 * v['val_std']:.2f} @ FAR {100 * v['far_mean']:.3f}% "
                            "(facenet's definition)"])
    if result.dropped_pairs:
        rows.append(["dropped", f"{result.dropped_pairs} pairs with missing images"])
    return ["measure", "value"], rows


def peer_lines(result) -> list[str]:
    """With a peer's convention (`evaluate_protocol(convention=...)`): the lines its script prints, as it
    prints them (tabs kept), under a line naming the script; nothing otherwise. Not a table: verbatim."""
    peer = getattr(result, "peer", None)
    if not peer:
        return []
    conv = result.settings.get("convention", {})
    return [f"as {conv.get('name', 'the peer')}'s script prints it ({conv.get('script', '')}):",
            *("  " + line for line in peer["lines"])]


def comparison_table(result) -> Table:
    """An ensemble's table (`EnsembleResult`): one row per model and one for the ensemble, with accuracy
    mean +- std, AUC and TAR at each FAR of the report."""
    rows = result.results()
    fars = list(rows[0][1].tar_at_far)
    columns = ["model", "accuracy", "AUC", *(f"TAR@FAR={float(f):g}" for f in fars)]
    return columns, [[name, f"{100 * res.kfold.mean:.2f}% +- {100 * res.kfold.std:.2f}", f"{res.auc:.4f}",
                      *(f"{100 * res.tar_at_far[f]:.2f}%" for f in fars)] for name, res in rows]


#: Under IJB's 1:1 table: what its two TAR@FAR rows per model mean.
IJB_TAR_NOTE = ("insightface: the ROC point whose FAR is nearest the target; conservative: the best TAR at "
                "FAR <= target")
#: Under IJB's 1:N table, when it has insightface's row.
IJB_SEARCH_NOTE = ("1:N row insightface: ijb_1n.py's numbers, galleries joined: top-k and TPR at its \"FAR\", "
                   "not NIST's rank and FPIR")


def ijb_table(results, *, names=None) -> Table:
    """IJB 1:1 results: two rows per result (TAR@FAR by both definitions, see `IJB_TAR_NOTE`). `names`: a
    row label per result instead of its test mode (ensembles: the model names)."""
    fars = list(results[0].tar_at_far["insightface"])
    labels = list(names) if names is not None else [r.mode.label for r in results]
    columns = ["mode" if names is None else "model", "AUC", "TAR@FAR by", *(f"FAR={f}" for f in fars)]
    rows = [[label, f"{res.auc:.4f}", definition, *(f"{100 * res.tar_at_far[definition][f]['tar']:.2f}%" for f in fars)]
            for res, label in zip(results, labels) for definition in ("insightface", "conservative")]
    return columns, rows


def ijb_search_table(search, *, mode_label: str) -> Table:
    """IJB 1:N search: one row per gallery, their average (CMC ranks, TPIR@FPIR, probe counts) and, when
    `search` holds it (`(per_gallery, average, insightface)`), insightface's ijb_1n.py row."""
    per_gallery, average, *peer = search
    first = per_gallery[0]
    ranks, fpirs = list(first.cmc), list(first.tpir_at_fpir)
    columns = [f"1:N ({mode_label})", *(f"rank-{k}" for k in ranks), *(f"TPIR@{f}" for f in fpirs), "mated probes",
               "non-mated probes"]
    rows = [[r.gallery, *(f"{100 * r.cmc[k]:.2f}%" for k in ranks),
             *(f"{100 * r.tpir_at_fpir[f]['tpir']:.2f}%" for f in fpirs), str(r.mated_probes), str(r.non_mated_probes)]
            for r in per_gallery]
    rows.append(["average", *(f"{100 * average['cmc'][f'rank{k}']:.2f}%" for k in ranks),
                 *(f"{100 * average['tpir_at_fpir'][f]['tpir']:.2f}%" for f in fpirs), "", ""])
    if peer and peer[0] is not None:
        ins = peer[0]
        rows.append(["insightface", *(f"{100 * ins[f'top{k}']:.2f}%" for k in ranks),
                     *(f"{100 * v['tpr']:.2f}%" for v in ins["tpr_at_far"].values()), str(ins["probes"]), ""])
    return columns, rows


def ijb_tables(results, search=None, *, names=None) -> list[Table]:
    """The 1:1 table and, given a search, the 1:N table of IJB results."""
    tables = [ijb_table(results, names=names)]
    if search is not None:
        tables.append(ijb_search_table(search, mode_label=results[0].mode.label))
    return tables


def ijb_note(search=None) -> str:
    """The lines under IJB's tables: what the TAR@FAR rows mean, and insightface's 1:N row when present."""
    has_peer = search is not None and len(search) > 2 and search[2] is not None
    return IJB_TAR_NOTE + ("; " + IJB_SEARCH_NOTE if has_peer else "")


def write_ijb_report(out_dir: str | Path, results, *, t1, t2, search=None, extra: dict | None = None) -> dict[str, Path]:
    """IJB outputs in `out_dir`: `report.json` (the first test mode's result at the top level, every mode
    under `modes`, 1:N under `one_to_n`), `scores.npz` (`template_1`, `template_2`, `labels`, and
    `scores_F1N0D0` ... one float32 array per mode, in pair-file order), `roc.png` and `det.png` (a curve per
    mode) and `scores.png` (same against different template pairs' score histograms, a panel per mode)."""
    from facever.verification.ijb import thin_roc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = write_json(out_dir / "report.json", ijb_report_data(results, search=search, extra=extra))
    arrays = {"template_1": np.asarray(t1), "template_2": np.asarray(t2), "labels": results[0].labels}
    arrays.update({f"scores_{r.mode.key}": r.scores for r in results})
    with atomic_path(out_dir / "scores.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    curves = []
    for r in results:
        fpr, tpr = thin_roc(r.fpr, r.tpr, points=2000)
        tar = r.tar_at_far["conservative"].get("0.0001", {}).get("tar")
        label = f"{r.mode.label} (AUC {r.auc:.4f}" + (f", TAR@1e-4 {100 * tar:.2f}%)" if tar is not None else ")")
        curves.append((label, fpr, tpr))
    name = f"{results[0].protocol.upper()} 1:1"
    roc = plot_roc(curves, out_dir / "roc.png", title=f"{name} ROC", min_fpr=1e-6)
    det = _save(det_figure(curves, title=f"{name} DET", min_rate=1e-6), out_dir / "det.png")
    hist = _save(histogram_figure([(r.mode.label, r.scores, r.labels, None) for r in results], title=f"{name} scores"),
                 out_dir / "scores.png")
    return {"report": report, "scores": out_dir / "scores.npz", "roc": roc, "det": det, "histogram": hist}


def ijb_report_data(results, *, search=None, extra: dict | None = None) -> dict:
    """report.json of `facever eval-ijb`: the first test mode's result at the top level (eval-lfw's key
    style), every mode's AUC and TAR@FAR under `modes`, and 1:N under `one_to_n`."""
    data = results[0].to_dict()
    data["modes"] = {r.mode.key: {"test_mode": r.mode.label, "auc": r.auc, "tar_at_far": r.tar_at_far}
                     for r in results}
    if search is not None:
        per_gallery, average, *peer = search
        data["one_to_n"] = {"test_mode": results[0].mode.label, "galleries": [r.to_dict() for r in per_gallery],
                            "average": average}
        if peer and peer[0] is not None:
            data["one_to_n"]["insightface"] = peer[0]
    if extra:
        data["settings"].update(extra)
    return data

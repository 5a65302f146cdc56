"""How a folder of crops was aligned, written next to them, so models and embeddings can be checked against it.

`facever align` writes `DST/alignment.json` (atomically); `facever train` copies the training folder's
record into `model.pt` (`crops`: input size, crop policy, alignment when known); `facever embed`
compares an image folder's record with the model's and warns when they differ (`alignment_difference`).

    {"format": "facever-alignment", "format_version": 1, "size": [h, w],
     "template": "sphereface-96x112, scaled to fit and centred", "template_points": [[x, y] x 5],
     "detector": "MTCNN (facenet-pytorch)", "select": ..., "min_face": ..., ...}

Two alignments are compared where the model sees them: each record's template points are carried
through the crop policy (`fit_to_input`: centre crop to the model's aspect ratio, then resize) to the
model's input size; landmarks landing more than `TOLERANCE` of the crop's width apart mean the model
sees faces placed differently from its training crops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facever.core.atomic import write_text_atomic
from facever.core.errors import FaceverError
from facever.core.json_files import read_json_file
from facever.data_prep.templates import template_for_size

RECORD_NAME = "alignment.json"
FORMAT = "facever-alignment"
TEMPLATE_NAME = "sphereface-96x112, scaled to fit and centred"
# Landmarks further apart than this fraction of the crop width count as another alignment (2% of 96 px: ~2 px).
TOLERANCE = 0.02


def alignment_record(size: Sequence[int], **settings: Any) -> dict[str, Any]:
    """The record of crops of `size = (h, w)` on facever's template (plus the aligner's `settings`)."""
    h, w = int(size[0]), int(size[1])
    return {
        "format": FORMAT,
        "format_version": 1,
        "size": [h, w],
        "template": TEMPLATE_NAME,
        "template_points": np.round(template_for_size((h, w)), 4).tolist(),
        "detector": "MTCNN (facenet-pytorch)",
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
    }


def write_alignment_record(folder: str | Path, record: Mapping[str, Any]) -> Path:
    path = Path(folder) / RECORD_NAME
    write_text_atomic(path, json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    return path


def read_alignment_record(folder: str | Path) -> dict[str, Any] | None:
    """The record of an image folder (its own `alignment.json`, else its parent's), or None when unknown.

    An unreadable or foreign file counts as unknown: the record only ever adds a warning.
    """
    folder = Path(folder)
    for candidate in (folder / RECORD_NAME, folder.parent / RECORD_NAME):
        if candidate.is_file():
            try:
                record = read_json_file(candidate)
            except FaceverError:  # unreadable, not JSON, nested too deeply: no record (it only adds a warning)
                return None
            if isinstance(record, dict) and record.get("format") == FORMAT and _points(record) is not None:
                return record
            return None
    return None


def _points(record: Mapping[str, Any]) -> np.ndarray | None:
    try:
        points = np.asarray(record["template_points"], dtype=np.float64)
        size = [int(v) for v in record["size"]]
    except (KeyError, TypeError, ValueError):
        return None
    if points.shape != (5, 2) or len(size) != 2 or min(size) < 1:
        return None
    return points


def fitted_points(points: np.ndarray, src_size: Sequence[int], dst_size: Sequence[int]) -> np.ndarray:
    """Where `points` (x, y) of an `src_size` crop land after `fit_to_input` to `dst_size` (both (h, w))."""
    sh, sw = int(src_size[0]), int(src_size[1])
    h, w = int(dst_size[0]), int(dst_size[1])
    x0 = y0 = 0.0
    ch, cw = sh, sw
    if sw * h > w * sh:  # too wide: columns cut (same integer rule as fit_to_input)
        cw = int(round(sh * w / h))
        x0 = (sw - cw) // 2
    elif sw * h < w * sh:
        ch = int(round(sw * h / w))
        y0 = (sh - ch) // 2
    out = np.asarray(points, dtype=np.float64).copy()
    out[:, 0] = (out[:, 0] - x0) * w / cw
    out[:, 1] = (out[:, 1] - y0) * h / ch
    return out


def alignment_difference(images: Mapping[str, Any] | None, model_alignment: Mapping[str, Any] | None,
                         input_size: Sequence[int]) -> str | None:
    """A sentence saying how an image set's alignment differs from the one a model was trained on, or None
    (same within `TOLERANCE`, or either one unknown)."""
    if not images or not model_alignment:
        return None
    a, b = _points(images), _points(model_alignment)
    if a is None or b is None:
        return None
    pa = fitted_points(a, images["size"], input_size)
    pb = fitted_points(b, model_alignment["size"], input_size)
    gap = float(np.max(np.linalg.norm(pa - pb, axis=1)))
    h, w = int(input_size[0]), int(input_size[1])
    if gap <= TOLERANCE * w:
        return None
    ih, iw = images["size"]
    mh, mw = model_alignment["size"]
    return (f"the images were aligned as {ih}x{iw} crops ({images.get('template', 'unknown template')}), the model "
            f"was trained on {mh}x{mw} crops ({model_alignment.get('template', 'unknown template')}): fitted to its "
            f"{h}x{w} input, landmarks land up to {gap:.1f} px from where training put them, which costs accuracy; "
            f"align the images as the training crops were ({mh}x{mw})")

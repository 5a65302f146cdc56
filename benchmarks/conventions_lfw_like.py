#!/usr/bin/env python
"""How far apart the conventions' numbers are on a typical set (docs/conventions.md quotes this).

LFW's real pairs file (6000 pairs, 10 folds; ../shared/data/protocols/lfw_pairs.txt, or --pairs) with
synthetic embeddings: each person a random 128-d direction, each image f(x) = 10 (person + noise), its
mirror f(mirror x) = f(x) + a smaller noise, unnormalised as a network outputs them; the noise level
gives LFW accuracies of a weak and a strong model. Every convention scores the same file (flip concat),
and the old VAL@FAR rule (runs of equal FARs collapsed to their smallest threshold, then np.interp) is
shown beside the new one for the facever convention. Accuracy figures do not depend on the machine.

    python benchmarks/conventions_lfw_like.py [--pairs lfw_pairs.txt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.settings import CONVENTIONS
from facever.protocols.lfw import read_lfw_pairs
from facever.verification.evaluate import evaluate_protocol, score_protocol
from facever.verification.tenfold import FACENET_VAL_GRID


def old_val(distances, labels, folds, far_target=1e-3):
    """facever's VAL@FAR before: each run of equal training FARs collapsed to its smallest threshold."""
    vals = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        neg = np.sort(distances[train & ~labels])
        far_train = np.searchsorted(neg, FACENET_VAL_GRID, side="left") / neg.size
        if far_train.max() >= far_target:
            levels, first = np.unique(far_train, return_index=True)
            threshold = float(np.interp(far_target, levels, FACENET_VAL_GRID[first]))
        else:
            threshold = 0.0
        y = labels[test]
        vals.append(np.sum((distances[test] < threshold) & y) / y.sum())
    return float(np.mean(vals))


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "protocols" / "lfw_pairs.txt"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=default)
    args = parser.parse_args()
    protocol = read_lfw_pairs(args.pairs)
    items = protocol.items()
    people = sorted({p.split("/")[0] for p in items})
    print(f"{len(protocol)} pairs of {args.pairs.name}, {len(items)} images of {len(people)} people; synthetic 128-d")
    print(f"{'noise':>5}  {'convention':<11}  {'accuracy':>9}  {'VAL@1e-3':>9}  {'VAL old rule':>12}  printed by the script")
    for noise in (1.6, 1.1):
        rng = np.random.default_rng(0)
        centers = {p: rng.normal(size=128) for p in people}
        f = np.array([centers[p.split("/")[0]] + noise * rng.normal(size=128) for p in items]) * 10
        g = f + 0.3 * noise * 10 * rng.normal(size=f.shape)
        emb = Embeddings(items, np.concatenate([f, g], axis=1).astype(np.float32), metadata={"flip": "concat"})
        for name in CONVENTIONS:
            r = evaluate_protocol(protocol, emb, convention=name)
            old = ""
            if name == "facever":
                s = score_protocol(protocol, emb)
                old = f"{100 * old_val(s.l2_out_of_fold, s.labels, s.folds):.2f}%"
            printed = " | ".join(r.peer["lines"][-4:] if r.peer and name != "sphereface" else
                                 (r.peer["lines"][-1:] if r.peer else []))
            print(f"{noise:>5}  {name:<11}  {100 * r.accuracy_mean:>8.2f}%  {100 * r.val_at_far['val_mean']:>8.2f}%  "
                  f"{old:>12}  {printed}")


if __name__ == "__main__":
    main()

"""Every sentence of the docs, the README or a command's help that says facever's number is a peer's
("equal to", "identical", "same as", "exactly", "reproduces", "as X computes it", "the way X does") is
listed below with the test that proves it against a transcription of that peer's code. A new claim
without a test fails here; so does an entry whose sentence is gone or whose test does not exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CLAIM = re.compile(
    r"\bequal to\b|\bequals\b|\bequal (?:a|an|the|its)\b|\bidentical\b|\bsame as\b|\bexactly\b|\breproduc\w*|\bwould print\b|"
    r"\bas (?:[\w'`./-]+ ){0,4}(?:computes?|computed|does|do|did|evaluates?|prints?|printed|reports?|scores?|"
    r"defines?|gives?)\b|\bthe way (?:[\w'`./-]+ ){0,5}(?:does|do|did)\b", re.I)
PEER = re.compile(r"facenet|insightface|sphereface|arcface|scikit|sklearn|scipy|\bnist\b|matlab|deepface|"
                  r"davidsandberg|caffe|the scripts?\b|peer", re.I)

# (file, a phrase of the sentence, the test that proves it: "tests/FILE.py::test_name")
CLAIMS = [
    ("docs/conventions.md", "the number that script would print", "tests/test_peer_numbers.py::test_facenet_convention_prints_validate_on_lfw_numbers"),
    ("docs/conventions.md", "`-1:1e-4:1`, the mean of every best threshold", "tests/test_peer_numbers.py::test_sphereface_convention_prints_evaluation_m_numbers"),
    ("docs/conventions.md", "What each prints, and facever reproduces", "tests/test_peer_numbers.py::test_insightface_convention_prints_verification_py_numbers"),
    ("docs/conventions.md", "VAL@FAR as the scripts computed it", "tests/test_peer_numbers.py::test_val_at_far_equals_facenet_calculate_val_under_scipy_1_8"),
    ("docs/conventions.md", "the SciPy the scripts were written for", "tests/test_peer_numbers.py::test_scipy18_slinear_equals_scipy_1_8_on_repeated_x"),
    ("docs/conventions.md", "facever reproduces it", "tests/test_peer_numbers.py::test_scipy18_slinear_hand_cases"),
    ("docs/conventions.md", "the scripts use threshold 0 (VAL 0)", "tests/test_peer_numbers.py::test_val_at_far_against_the_transcription_small_sets_and_levels"),
    ("docs/conventions.md", "facenet's script prints VAL 37.01%", "tests/test_peer_numbers.py::test_val_at_far_equals_facenet_calculate_val_under_scipy_1_8"),
    ("README.md", "the number that peer's evaluation script would print", "tests/test_cli_eval_lfw.py::test_eval_lfw_and_ensemble_convention"),
    ("facever/cli/_options.py", "SphereFace's evaluation script would print on these embeddings", "tests/test_peer_numbers.py::test_sphereface_convention_prints_evaluation_m_numbers"),
    ("docs/development.md", "scikit-learn's ROC and facenet's own loop", "tests/test_verification.py::test_roc_matches_sklearn"),
    ("docs/embed.md", "exactly what facenet-pytorch gives", "tests/test_embed.py::test_facenet_weights_load_and_match_facenet_pytorch"),
    ("docs/models.md", "as arcface_torch's own model gives it", "tests/test_model_io.py::test_arcface_torch_state_dict_embeds_like_arcface_torch"),
    ("docs/eval-bin.md", "as insightface evaluates them", "tests/test_peer_numbers.py::test_kfold_blocks_are_sklearns_kfold"),
    ("docs/eval-lfw.md", "computed as facenet does", "tests/test_verification.py::test_grid_mode_reproduces_facenet_loop"),
    ("docs/eval-lfw.md", "reproduced exactly on the given distances", "tests/test_verification.py::test_grid_mode_reproduces_facenet_loop"),
    ("docs/eval-lfw.md", "the whole number their scripts print", "tests/test_peer_numbers.py::test_insightface_convention_prints_verification_py_numbers"),
    ("docs/eval-lfw.md", "the number that peer's evaluation script prints", "tests/test_peer_numbers.py::test_facenet_convention_prints_validate_on_lfw_numbers"),
    ("docs/ijb.md", "the way InsightFace's evaluation scripts do", "tests/test_ijb.py::test_evaluate_ijb_equals_the_reference_computation"),
    ("docs/ijb.md", "the TAR insightface's `ijb_11.py`", "tests/test_peer_numbers.py::test_ijb_insightface_tar_at_far_is_the_scripts_number"),
    ("docs/ijb.md", "also the script's own, under `one_to_n.insightface`", "tests/test_peer_numbers.py::test_ijb_insightface_one_to_n_is_ijb_1n_numbers"),
    ("docs/train.md", "as SphereFace's layer does", "tests/test_margin_heads.py::test_sphereface_forward_is_the_caffe_layers_step_after_step"),
    ("docs/train.md", "Its logits equal a transcription of the Caffe", "tests/test_margin_heads.py::test_sphereface_forward_is_the_caffe_layers_step_after_step"),
    ("docs/train.md", "transcription of clcarwin/sphereface_pytorch", "tests/test_margin_heads.py::test_sphereface_equals_clcarwins_pytorch_transcription_values_and_gradients"),
    ("docs/train.md", "equal a transcription of insightface's", "tests/test_margin_heads.py::test_arcface_and_cosface_as_insightface_computes_them"),
    ("docs/ijb.md", "where the script prints 38.58%", "tests/test_peer_numbers.py::test_ijb_insightface_rule_takes_the_top_of_the_far0_step"),
]

# Sentences the patterns find that claim no peer's number, and why.
NOT_CLAIMS = [
    ("docs/embed.md", "else exactly as for the pretrained names", "where weights are looked up, not a peer's number"),
    ("facever/cli/eval_bin.py", "exactly the 96x112 alignment", "crop geometry (tests/test_bin.py), not a peer's number"),
    ("docs/eval-bin.md", "which is exactly the 96x112 alignment", "crop geometry (test_bin.py::test_arcface_crop_fitted_to_96_wide_cuts_8_columns_each_side)"),
    ("docs/embedding.md", "are exactly the 96x112 template", "crop geometry (test_alignment_record.py::test_arcface_crops_fitted_to_112x96_are_the_112x96_template)"),
]


def _units():
    """(file, sentence) of the README, docs/*.md (table rows apart) and the CLI's help strings."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rel = str(path.relative_to(ROOT))
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            lines = block.splitlines()
            if lines and all(line.lstrip().startswith("|") for line in lines):
                yield from ((rel, line) for line in lines)
            else:
                for item in re.split(r"\n(?=\s*[-*] |\s*\d+\. )", block):  # list items apart
                    text = " ".join(item.split())
                    yield from ((rel, s) for s in re.split(r"(?<=[.;:!?])\s+(?=[A-Z`(])", text))
    for path in sorted((ROOT / "facever" / "cli").glob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield from ((rel, s) for s in re.split(r"(?<=[.;:!?])\s+", " ".join(node.value.split())))


def _claims():
    return [(f, s) for f, s in _units() if CLAIM.search(s) and PEER.search(s)]


def _listed(entries, f, sentence):
    return [e for e in entries if e[0] == f and e[1] in sentence]


def test_every_claim_about_a_peer_has_its_test():
    unlisted = [f"{f}: {s}" for f, s in _claims() if not _listed(CLAIMS, f, s) and not _listed(NOT_CLAIMS, f, s)]
    assert not unlisted, ("a sentence says facever gives a peer's number; add it to CLAIMS with the test that "
                          "proves it (or to NOT_CLAIMS with why it is no such claim):\n" + "\n".join(unlisted))


def test_every_listed_claim_is_still_said_and_its_test_exists():
    units = list(_units())
    for f, phrase, proof in CLAIMS + [(f, p, None) for f, p, _ in NOT_CLAIMS]:
        assert any(uf == f and phrase in s for uf, s in units), f"{f}: no longer says {phrase!r}: remove the entry"
        if proof is None:
            continue
        test_file, name = proof.split("::")
        source = (ROOT / test_file).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{proof} does not exist"


@pytest.mark.parametrize("text, is_claim", [
    ("computed as facenet does, `sum((a-b)^2)`", True),
    ("the number insightface's script prints", False),  # no claim word: the pattern is about equality words
    ("VAL equal to facenet's", True),
    ("bitwise identical on the same machine", False),  # no peer named
])
def test_the_claim_patterns(text, is_claim):
    assert bool(CLAIM.search(text) and PEER.search(text)) == is_claim

"""`facever check` (workflows/check.py): the weighted AUC of the bootstrap against the ROC engine and brute
force, the template warp against the templates' own points, the decision rule on scores with a known
answer, and a model trained on BGR input but declaring RGB (model.pt and its ONNX export): check says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.workflows import check

runner = CliRunner()


def brute_auc(scores, labels, weights):
    """Mann-Whitney over every (genuine, impostor) couple, each couple weighted by the product of counts."""
    num = den = 0.0
    for i in np.flatnonzero(labels):
        for j in np.flatnonzero(~labels):
            w = weights[i] * weights[j]
            num += w * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
            den += w
    return num / den


def test_weighted_auc_equals_the_roc_engine_and_brute_force():
    from facever.verification import roc

    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=120), 1)  # ties within and across classes
    y = rng.uniform(size=120) < 0.4
    ones = np.ones((1, 120))
    assert check.weighted_aucs(s, y, ones)[0] == pytest.approx(roc.auc(*roc.roc_curve(s, y)[:2]), abs=1e-12)
    w = rng.integers(0, 4, size=(3, 120)).astype(float)
    got = check.weighted_aucs(s, y, w)
    for k in range(3):
        assert got[k] == pytest.approx(brute_auc(s, y, w[k]), abs=1e-12)


@pytest.mark.parametrize("size", [(112, 96), (112, 112)])
def test_retemplate_moves_the_face_to_the_other_templates_points(size):
    from facever.data_prep.templates import template_for_size

    h, w = size
    other = check.other_template_size(size)
    assert other == ((112, 112) if size == (112, 96) else (112, 96))
    crop = np.zeros((1, h, w, 3), np.uint8)
    for x, y in template_for_size(size):
        crop[0, int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    out = check.retemplate(crop, size, other)[0, :, :, 0].astype(float)
    # the other template's points, resized back from other (h x w') to (h x w): x scaled by w / w'
    for x, y in template_for_size(other):
        ex, ey = x * w / other[1], y
        y0, x0 = int(round(ey)), int(round(ex))
        window = out[y0 - 4:y0 + 5, x0 - 4:x0 + 5]
        dy, dx = np.unravel_index(np.argmax(window), window.shape)
        assert abs(y0 - 4 + dy - ey) <= 1.5 and abs(x0 - 4 + dx - ex) <= 1.5


def test_variants_skip_a_convention_within_two_percent_of_the_declared_one():
    class M:
        mean, std, color, input_size = (0.5,) * 3, (0.5,) * 3, "RGB", (112, 112)
        preprocessing = "insightface"

    keys = [v.key for v in check.variants(M(), "concat")]
    assert keys == ["declared", "channels", "norm:imagenet", "norm:unit", "norm:pixels", "template", "flip:none",
                    "flip:sum"]
    channels = next(v for v in check.variants(M(), "none") if v.key == "channels")
    assert channels.color == "BGR" and "expects BGR input" in channels.verdict


def test_decision_rule_needs_the_margin_and_a_bootstrap_above_zero():
    rng = np.random.default_rng(1)
    n = 400
    y = np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)]
    base = np.where(y, 0.3, 0.0) + rng.normal(0, 0.3, n)  # AUC about 0.76
    plan = [check.Variant("declared", "declared", "d", "RGB", (0.5,) * 3, (0.5,) * 3, "none"),
            check.Variant("better", "channels", "b", "BGR", (0.5,) * 3, (0.5,) * 3, "none", verdict="BGR"),
            check.Variant("noise", "channels", "n", "BGR", (0.5,) * 3, (0.5,) * 3, "none")]
    scores = {"declared": base, "better": np.where(y, 0.9, 0.0) + rng.normal(0, 0.3, n),
              "noise": base + rng.normal(0, 0.01, n)}
    res = {r.variant.key: r for r in check.compare_variants(scores, y, plan, bootstrap=300)}
    assert res["better"].clearly_better and res["better"].delta_low > 0
    assert not res["noise"].clearly_better and abs(res["noise"].delta) < check.MARGIN
    # a difference above the margin on a handful of pairs: the bootstrap crosses zero, not clearly better
    few = np.r_[0:6, n // 2:n // 2 + 6]
    wobbly = {"declared": base[few], "better": base[few] + rng.normal(0, 0.5, few.size), "noise": base[few]}
    r = {x.variant.key: x for x in check.compare_variants(wobbly, y[few], plan, bootstrap=300)}["better"]
    assert not r.clearly_better and r.delta_low < 0


@pytest.fixture(scope="module")
def test_people(tmp_path_factory):
    """20 people x 5 images whose identity is in the blue channel, and their pairs (5 folds x 30 + 30)."""
    from facever.protocols.pair_lists import make_identity_pairs
    from tests.helpers.tiny_models import blue_identity_images

    root = tmp_path_factory.mktemp("check")
    people = {}
    for i, images in enumerate(blue_identity_images(np.random.default_rng(11), 20, 5)):
        name = f"t{i:02d}"
        (root / "faces" / name).mkdir(parents=True)
        people[name] = []
        for j, img in enumerate(images):
            Image.fromarray(img).save(root / "faces" / name / f"{j}.png")
            people[name].append(f"{name}/{j}.png")
    (root / "pairs.txt").write_text(make_identity_pairs(people, folds=5, per_fold=30, seed=0).to_text())
    return {"faces": root / "faces", "pairs": root / "pairs.txt", "root": root}


@pytest.fixture(scope="module")
def bgr_model(test_people):
    """A tiny model trained on BGR input (declaring RGB) of other people than `test_people`."""
    from tests.helpers.tiny_models import train_bgr_model

    return {**test_people, "model": train_bgr_model(test_people["root"] / "model.pt")}


def _check(model, d, *extra):
    return runner.invoke(app, ["check", str(model), "--images", str(d["faces"]), "--pairs", str(d["pairs"]),
                               "--device", "cpu", "--amp", "off", "--flip", "none", *extra])


@pytest.mark.slow
def test_check_says_a_model_fed_the_wrong_channel_order_expects_bgr(bgr_model):
    result = _check(bgr_model["model"], bgr_model)
    assert result.exit_code == 0, result.output
    assert "this model looks like it expects BGR input (it declares RGB)" in result.stderr
    as_json = json.loads(_check(bgr_model["model"], bgr_model, "--json").stdout)
    rows = {v["variant"]: v for v in as_json["variants"]}
    assert rows["channels"]["clearly_better"] and rows["channels"]["delta_auc"] > 0.2
    assert [v for v, r in rows.items() if r["clearly_better"] and r["kind"] != "flip"] == ["channels"]


@pytest.mark.slow
def test_check_says_so_for_the_onnx_export_and_not_once_declared_bgr(bgr_model):
    pytest.importorskip("onnxruntime")
    onnx = bgr_model["root"] / "model.onnx"
    exported = runner.invoke(app, ["export", str(bgr_model["model"]), "--out", str(onnx)])
    assert exported.exit_code == 0, exported.output
    result = _check(onnx, bgr_model)
    assert result.exit_code == 0, result.output
    assert "this model looks like it expects BGR input (it declares RGB)" in result.stderr
    declared = _check(onnx, bgr_model, "--bgr", "--json")
    rows = {v["variant"]: v for v in json.loads(declared.stdout)["variants"]}
    assert not rows["channels"]["clearly_better"] and rows["channels"]["delta_auc"] < -0.2
    # no preprocessing mistake left (a flip mode may still help: that is a choice, not a mistake)
    assert not any(r["clearly_better"] for r in rows.values() if r["kind"] != "flip")


def test_check_refuses_missing_images_and_one_class_pairs(test_people, tmp_path):
    bgr_model = test_people
    from tests.helpers.benchmark_data import tiny_model

    model = tiny_model(tmp_path / "m.pt", input_size=(20, 16))
    missing = runner.invoke(app, ["check", str(model), "--images", str(tmp_path), "--pairs",
                                  str(bgr_model["pairs"]), "--device", "cpu"])
    assert missing.exit_code == 2 and "missing under" in missing.output
    same = tmp_path / "same.txt"
    same.write_text("# facever pairs: path_a path_b same fold\nt00/0.png\tt00/1.png\t1\t1\nt01/0.png\tt01/1.png\t1\t2\n")
    one = runner.invoke(app, ["check", str(model), "--images", str(bgr_model["faces"]), "--pairs", str(same),
                              "--device", "cpu"])
    assert one.exit_code == 2 and "same-person and different-person pairs" in one.output


@pytest.mark.slow  # an IResNet-18 at 112x112, 8 passes over 18 images: ~25 s on 2 cores
def test_check_scores_arcface_torch_weights_as_declared(tmp_path):
    """An arcface_torch state dict (random weights) through `arcface:r18`: the declared row's AUC is the AUC
    of cosines computed by hand with arcface_torch's preprocessing, (x/255 - 0.5) / 0.5 in RGB."""
    import torch

    from facever.models.arcface import ARCFACE_LAYERS, build_arcface_iresnet, facever_to_arcface_key
    from facever.verification import roc
    from tests.helpers.tiny_models import direct_forward, make_lfw_tree, make_pairs_file, read_rgb

    torch.manual_seed(0)
    net = build_arcface_iresnet("r18").eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape) + 0.5)
    weights = tmp_path / "backbone.pth"
    torch.save({facever_to_arcface_key(k, ARCFACE_LAYERS["r18"]): v for k, v in net.state_dict().items()}, weights)
    make_lfw_tree(tmp_path / "faces", size=(112, 112))
    pairs = make_pairs_file(tmp_path / "pairs.txt")
    result = runner.invoke(app, ["check", "arcface:r18", "--weights", str(weights), "--images", str(tmp_path / "faces"),
                                 "--pairs", str(pairs), "--ext", ".png", "--device", "cpu", "--amp", "off", "--flip", "none",
                                 "--json"])
    assert result.exit_code == 0, result.output
    rows = {v["variant"]: v for v in json.loads(result.stdout)["variants"]}
    assert "norm:insightface" not in rows and "norm:facenet" not in rows  # declared: insightface's convention
    from facever.protocols.lfw import read_lfw_pairs

    proto = read_lfw_pairs(pairs, ext=".png")
    items = proto.items()
    e = direct_forward(net, [read_rgb(tmp_path / "faces" / p) for p in items], (0.5,) * 3, (0.5,) * 3)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    idx = {p: i for i, p in enumerate(items)}
    cos = np.array([e[idx[a]] @ e[idx[b]] for a, b in zip(proto.first, proto.second)])
    assert rows["declared"]["auc"] == pytest.approx(roc.auc(*roc.roc_curve(cos, proto.labels)[:2]), abs=1e-9)


def test_check_aligns_raw_photos(faces_dir, tmp_path):
    """--align: real photos (bbt crops, 150x150) detected and aligned at the model's size before every variant."""
    from tests.helpers.benchmark_data import tiny_model

    people = {name: sorted((faces_dir / "bbt" / name).glob("*.png"))[:3] for name in ("amy", "howard", "penny")}
    lines = ["# facever pairs: path_a path_b same fold"]
    for name, photos in people.items():
        lines += [f"{name}/{photos[0].name}\t{name}/{photos[i].name}\t1\t{i}" for i in (1, 2)]
    names = list(people)
    lines += [f"{a}/{people[a][0].name}\t{b}/{people[b][1].name}\t0\t{1 + k % 2}"
              for k, (a, b) in enumerate(zip(names, names[1:] + names[:1]))]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    model = tiny_model(tmp_path / "m.pt", input_size=(112, 96))
    result = runner.invoke(app, ["check", str(model), "--images", str(faces_dir / "bbt"), "--pairs",
                                 str(tmp_path / "pairs.txt"), "--align", "--device", "cpu", "--amp", "off", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pairs"] == 9 and data["same"] == 6
    assert [v["variant"] for v in data["variants"]][:2] == ["declared", "channels"]

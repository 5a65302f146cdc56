"""The margin heads (SphereFace, CosFace, ArcFace), alone and with Noisy Softmax's noise: logits against
their formulas computed here by hand in float64, finite-difference gradients on both storages, and
transcriptions of the reference code the docstrings name (insightface's CombinedMarginLoss,
SphereFace's Caffe margin_inner_product layer, clcarwin/sphereface_pytorch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_MARGINS, DEFAULT_SPHEREFACE_LAMBDA, MARGIN_HEADS
from facever.training.heads import create_head, make_transform
from facever.training.sharded_head import ShardedClassifier

N, D, C = 8, 6, 5
CONSTANT_LAMBDA = (20.0, 0.0, 1.0, 5.0)  # lambda = max(5, 20) = 20 at every step


def _inputs(seed: int, dtype=torch.float64):
    """N embeddings and their labels (every class present)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    labels = torch.tensor([0, 3, 3, 4, 1, 2, 0, 4])
    return x, labels


def _away_from_targets(x, weight, labels, rows=(0, 1)):
    """Rows `rows` of x replaced by minus their class weight (plus a little): cos(theta_y) near -1."""
    x = x.clone()
    for i in rows:
        x[i] = -weight.detach()[labels[i]].to(x.dtype) * 2.0 + 0.05 * x[i]
    return x


# ------------------------------------------------------------------------------ the formulas by hand


def _cos_matrix(x, weight):
    x, w = x.detach().double().numpy(), weight.detach().double().numpy()
    return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T


def _target_by_hand(name, c, n, *, margin, lam=None, alpha=0.0, xi=None):
    """One target logit of head `name` at cos(theta_y) = c and magnitude n, by its paper's formula, then
    Noisy Softmax's noise on it: v - alpha |xi| (n - v)."""
    theta = math.acos(max(-1.0, min(1.0, c)))
    if name == "cosface":
        v = n * (c - margin)
    elif name == "arcface":
        # cos(theta + m) while theta + m < pi, else insightface's c - m sin(pi - m).
        v = n * (math.cos(theta + margin) if theta + margin < math.pi else c - margin * math.sin(math.pi - margin))
    elif name == "sphereface":
        m = int(margin)
        k = math.floor(m * theta / math.pi)
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        v = n * (lam * c + psi) / (1 + lam)
    else:
        v = n * c
    if xi is not None:
        v = v - alpha * abs(float(xi)) * (n - v)
    return v


def _magnitudes(x, scale):
    return np.full(x.shape[0], float(scale)) if scale else np.linalg.norm(x.detach().double().numpy(), axis=1)


def _by_hand(name, x, weight, labels, *, scale, margin, lam=None, alpha=0.0, xi=None):
    """Every head's training logits, row by row in float64: s cos(theta_j) for the other classes (||x||
    cos(theta_j) for SphereFace at scale 0), the target by `_target_by_hand`. (The class weights are
    unit vectors in every head here: cosine heads and SphereFace normalise them.)"""
    cos = _cos_matrix(x, weight)
    n = _magnitudes(x, scale)
    out = n[:, None] * cos
    for i, y in enumerate(labels.tolist()):
        out[i, y] = _target_by_hand(name, cos[i, y], n[i], margin=margin, lam=lam, alpha=alpha,
                                    xi=None if xi is None else xi[i])
    return out


CASES = [  # (head, cosine scale, margin)
    ("cosface", 16.0, 0.35), ("cosface", 4.0, 0.9), ("arcface", 16.0, 0.5), ("arcface", 8.0, 1.2),
    ("sphereface", 0.0, 4), ("sphereface", 0.0, 2), ("sphereface", 0.0, 3), ("sphereface", 0.0, 1), ("sphereface", 8.0, 4),
]


@pytest.mark.parametrize("noise", ["off", "batch", "sample"])
@pytest.mark.parametrize("name,scale,margin", CASES)
def test_training_logits_equal_the_formula_by_hand(name, scale, margin, noise):
    torch.manual_seed(1)
    options = dict(cosine_scale=scale, margin=margin, noise=noise, alpha2=0.3)
    if name == "sphereface":
        options["sphereface_lambda"] = CONSTANT_LAMBDA
    head = create_head(name, D, C, **options).double().train()
    x, labels = _inputs(2)
    x = _away_from_targets(x, head.weight, labels)
    torch.manual_seed(5)
    logits = head(x, labels)
    assert logits.dtype == torch.float64
    torch.manual_seed(5)
    xi = None if noise == "off" else (torch.randn((), dtype=torch.float64).repeat(N) if noise == "batch"
                                      else torch.randn(N, dtype=torch.float64))
    expected = _by_hand(name, x, head.weight, labels, scale=scale, margin=margin, lam=20.0, alpha=math.sqrt(0.3), xi=xi)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    if name == "arcface":  # the rows built to lie past pi - m really took the fallback branch
        cos = _cos_matrix(x, head.weight)[[0, 1], labels[:2].numpy()]
        assert (cos < math.cos(math.pi - margin)).all()
    # Evaluation: no margin, no noise, nothing drawn.
    state = torch.get_rng_state()
    np.testing.assert_allclose(head.eval()(x, labels).detach().numpy(),
                               _by_hand("softmax", x, head.weight, labels, scale=scale, margin=0), rtol=1e-9, atol=1e-9)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_margin_lowers_the_target_logit_and_the_loss_rises():
    torch.manual_seed(3)
    x, labels = _inputs(3, torch.float32)
    for name in MARGIN_HEADS:
        head = create_head(name, D, C, cosine_scale=16.0).train()
        plain = head(x, labels).detach()
        head.eval()
        base = head(x, labels).detach()
        rows = torch.arange(N)
        others = torch.ones(N, C, dtype=torch.bool)
        others[rows, labels] = False
        assert torch.equal(plain[others], base[others]), name
        assert (plain[rows, labels] < base[rows, labels]).all(), name


# ------------------------------------------------------------------------------ gradients


def _finite_difference_check(head, x, labels, eps=1e-6):
    """The loss's gradient (one backward: the sharded classifier's backward reuses its saved softmax,
    so torch's gradcheck, which runs backward twice, does not apply) against central differences of
    the loss in every coordinate of the embeddings and the head's parameters."""

    def loss() -> torch.Tensor:
        torch.manual_seed(99)  # the same xi at every evaluation: gradients are taken with xi constant
        out = head(x, labels)
        return out if out.dim() == 0 else F.cross_entropy(out, labels)

    tensors = [x.requires_grad_(True), *head.parameters()]
    analytic = torch.autograd.grad(loss(), tensors)
    with torch.no_grad():
        for tensor, grad in zip(tensors, analytic):
            flat = tensor.view(-1)
            numeric = torch.empty_like(flat)
            for i in range(flat.numel()):
                saved = flat[i].item()
                flat[i] = saved + eps
                up = loss().item()
                flat[i] = saved - eps
                down = loss().item()
                flat[i] = saved
                numeric[i] = (up - down) / (2 * eps)
            torch.testing.assert_close(grad.reshape(-1), numeric, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("storage", ["full", "sharded"])
@pytest.mark.parametrize("noise", ["off", "sample"])
@pytest.mark.parametrize("name,scale,margin", [c for c in CASES if c[2] != 1])
def test_gradients_match_finite_differences_on_both_storages(name, scale, margin, noise, storage):
    options = dict(cosine_scale=scale, margin=margin, noise=noise, alpha2=0.4, bias=True)
    if name == "sphereface":
        options["sphereface_lambda"] = CONSTANT_LAMBDA
    torch.manual_seed(7)
    head = (create_head(name, D, C, **options) if storage == "full"
            else ShardedClassifier(name, D, C, **options)).double().train()
    x, labels = _inputs(8)
    x = _away_from_targets(x, head.weight, labels, rows=(0,))
    _finite_difference_check(head, x, labels)


# ------------------------------------------------------------------------------ insightface's ArcFace and CosFace


class InsightfaceCombinedMarginLoss(torch.nn.Module):
    """Transcribed from deepinsight/insightface @5ef98047, recognition/arcface_torch/losses.py
    (CombinedMarginLoss, the last version with the theta + m > pi threshold; interclass filtering off)."""

    def __init__(self, s, m1, m2, m3, interclass_filtering_threshold=0):
        super().__init__()
        self.s = s
        self.m1 = m1
        self.m2 = m2
        self.m3 = m3
        self.interclass_filtering_threshold = interclass_filtering_threshold

        # For ArcFace
        self.cos_m = math.cos(self.m2)
        self.sin_m = math.sin(self.m2)
        self.theta = math.cos(math.pi - self.m2)
        self.sinmm = math.sin(math.pi - self.m2) * self.m2
        self.easy_margin = False

    def forward(self, logits, labels):
        index_positive = torch.where(labels != -1)[0]
        target_logit = logits[index_positive, labels[index_positive].view(-1)]

        if self.m1 == 1.0 and self.m3 == 0.0:
            sin_theta = torch.sqrt(1.0 - torch.pow(target_logit, 2))
            cos_theta_m = target_logit * self.cos_m - sin_theta * self.sin_m  # cos(target+margin)
            if self.easy_margin:
                final_target_logit = torch.where(target_logit > 0, cos_theta_m, target_logit)
            else:
                final_target_logit = torch.where(target_logit > self.theta, cos_theta_m, target_logit - self.sinmm)
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits = logits * self.s
        elif self.m3 > 0:
            final_target_logit = target_logit - self.m3
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits = logits * self.s
        else:
            raise ValueError("unsupported margins")
        return logits


def _insightface_loss(x, weight, labels, margin_loss):
    """PartialFC_V2's scoring in one process (sample rate 1): normalise, linear, clamp, margin, CE."""
    logits = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1, 1)
    logits = margin_loss(logits, labels)
    return logits, F.cross_entropy(logits, labels)


@pytest.mark.parametrize("storage", ["full", "sharded"])
@pytest.mark.parametrize("name,margins,margin", [("arcface", (1.0, 0.5, 0.0), 0.5), ("arcface", (1.0, 1.1, 0.0), 1.1),
                                                 ("cosface", (1.0, 0.0, 0.4), 0.4), ("cosface", (1.0, 0.0, 0.35), 0.35)])
def test_arcface_and_cosface_as_insightface_computes_them(name, margins, margin, storage):
    torch.manual_seed(11)
    head = (create_head(name, D, C, cosine_scale=64.0, margin=margin) if storage == "full"
            else ShardedClassifier(name, D, C, cosine_scale=64.0, margin=margin)).double().train()
    x, labels = _inputs(12)
    x = _away_from_targets(x, head.weight, labels)  # two rows in ArcFace's fallback branch
    x.requires_grad_(True)
    out = head(x, labels)
    ours = out if out.dim() == 0 else F.cross_entropy(out, labels)
    gx, gw = torch.autograd.grad(ours, (x, head.weight))

    weight = head.weight.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    logits, theirs = _insightface_loss(x2, weight, labels, InsightfaceCombinedMarginLoss(64.0, *margins))
    theirs.backward()
    if out.dim():
        torch.testing.assert_close(out, logits, atol=1e-9, rtol=1e-9)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-9)
    torch.testing.assert_close(gx, x2.grad, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(gw, weight.grad, atol=1e-9, rtol=1e-7)


# ------------------------------------------------------------------------------ SphereFace's Caffe layer


def _caffe_sign(v):
    return (0 < v).astype(np.float64) - (v < 0).astype(np.float64)


def _caffe_margin_inner_product_forward(bottom, weight, label, *, margin_type, iteration, base, gamma, power,
                                        lambda_min):
    """MarginInnerProductLayer::Forward_cpu (wy1iu/sphereface @f20b130,
    tools/caffe-sphereface/src/caffe/layers/margin_inner_product_layer.cpp), in numpy float64.
    margin_type: 0 SINGLE, 1 DOUBLE, 2 TRIPLE, 3 QUADRUPLE. Returns (top, lambda, the weight as
    normalised in place)."""
    iter_ = float(iteration)  # the value after this forward's `iter_ += 1`
    lambda_ = base * pow(1.0 + gamma * iter_, -power)
    lambda_ = max(lambda_, lambda_min)

    # normalize weight
    norm_weight = weight.copy()
    for i in range(norm_weight.shape[0]):
        temp_norm = float(norm_weight[i] @ norm_weight[i])
        temp_norm = 1.0 / math.sqrt(temp_norm)
        norm_weight[i] *= temp_norm
    weight = norm_weight

    # common variables
    x_norm = np.sqrt((bottom * bottom).sum(1))
    cos_theta = bottom @ weight.T
    cos_theta = cos_theta / x_norm[:, None]
    sign_0 = _caffe_sign(cos_theta)

    if margin_type == 1:
        cos_theta_quadratic = cos_theta**2
    elif margin_type == 2:
        cos_theta_quadratic = cos_theta**2
        cos_theta_cubic = cos_theta**3
        sign_1 = _caffe_sign(np.abs(cos_theta) - 0.5)
        sign_2 = sign_0 * (1 + sign_1) - 2
    elif margin_type == 3:
        cos_theta_quadratic = cos_theta**2
        cos_theta_cubic = cos_theta**3
        cos_theta_quartic = cos_theta**4
        sign_3 = sign_0 * _caffe_sign(2 * cos_theta_quadratic - 1)
        sign_4 = 2 * sign_0 + sign_3 - 3

    top = bottom @ weight.T
    if margin_type == 0:
        return top, lambda_, weight
    for i in range(top.shape[0]):
        j = int(label[i])
        if margin_type == 1:
            top[i, j] = x_norm[i] * (2 * sign_0[i, j] * cos_theta_quadratic[i, j] - 1)
        elif margin_type == 2:
            top[i, j] = x_norm[i] * (sign_1[i, j] * (4 * cos_theta_cubic[i, j] - 3 * cos_theta[i, j]) + sign_2[i, j])
        else:
            top[i, j] = x_norm[i] * (sign_3[i, j] * (8 * cos_theta_quartic[i, j] - 8 * cos_theta_quadratic[i, j] + 1)
                                     + sign_4[i, j])
    top = top + lambda_ * (bottom @ weight.T)
    top = top / (1 + lambda_)
    return top, lambda_, weight


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sphereface_forward_is_the_caffe_layers_step_after_step(m):
    schedule = DEFAULT_SPHEREFACE_LAMBDA  # SphereFace's prototxt: base 1000, gamma 0.12, power 1, lambda_min 5
    torch.manual_seed(20 + m)
    head = create_head("sphereface", D, C, margin=m).double().train()
    assert head.margin.iteration == 0
    x, labels = _inputs(30 + m)
    x = _away_from_targets(x, head.weight, labels, rows=(0,))
    caffe_weight = head.weight.detach().numpy().copy()
    for step in range(1, 40):  # lambda falls from 893 to its floor of 5 (at step 1659) ...
        ours = head(x, labels).detach().numpy()
        expected, lam, _ = _caffe_margin_inner_product_forward(
            x.numpy(), caffe_weight, labels.numpy(), margin_type=m - 1, iteration=step, base=schedule[0],
            gamma=schedule[1], power=schedule[2], lambda_min=schedule[3])
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10, err_msg=f"step {step}")
        assert head.margin.iteration == step and head.margin.lam == pytest.approx(lam, rel=1e-15)
    # ... and at the floor, far on.
    head.margin.iteration = 5000
    ours = head(x, labels).detach().numpy()
    expected, lam, _ = _caffe_margin_inner_product_forward(x.numpy(), caffe_weight, labels.numpy(), margin_type=m - 1,
                                                           iteration=5001, base=1000, gamma=0.12, power=1, lambda_min=5)
    assert lam == 5
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)
    # Evaluation leaves the schedule where it is.
    head.eval()(x, labels)
    assert head.margin.iteration == 5001


def test_sphereface_schedule_travels_in_the_state_dict_and_resumes():
    torch.manual_seed(4)
    head = create_head("sphereface", D, C).train()
    x, labels = _inputs(5, torch.float32)
    for _ in range(7):
        head(x, labels)
    state = head.state_dict()
    assert state["transform.margin._extra_state"] == {"iteration": 7}
    restored = create_head("sphereface", D, C).train()
    restored.load_state_dict(state)
    assert torch.equal(restored(x, labels), head(x, labels))
    # The other heads' state holds their weights only (old checkpoints load unchanged).
    assert set(create_head("arcface", D, C).state_dict()) == {"weight"}
    assert set(create_head("noisy-softmax", D, C, bias=True).state_dict()) == {"weight", "bias"}


# ------------------------------------------------------------------------------ clcarwin/sphereface_pytorch


def _clcarwin_myphi(x, m):
    x = x * m
    return 1 - x**2 / math.factorial(2) + x**4 / math.factorial(4) - x**6 / math.factorial(6) + \
        x**8 / math.factorial(8) - x**9 / math.factorial(9)


class ClcarwinAngleLinear(torch.nn.Module):
    """Transcribed from clcarwin/sphereface_pytorch @e2f11f0, net_sphere.py (AngleLinear, phiflag=True);
    `Variable(t.data)` written `t.detach()`."""

    def __init__(self, in_features, out_features, m=4, phiflag=True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = torch.nn.Parameter(torch.Tensor(in_features, out_features))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        self.phiflag = phiflag
        self.m = m
        self.mlambda = [
            lambda x: x**0,
            lambda x: x**1,
            lambda x: 2 * x**2 - 1,
            lambda x: 4 * x**3 - 3 * x,
            lambda x: 8 * x**4 - 8 * x**2 + 1,
            lambda x: 16 * x**5 - 20 * x**3 + 5 * x,
        ]

    def forward(self, input):
        x = input  # size=(B,F)    F is feature len
        w = self.weight  # size=(F,Classnum) F=in_features Classnum=out_features

        ww = w.renorm(2, 1, 1e-5).mul(1e5)
        xlen = x.pow(2).sum(1).pow(0.5)  # size=B
        wlen = ww.pow(2).sum(0).pow(0.5)  # size=Classnum

        cos_theta = x.mm(ww)  # size=(B,Classnum)
        cos_theta = cos_theta / xlen.view(-1, 1) / wlen.view(1, -1)
        cos_theta = cos_theta.clamp(-1, 1)

        if self.phiflag:
            cos_m_theta = self.mlambda[self.m](cos_theta)
            theta = cos_theta.detach().acos()
            k = (self.m * theta / 3.14159265).floor()
            n_one = k * 0.0 - 1
            phi_theta = (n_one**k) * cos_m_theta - 2 * k
        else:
            theta = cos_theta.acos()
            phi_theta = _clcarwin_myphi(theta, self.m)
            phi_theta = phi_theta.clamp(-1 * self.m, 1)

        cos_theta = cos_theta * xlen.view(-1, 1)
        phi_theta = phi_theta * xlen.view(-1, 1)
        output = (cos_theta, phi_theta)
        return output  # size=(B,Classnum,2)


class ClcarwinAngleLoss(torch.nn.Module):
    """Transcribed from the same file (AngleLoss); the byte mask indexes as a bool mask (what it meant
    in the torch of its time), log_softmax over the classes (its implicit dim)."""

    def __init__(self, gamma=0):
        super().__init__()
        self.gamma = gamma
        self.it = 0
        self.LambdaMin = 5.0
        self.LambdaMax = 1500.0
        self.lamb = 1500.0

    def forward(self, input, target):
        self.it += 1
        cos_theta, phi_theta = input
        target = target.view(-1, 1)  # size=(B,1)

        index = cos_theta.data * 0.0  # size=(B,Classnum)
        index.scatter_(1, target.data.view(-1, 1), 1)
        index = index.bool()

        self.lamb = max(self.LambdaMin, self.LambdaMax / (1 + 0.1 * self.it))
        output = cos_theta * 1.0  # size=(B,Classnum)
        output[index] -= cos_theta[index] * (1.0 + 0) / (1 + self.lamb)
        output[index] += phi_theta[index] * (1.0 + 0) / (1 + self.lamb)

        logpt = F.log_softmax(output, dim=1)
        logpt = logpt.gather(1, target)
        logpt = logpt.view(-1)
        pt = logpt.detach().exp()

        loss = -1 * (1 - pt) ** self.gamma * logpt
        loss = loss.mean()

        return loss, output


@pytest.mark.parametrize("storage", ["full", "sharded"])
@pytest.mark.parametrize("m", [2, 3, 4])
def test_sphereface_equals_clcarwins_pytorch_transcription_values_and_gradients(m, storage):
    # clcarwin anneals lambda = max(5, 1500 / (1 + 0.1 it)): base 1500, gamma 0.1, power 1, min 5.
    schedule = (1500.0, 0.1, 1.0, 5.0)
    torch.manual_seed(40 + m)
    theirs_linear = ClcarwinAngleLinear(D, C, m=m).double()
    theirs_loss = ClcarwinAngleLoss()
    options = dict(margin=m, sphereface_lambda=schedule)
    head = (create_head("sphereface", D, C, **options) if storage == "full"
            else ShardedClassifier("sphereface", D, C, **options)).double().train()
    with torch.no_grad():
        head.weight.copy_(theirs_linear.weight.detach().t() * torch.linspace(0.5, 2.0, C, dtype=torch.float64)[:, None])
        theirs_linear.weight.copy_(head.weight.t())
    x, labels = _inputs(50 + m)
    for step in range(1, 30):  # lambda from 1364 down to 375
        x_ours = x.clone().requires_grad_(True)
        out = head(x_ours, labels)
        ours = out if out.dim() == 0 else F.cross_entropy(out, labels)
        gx, gw = torch.autograd.grad(ours, (x_ours, head.weight))
        x_theirs = x.clone().requires_grad_(True)
        loss, logits = theirs_loss(theirs_linear(x_theirs), labels)
        loss.backward()
        if out.dim():
            torch.testing.assert_close(out, logits, atol=1e-10, rtol=1e-10)
        assert ours.item() == pytest.approx(loss.item(), abs=1e-10), step
        torch.testing.assert_close(gx, x_theirs.grad, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(gw, theirs_linear.weight.grad.t(), atol=1e-10, rtol=1e-8)
        theirs_linear.weight.grad = None
        x = x + 0.05 * torch.randn_like(x)  # another batch next step


# ------------------------------------------------------------------------------ options and errors


def test_defaults_and_noise_composition():
    for name in MARGIN_HEADS:
        head = create_head(name, D, C)
        assert not head.transform.noisy and head.margin.m == DEFAULT_MARGINS[name]
        noisy = create_head(name, D, C, noise="batch")
        assert noisy.transform.noisy and noisy.alpha2 == 0.1  # Noisy ArcFace and so on: on when asked
    assert create_head("cosface", D, C).cosine_scale == 64.0 and create_head("sphereface", D, C).cosine_scale == 0.0


@pytest.mark.parametrize("name,options,message", [
    ("arcface", dict(margin=math.pi / 2), r"arcface: `margin` must be in \[0, pi/2\) radians, got 1.57"),
    ("arcface", dict(margin=-0.1), "arcface: `margin` must be in"),
    ("cosface", dict(margin=1.5), r"cosface: `margin` must be in \[0, 1\]"),
    ("sphereface", dict(margin=2.5), "sphereface: `margin` must be an integer 1, 2, 3, 4"),
    ("sphereface", dict(margin=5), "sphereface: `margin` must be an integer"),
    ("arcface", dict(cosine_scale=0.0), "arcface: `cosine_scale` must be > 0"),
    ("cosface", dict(cosine_scale=float("nan")), "`cosine_scale` must be a finite number"),
    ("softmax", dict(margin=0.5), "has no (option )?`?margin"),
    ("noisy-softmax", dict(margin=0.5), "has no (option )?`?margin"),
    ("arcface", dict(sphereface_lambda=(1, 2, 3, 4)), "has no (option )?`?sphereface_lambda"),
    ("sphereface", dict(sphereface_lambda=(1, 2, 3)), "`sphereface_lambda` must be 4 numbers"),
    ("sphereface", dict(sphereface_lambda=(1, -2, 3, 4)), "must be >= 0"),
    ("noisy-softmax", dict(noise="off"), "noise` must be batch or sample|noise must be one of batch, sample"),
    ("arcface", dict(noise="pixel"), "arcface: `noise` must be one of off, batch, sample"),
    ("arcface", dict(alpha2=-1.0, noise="batch"), "arcface: `alpha2` must be a finite number >= 0"),
])
def test_out_of_range_options_are_one_line_errors(name, options, message):
    for build in (lambda: create_head(name, D, C, **options), lambda: ShardedClassifier(name, D, C, **options)):
        with pytest.raises(FaceverError, match=message) as info:
            build()
        assert "\n" not in str(info.value)


def test_make_transform_is_the_one_map_from_head_to_transform():
    assert make_transform("softmax", noise="batch", alpha2=0.5).active is False  # softmax never has noise
    assert make_transform("noisy-softmax").noise == "batch"
    assert make_transform("arcface").noise == "off" and make_transform("arcface", noise="sample").noisy


# ------------------------------------------------------------------------------ the instruments


INSTRUMENT_CASES = [  # (head, cosine scale, margin, noise): plain, Noisy Softmax, margins alone and noisy
    ("softmax", 30.0, None, "off"), ("noisy-softmax", 30.0, None, "sample"), ("noisy-softmax", 30.0, None, "batch"),
    ("arcface", 30.0, 0.5, "off"), ("arcface", 30.0, 0.5, "batch"), ("cosface", 30.0, 0.35, "sample"),
    ("sphereface", 0.0, 4, "off"), ("sphereface", 0.0, 3, "sample"),
]


@pytest.mark.parametrize("storage", ["full", "sharded"])
@pytest.mark.parametrize("name,scale,margin,noise", INSTRUMENT_CASES)
def test_instruments_equal_a_hand_computation_on_a_fixed_batch(name, scale, margin, noise, storage):
    """Target probability, saturated share (p_y > 0.99), |gradient on the plain target logit|, angle,
    noise and training accuracy of one batch, computed here from the formulas by hand in float64."""
    options = dict(cosine_scale=scale, noise=noise, alpha2=0.3)
    if margin is not None:
        options["margin"] = margin
    if name == "sphereface":
        options["sphereface_lambda"] = CONSTANT_LAMBDA
    torch.manual_seed(60)
    head = (create_head(name, D, C, **options) if storage == "full"
            else ShardedClassifier(name, D, C, **options)).double().train()
    x, labels = _inputs(61)
    w = head.weight.detach()
    # Rows 2, 3 aligned with their class (saturated at scale 30), row 0 opposite, row 7 in another class.
    x[2] = 40 * F.normalize(w[labels[2]] + 0.01 * x[2], dim=0)
    x[3] = 0.5 * w[labels[3]] + 0.01 * x[3]
    x = _away_from_targets(x, head.weight, labels, rows=(0,))
    x[7] = 2 * w[(labels[7] + 1) % C]
    torch.manual_seed(5)
    loss, sums = head.loss_and_instruments(x, labels)
    torch.manual_seed(5)
    out = head(x, labels)
    assert loss.item() == (out if out.dim() == 0 else F.cross_entropy(out, labels)).item()

    torch.manual_seed(5)
    xi = (None if noise == "off" else torch.randn((), dtype=torch.float64).repeat(N) if noise == "batch"
          else torch.randn(N, dtype=torch.float64))
    alpha = math.sqrt(0.3)
    logits = _by_hand(name, x, w, labels, scale=scale, margin=margin, lam=20.0, alpha=alpha, xi=xi)
    cos = _cos_matrix(x, w)
    n = _magnitudes(x, scale)
    p, grad, angle, noise_size, correct = [], [], [], [], []
    for i, y in enumerate(labels.tolist()):
        row = logits[i] - logits[i].max()
        p.append(math.exp(row[y]) / np.exp(row).sum())
        c = cos[i, y]

        def target(cc):
            return _target_by_hand(name, cc, n[i], margin=margin, lam=20.0, alpha=alpha, xi=None if xi is None else xi[i])

        h = 1e-6  # d f'_y / d f_y with f_y = n c, by central differences of the formula
        slope = (target(c + h) - target(c - h)) / (2 * h) / n[i]
        grad.append((1 - p[-1]) * abs(slope))
        angle.append(math.degrees(math.acos(c)))
        plain = _target_by_hand(name, c, n[i], margin=margin, lam=20.0)
        noise_size.append(0.0 if xi is None else abs(target(c) - plain))
        correct.append(n[i] * c >= max(n[i] * cos[i, j] for j in range(C) if j != y))
    expected = [N, sum(p), sum(q > 0.99 for q in p), sum(grad), sum(angle), sum(noise_size), sum(correct)]
    assert 0 < expected[6] < N  # the batch has rows classified right and wrong ...
    assert expected[2] > 0 or name == "cosface"  # ... and saturated ones (CosFace's margin keeps p_y < 0.99 here)
    np.testing.assert_allclose(sums.numpy(), expected, rtol=1e-6, atol=1e-7)

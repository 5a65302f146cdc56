"""Noisy Softmax and plain softmax heads against the paper's formula, computed here by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_COSINE_SCALES
from facever.training.heads import HEADS, NoisySoftmax, Softmax, create_head

N, D, C = 6, 5, 7
# SphereFace's lambda changes at every training call (its annealing); tests that call a head several
# times and expect the same function hold it constant: lambda = max(5, 20 (1 + 0 it)^-1) = 20.
CONSTANT_LAMBDA = (20.0, 0.0, 1.0, 5.0)


def _head(name: str, *args, **options):
    """create_head, with SphereFace's lambda held constant."""
    if name == "sphereface":
        options.setdefault("sphereface_lambda", CONSTANT_LAMBDA)
    return create_head(name, *args, **options)


def _inputs(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    labels = torch.tensor([0, 3, 3, 6, 1, 2])
    return x, labels


def _by_hand(x, weight, bias, labels, alpha, xi):
    """The paper's f'_y = ||W_y|| ||x|| (cos - alpha |xi| (1 - cos)), row by row in float64, bias after."""
    x, weight = x.detach().double().numpy(), weight.detach().double().numpy()
    out = x @ weight.T
    for i, y in enumerate(labels.tolist()):
        norms = np.linalg.norm(weight[y]) * np.linalg.norm(x[i])
        cos = float(weight[y] @ x[i]) / norms
        out[i, y] = norms * (cos - alpha * abs(float(xi[i])) * (1 - cos))
    if bias is not None:
        out = out + bias.detach().double().numpy()
    return out


@pytest.mark.parametrize("bias", [False, True])
def test_batch_noise_matches_formula_with_one_xi_for_all_rows(bias):
    torch.manual_seed(123)
    head = NoisySoftmax(D, C, alpha2=0.3, noise="batch", bias=bias).train()
    x, labels = _inputs()
    torch.manual_seed(7)
    logits = head(x, labels)
    torch.manual_seed(7)
    xi = torch.randn(()).repeat(N)  # what the head must have drawn: one number from the global RNG
    expected = _by_hand(x, head.weight, head.bias, labels, math.sqrt(0.3), xi)
    np.testing.assert_allclose(logits.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert logits.dtype == torch.float32


def test_sample_noise_matches_formula_with_one_xi_per_row():
    torch.manual_seed(1)
    head = NoisySoftmax(D, C, alpha2=0.5, noise="sample").train()
    x, labels = _inputs(1)
    torch.manual_seed(11)
    logits = head(x, labels)
    torch.manual_seed(11)
    xi = torch.randn(N)
    expected = _by_hand(x, head.weight, None, labels, math.sqrt(0.5), xi)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noise", ["batch", "sample"])
def test_recovered_noise_is_shared_only_in_batch_mode(noise):
    """Invert the formula per row: |xi_i| = (f_y - f'_y) / (alpha (||W_y|| ||x|| - f_y))."""
    torch.manual_seed(2)
    head = NoisySoftmax(D, C, alpha2=0.2, noise=noise).train()
    x, labels = _inputs(2)
    noisy = head(x, labels).detach().double()
    plain = (x @ head.weight.T).detach().double()
    rows = torch.arange(N)
    f, f_noisy = plain[rows, labels], noisy[rows, labels]
    norms = head.weight.detach().double()[labels].norm(dim=1) * x.double().norm(dim=1)
    xi = (f - f_noisy) / (math.sqrt(0.2) * (norms - f))
    if noise == "batch":
        assert torch.allclose(xi, xi[0].expand(N), rtol=1e-4)
    else:
        assert xi.unique().numel() == N


def test_only_target_logits_change_and_never_increase():
    torch.manual_seed(3)
    head = NoisySoftmax(D, C, alpha2=1.0, noise="sample", bias=True).train()
    x, labels = _inputs(3)
    noisy = head(x, labels).detach()
    plain = (x @ head.weight.T + head.bias).detach()
    target = torch.zeros(N, C, dtype=torch.bool)
    target[torch.arange(N), labels] = True
    assert torch.equal(noisy[~target], plain[~target])
    # |xi| (1 - cos) >= 0 and the norms are positive, so the noise can only lower the target logit.
    assert (noisy[target] <= plain[target] + 1e-6).all()
    assert (noisy[target] < plain[target]).any()


@pytest.mark.parametrize("bias", [False, True])
def test_eval_mode_and_alpha2_zero_give_plain_softmax_logits(bias):
    torch.manual_seed(4)
    noisy = NoisySoftmax(D, C, alpha2=0.1, bias=bias)
    plain = Softmax(D, C, bias=bias)
    plain.load_state_dict(noisy.state_dict())
    x, labels = _inputs(4)
    expected = x @ noisy.weight.T + (noisy.bias if bias else 0)
    assert torch.allclose(noisy.eval()(x, labels), expected, atol=1e-6)
    assert torch.allclose(plain.train()(x, labels), expected, atol=1e-6)
    zero = NoisySoftmax(D, C, alpha2=0.0, bias=bias).train()
    zero.load_state_dict(noisy.state_dict())
    state = torch.get_rng_state()
    assert torch.equal(zero(x, labels), plain(x, labels))
    assert torch.equal(torch.get_rng_state(), state)  # no noise drawn when there is none to add


def test_heads_share_nn_linear_initialisation_and_shapes():
    torch.manual_seed(5)
    head = NoisySoftmax(64, 1000, bias=True)
    torch.manual_seed(5)
    linear = torch.nn.Linear(64, 1000)
    assert head.weight.shape == (1000, 64)
    assert torch.equal(head.weight, linear.weight) and torch.equal(head.bias, linear.bias)
    assert NoisySoftmax(4, 3).bias is None and Softmax(4, 3).bias is None


@pytest.mark.parametrize("noise", ["batch", "sample"])
@pytest.mark.parametrize("bias", [False, True])
def test_gradients_match_finite_differences(noise, bias):
    torch.manual_seed(6)
    head = NoisySoftmax(D, C, alpha2=0.4, noise=noise, bias=bias).double().train()
    x, labels = _inputs(6, torch.float64)
    x.requires_grad_(True)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in head.named_parameters()}

    def loss_terms(x, *values):
        torch.manual_seed(99)  # the same xi at every evaluation: gradients are taken with xi constant
        logits = torch.func.functional_call(head, dict(zip(params, values)), (x, labels))
        assert logits.dtype == torch.float64
        return logits

    assert torch.autograd.gradcheck(loss_terms, (x, *params.values()), eps=1e-6, atol=1e-6)


def test_zero_embedding_gets_finite_gradients():
    head = NoisySoftmax(D, C, alpha2=0.1).train()
    x = torch.zeros(2, D, requires_grad=True)
    torch.nn.functional.cross_entropy(head(x, torch.tensor([0, 1])), torch.tensor([0, 1])).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", sorted(HEADS))
def test_bf16_autocast_on_cpu_computes_in_float32(name):
    torch.manual_seed(8)
    head = _head(name, D, C, alpha2=0.1).train()
    layer = torch.nn.Linear(D, D)
    x, labels = _inputs(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = layer(x)
        assert embeddings.dtype == torch.bfloat16
        torch.manual_seed(0)
        logits = head(embeddings, labels)
    assert logits.dtype == torch.float32
    # Bit-identical to the float32 head fed the same (bf16-rounded) embeddings: nothing ran in bf16 ...
    torch.manual_seed(0)
    assert torch.equal(logits, head(embeddings.float(), labels))
    # ... and close to the all-float32 result (only the backbone's rounding differs; cosine heads'
    # logits are s cos, so compare cosines).
    torch.manual_seed(0)
    reference = head(layer(x), labels)
    unit = max(1.0, head.cosine_scale)
    assert torch.allclose(logits / unit, reference / unit, rtol=2e-2, atol=2e-2)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    assert head.weight.grad.dtype == torch.float32 and torch.isfinite(head.weight.grad).all()


def test_noise_follows_the_global_rng_so_resume_is_exact():
    head = NoisySoftmax(D, C, alpha2=0.1, noise="sample").train()
    x, labels = _inputs(9)
    state = torch.get_rng_state()
    first = head(x, labels)
    assert not torch.equal(first, head(x, labels))  # fresh noise each call
    torch.set_rng_state(state)
    assert torch.equal(first, head(x, labels))


def test_create_head_options_and_errors():
    assert isinstance(create_head("noisy-softmax", 4, 3, alpha2=0.2, noise="sample"), NoisySoftmax)
    # A plain-softmax run may carry the noise options of a shared config; unset options are dropped.
    plain = create_head("softmax", 4, 3, alpha2=0.1, noise="batch", bias=None)
    assert isinstance(plain, Softmax) and plain.bias is None
    head = create_head("noisy-softmax", 4, 3, alpha2=None, noise=None)
    assert head.alpha2 == 0.1 and head.noise == "batch"
    with pytest.raises(FaceverError, match="unknown head 'l-softmax'; known heads: noisy-softmax, softmax, sphereface, "
                                           "cosface, arcface"):
        create_head("l-softmax", 4, 3)
    with pytest.raises(FaceverError, match="no option margin"):
        create_head("softmax", 4, 3, margin=0.5)
    with pytest.raises(FaceverError, match="noise must be one of batch, sample"):
        NoisySoftmax(4, 3, noise="pixel")
    with pytest.raises(FaceverError, match="`alpha2` must be"):
        NoisySoftmax(4, 3, alpha2=-0.1)
    with pytest.raises(ValueError, match="N x 4"):
        Softmax(4, 3)(torch.zeros(2, 5))


def _reference_logits(x, weight, bias, labels, alpha, xi):
    """The formula written the obvious way (cosine, then scatter into the target column)."""
    logits = x @ weight.T
    w_y = weight[labels]
    norms = w_y.norm(dim=1) * x.norm(dim=1)
    cos = (w_y * x).sum(1) / norms
    noisy = norms * (cos - alpha * xi.abs() * (1 - cos))
    return logits.scatter(1, labels[:, None], noisy[:, None]) + bias


def test_gradients_match_the_obvious_implementation_and_are_dense():
    """The head gathers W_y sparsely; the summed weight gradient must be the ordinary dense one."""
    torch.manual_seed(10)
    head = NoisySoftmax(D, C, alpha2=0.1, noise="sample", bias=True).train()
    x, labels = _inputs(10)
    x.requires_grad_(True)
    torch.manual_seed(5)
    torch.nn.functional.cross_entropy(head(x, labels), labels).backward()
    grads = (x.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone())
    assert head.weight.grad.layout == torch.strided and head.weight.grad.shape == (C, D)

    weight, bias = head.weight.detach().clone().requires_grad_(True), head.bias.detach().clone().requires_grad_(True)
    x.grad = None
    torch.manual_seed(5)
    xi = torch.randn(N)
    loss = torch.nn.functional.cross_entropy(_reference_logits(x, weight, bias, labels, math.sqrt(0.1), xi), labels)
    loss.backward()
    for ours, reference in zip(grads, (x.grad, weight.grad, bias.grad)):
        assert torch.allclose(ours, reference, atol=1e-6)

    optimizer = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    before = head.weight.detach().clone()
    optimizer.step()  # SGD's weight decay refuses sparse gradients
    assert not torch.equal(before, head.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("noise", ["batch", "sample"])
def test_cuda_head_under_autocast_matches_the_formula(noise):
    torch.manual_seed(12)
    head = NoisySoftmax(D, C, alpha2=0.3, noise=noise, bias=True).cuda().train()
    x, labels = _inputs(12)
    x, labels = x.cuda(), labels.cuda()
    torch.cuda.manual_seed(3)
    with torch.autocast("cuda", dtype=torch.float16):
        logits = head(x.half(), labels)
    assert logits.dtype == torch.float32
    torch.cuda.manual_seed(3)
    xi = torch.randn((), device="cuda").repeat(N) if noise == "batch" else torch.randn(N, device="cuda")
    expected = _by_hand(x.half().float().cpu(), head.weight.cpu(), head.bias.cpu(), labels.cpu(), math.sqrt(0.3), xi.cpu())
    np.testing.assert_allclose(logits.detach().double().cpu().numpy(), expected, rtol=1e-4, atol=1e-4)


# -- cosine logits (cosine_scale s > 0): NormFace's s cos(theta), Noisy Softmax with ||W_y|| ||x|| = s


def _cosine_by_hand(x, weight, bias, labels, scale, alpha, xi):
    """s cos(theta_j) for every class, the target s (cos - alpha |xi| (1 - cos)), in float64, bias after."""
    x, weight = x.detach().double().numpy(), weight.detach().double().numpy()
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (weight / np.linalg.norm(weight, axis=1, keepdims=True)).T
    out = scale * cos
    if labels is not None:
        for i, y in enumerate(labels.tolist()):
            out[i, y] = scale * (cos[i, y] - alpha * abs(float(xi[i])) * (1 - cos[i, y]))
    if bias is not None:
        out = out + bias.detach().double().numpy()
    return out


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("scale", [1.0, 16.0])
def test_cosine_scale_gives_scaled_cosines_whatever_the_lengths(bias, scale):
    torch.manual_seed(20)
    head = Softmax(D, C, bias=bias, cosine_scale=scale).train()
    x, labels = _inputs(20)
    x = x * torch.linspace(0.01, 100, N)[:, None]  # lengths spread over four orders of magnitude
    expected = _cosine_by_hand(x, head.weight, head.bias, None, scale, 0.0, None)
    np.testing.assert_allclose(head(x, labels).detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)
    # Rescaling an embedding or a class weight changes nothing: only the angles count.
    with torch.no_grad():
        head.weight.mul_(torch.linspace(0.1, 7, C)[:, None])
    np.testing.assert_allclose(head(3 * x, labels).detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noise", ["batch", "sample"])
def test_noisy_cosine_head_matches_formula_with_norms_equal_to_the_scale(noise):
    torch.manual_seed(21)
    head = NoisySoftmax(D, C, alpha2=0.5, noise=noise, cosine_scale=16.0).train()
    x, labels = _inputs(21)
    torch.manual_seed(5)
    logits = head(x, labels)
    torch.manual_seed(5)
    xi = torch.randn(()).repeat(N) if noise == "batch" else torch.randn(N)
    expected = _cosine_by_hand(x, head.weight, None, labels, 16.0, math.sqrt(0.5), xi)
    np.testing.assert_allclose(logits.detach().double().numpy(), expected, rtol=1e-5, atol=1e-4)
    # The paper's head on the same weights gives other numbers: the option is not a no-op.
    plain = NoisySoftmax(D, C, alpha2=0.5, noise=noise).train()
    plain.load_state_dict(head.state_dict())
    torch.manual_seed(5)
    assert not np.allclose(plain(x, labels).detach().numpy(), expected, atol=1e-2)
    # Evaluation mode: the plain scaled cosines.
    np.testing.assert_allclose(head.eval()(x, labels).detach().double().numpy(),
                               _cosine_by_hand(x, head.weight, None, None, 16.0, 0.0, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_cosine_head_gradients_match_finite_differences(name):
    torch.manual_seed(22)
    head = _head(name, D, C, alpha2=0.4, noise="sample", bias=True, cosine_scale=4.0).double().train()
    x, labels = _inputs(22, torch.float64)
    x.requires_grad_(True)
    params = {pname: p.detach().clone().requires_grad_(True) for pname, p in head.named_parameters()}

    def logits(x, *values):
        torch.manual_seed(99)
        return torch.func.functional_call(head, dict(zip(params, values)), (x, labels))

    assert torch.autograd.gradcheck(logits, (x, *params.values()), eps=1e-6, atol=1e-6)


def test_cosine_scale_option_and_errors():
    for name in sorted(HEADS):
        head = create_head(name, 4, 3, cosine_scale=8.0)
        assert head.cosine_scale == 8.0 and "cosine_scale=8.0" in repr(head)
        assert create_head(name, 4, 3, cosine_scale=None).cosine_scale == DEFAULT_COSINE_SCALES[name]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(FaceverError, match="`cosine_scale` must be a finite number >= 0"):
            create_head("noisy-softmax", 4, 3, cosine_scale=bad)
    # A zero embedding has no direction: finite gradients, not NaN.
    head = create_head("noisy-softmax", D, C, cosine_scale=16.0).train()
    x = torch.zeros(2, D, requires_grad=True)
    torch.nn.functional.cross_entropy(head(x, torch.tensor([0, 1])), torch.tensor([0, 1])).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()

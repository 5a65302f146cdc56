"""The sharded classifier against the one-process full head (gloo, two real CPU processes)."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facever.core.errors import FaceverError
from facever.core.settings import COSINE_ONLY_HEADS, HEADS
from facever.training.heads import create_head
from facever.training.sharded_head import ShardedClassifier, classifier_cost, make_head, shard_bounds

D, B, STEPS, LR = 6, 5, 3, 0.5
# (head, classes, noise, cosine scale): 8 classes split 4 + 4, 7 classes split 3 + 4. Every head, each
# margin head alone and with Noisy Softmax's noise.
CASES = [("noisy-softmax", 8, "batch", 0.0), ("noisy-softmax", 7, "sample", 0.0), ("softmax", 8, "batch", 0.0),
         ("softmax", 7, "batch", 0.0), ("noisy-softmax", 7, "sample", 4.0), ("softmax", 8, "batch", 4.0),
         ("sphereface", 8, "off", 0.0), ("sphereface", 7, "sample", 4.0), ("cosface", 7, "off", 4.0),
         ("cosface", 8, "batch", 8.0), ("arcface", 8, "off", 4.0), ("arcface", 7, "sample", 8.0)]
MARGINS = {"sphereface": 3, "cosface": 0.3, "arcface": 0.6}


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, D))


def _data(classes: int, world: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(classes)
    xs = [torch.randn(world * B, 10, generator=g) for _ in range(STEPS)]
    # Every class of both shards appears; the last steps' labels are random.
    ys = [torch.randint(0, classes, (world * B,), generator=g) for _ in range(STEPS)]
    ys[0][:classes] = torch.arange(classes)
    return xs, ys


def _options(kind: str, noise: str, scale: float = 0.0) -> dict:
    options = {"cosine_scale": scale}
    if kind != "softmax":
        options.update(alpha2=0.3, noise=noise)
    if kind in MARGINS:
        options["margin"] = MARGINS[kind]
    if kind == "sphereface":
        options["sphereface_lambda"] = (10.0, 1.0, 1.0, 2.0)  # 5, 3.3, 2.5: the blend changes every step
    return options


def _full_run(kind: str, classes: int, noise: str, scale: float, world: int) -> list[dict]:
    """One process, the full head, the combined batch of all ranks."""
    torch.manual_seed(0)
    backbone = _backbone()
    head = create_head(kind, D, classes, **_options(kind, noise, scale))
    opt = torch.optim.SGD(list(backbone.parameters()) + list(head.parameters()), lr=LR, momentum=0.9, weight_decay=1e-3)
    records = []
    for x, y in zip(*_data(classes, world)):
        loss, sums = head.loss_and_instruments(backbone(x), y)
        opt.zero_grad()
        loss.backward()
        records.append({"loss": loss.item(), "backbone_grad": [p.grad.clone() for p in backbone.parameters()],
                        "head_grad": head.weight.grad.clone(), "instruments": sums})
        opt.step()
    records.append({"backbone": [p.detach().clone() for p in backbone.parameters()], "head": head.weight.detach().clone()})
    return records


def _sharded_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = {}
        for kind, classes, noise, scale in CASES:
            torch.manual_seed(0)
            backbone = _backbone()
            head = ShardedClassifier(kind, D, classes, rank=rank, world_size=world, **_options(kind, noise, scale))
            ddp = nn.parallel.DistributedDataParallel(backbone)
            opt = torch.optim.SGD(list(backbone.parameters()) + list(head.parameters()), lr=LR, momentum=0.9,
                                  weight_decay=1e-3)
            records = []
            start = time.perf_counter()
            for x, y in zip(*_data(classes, world)):
                mine = slice(rank * B, (rank + 1) * B)
                loss, sums = head.loss_and_instruments(ddp(x[mine]), y[mine])
                opt.zero_grad()
                loss.backward()
                records.append({"loss": loss.item(), "backbone_grad": [p.grad.clone() for p in backbone.parameters()],
                                "head_grad": head.weight.grad.clone(), "instruments": sums})
                opt.step()
            records.append({"backbone": [p.detach().clone() for p in backbone.parameters()],
                            "head": head.weight.detach().clone(), "seconds": time.perf_counter() - start})
            results[f"{kind}-{classes}-{noise}-{scale}"] = records
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_gloo_processes_equal_one_process_with_the_full_head(tmp_path):
    world = 2
    start = time.perf_counter()
    torch.multiprocessing.spawn(_sharded_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    spawn_seconds = time.perf_counter() - start
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for kind, classes, noise, scale in CASES:
        key = f"{kind}-{classes}-{noise}-{scale}"
        ref = _full_run(kind, classes, noise, scale, world)
        for rank, results in enumerate(ranks):
            got = results[key]
            lo, hi = shard_bounds(classes, world, rank)
            for step in range(STEPS):
                assert got[step]["loss"] == pytest.approx(ref[step]["loss"], abs=1e-5), (key, rank, step)
                for a, b in zip(got[step]["backbone_grad"], ref[step]["backbone_grad"]):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"{key} rank {rank} step {step}")
                torch.testing.assert_close(got[step]["head_grad"], ref[step]["head_grad"][lo:hi], atol=1e-5, rtol=0)
            for step in range(STEPS):  # each rank's instruments are its own rows': summed, the batch's
                total = sum(r[key][step]["instruments"] for r in ranks)
                torch.testing.assert_close(total, ref[step]["instruments"], atol=1e-5, rtol=1e-6,
                                           msg=f"{key} instruments step {step}")
            for a, b in zip(got[STEPS]["backbone"], ref[STEPS]["backbone"]):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            torch.testing.assert_close(got[STEPS]["head"], ref[STEPS]["head"][lo:hi], atol=1e-5, rtol=0)
        # The runs moved: equal weights are not the untouched initial ones.
        assert not torch.allclose(ref[STEPS]["head"], _initial_head(kind, classes, noise, scale), atol=1e-3)
    print(f"\nsharded equivalence: 2 gloo processes, {len(CASES)} cases x {STEPS} steps, {spawn_seconds:.1f}s "
          f"with start-up; steps alone {max(r[k][STEPS]['seconds'] for r in ranks for k in r):.2f}s per case")


def _initial_head(kind: str, classes: int, noise: str, scale: float) -> torch.Tensor:
    torch.manual_seed(0)
    _backbone()
    return create_head(kind, D, classes, **_options(kind, noise, scale)).weight.detach()


@pytest.mark.parametrize("classes,world", [(7, 2), (10, 3), (5, 5), (1000, 7)])
def test_shards_tile_the_classes_and_start_from_the_full_heads_rows(classes, world):
    bounds = [shard_bounds(classes, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == classes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert max(h - l for l, h in bounds) - min(h - l for l, h in bounds) <= 1
    torch.manual_seed(3)
    full = create_head("softmax", 9, classes, bias=True)
    after_full = torch.rand(2)
    for r, (lo, hi) in enumerate(bounds):
        torch.manual_seed(3)
        shard = ShardedClassifier("softmax", 9, classes, rank=r, world_size=world, bias=True)
        assert torch.equal(shard.weight, full.weight[lo:hi]) and torch.equal(shard.bias, full.bias[lo:hi])
        assert torch.equal(torch.rand(2), after_full)  # the global RNG is where the full head leaves it


@pytest.mark.parametrize("kind,scale", [(k, s) for k in HEADS for s in (0.0, 8.0) if s or k not in COSINE_ONLY_HEADS])
def test_one_shard_is_the_full_head(kind, scale):
    options = {"cosine_scale": scale, **({"noise": "sample"} if kind in MARGINS else {})}
    torch.manual_seed(1)
    full = create_head(kind, 4, 9, **options)
    torch.manual_seed(1)
    shard = ShardedClassifier(kind, 4, 9, **options)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 3, 8, 5, 1])
    torch.manual_seed(2)
    ref = F.cross_entropy(full(x, y), y)
    (gx_ref,) = torch.autograd.grad(ref, x)
    torch.manual_seed(2)
    got = shard(x, y)
    (gx,) = torch.autograd.grad(got, x)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    torch.testing.assert_close(gx, gx_ref, atol=1e-12, rtol=0)


def test_sampling_keeps_positives_and_a_share_of_negatives_and_resumes():
    def make() -> ShardedClassifier:
        torch.manual_seed(0)
        return ShardedClassifier("softmax", 4, 40, sample_rate=0.25, seed=5)

    head = make()
    x = torch.randn(6, 4)
    y = torch.tensor([1, 1, 7, 30, 39, 12])
    first = make()._sample(y)  # what the head's first forward draws
    assert first.numel() == 10 and set(y.tolist()) <= set(first.tolist())
    assert torch.equal(first, first.sort().values)
    # The loss is the softmax over the kept classes only, and only kept rows get a gradient.
    loss = head(x, y)
    target = torch.tensor([first.tolist().index(c) for c in y.tolist()])
    assert loss.item() == pytest.approx(F.cross_entropy(x @ head.weight.detach()[first].t(), target).item(), abs=1e-6)
    loss.backward()
    touched = head.weight.grad.abs().sum(1).nonzero().flatten()
    assert set(y.tolist()) <= set(touched.tolist()) <= set(first.tolist())
    # The sampler's state travels in state_dict: a restored head draws what the original draws next.
    state = head.state_dict()
    second = head._sample(y)
    assert not torch.equal(second, first)
    restored = make()
    restored.load_state_dict(state)
    assert torch.equal(restored._sample(y), second)
    # Rate 1: nothing sampled, all classes scored.
    assert ShardedClassifier("softmax", 4, 40, sample_rate=1.0)._sample(y) is None


def test_bad_settings_are_clear_errors():
    with pytest.raises(FaceverError, match="cannot split 3 classes over 4"):
        ShardedClassifier("softmax", 4, 3, rank=0, world_size=4)
    with pytest.raises(FaceverError, match="sample rate must be in"):
        ShardedClassifier("softmax", 4, 30, sample_rate=0)
    with pytest.raises(FaceverError, match="needs the sharded classifier"):
        make_head("softmax", 4, 30, classifier="full", sample_rate=0.5)


def test_cost_table_numbers():
    full = classifier_cost(2_000_000, 512, 8, layout="full", batch_per_gpu=128)
    assert full.weight_bytes == 2_000_000 * 512 * 4 and full.comm_bytes == full.weight_bytes
    assert full.state_bytes == 3 * full.weight_bytes
    shard = classifier_cost(2_000_000, 512, 8, layout="sharded", batch_per_gpu=128)
    assert shard.weight_bytes == 250_000 * 512 * 4
    n = 8 * 128
    assert shard.comm_bytes == 2 * n * 512 * 4 + n * 8 + 3 * n * 4
    assert classifier_cost(10, 4, 3, layout="sharded").weight_bytes == 4 * 4 * 4  # ceil(10/3) rows
    assert classifier_cost(10_000, 512, 1, layout="sharded").comm_bytes == 0
    assert math.isclose(classifier_cost(360_000, 512, 64, layout="sharded").weight_bytes,
                        360_000 * 512 * 4 / 64, rel_tol=1e-9)


def test_docs_table_is_the_computed_one():
    root = Path(__file__).resolve().parents[1]
    import importlib.util

    spec = importlib.util.spec_from_file_location("classifier_memory", root / "benchmarks" / "classifier_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = (root / "docs" / "distributed.md").read_text(encoding="utf-8")
    assert module.markdown_table() in doc


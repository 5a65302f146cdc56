"""The classifier split across processes by class (Partial FC style), for every head.

With DDP every GPU holds the whole `C x D` classifier and all-reduces its gradient every step; at
2M identities that is 4 GB of weights per GPU and 4 GB all-reduced per step. Sharded instead:

- rank r of W holds the rows of classes `[r*C//W, (r+1)*C//W)` (floor division: uneven splits allowed);
- the embeddings (and labels) of all ranks are all-gathered, so each rank scores the whole global
  batch against its own classes: local logits `N x C_r`, N = W x batch;
- the softmax cross-entropy runs across ranks: the row maximum and the sum of exponentials are
  all-reduced, and so is the target logit (only its owner has it);
- every head's transform (margin, Noisy Softmax's noise: `heads.TargetTransform`, the same code the
  full head applies) changes only the target logit, so the rank owning a sample's class applies it;
  the noise xi is drawn from the global RNG by every rank alike (same seed, same draws) and the
  margin's schedule (SphereFace's lambda) advances on every rank, so every rank uses the same xi and
  lambda as one process would;
- backward: the gradient of the logits is `(softmax - onehot) / N`; the gathered embeddings'
  gradient is summed over ranks (reduce-scatter), so each rank receives the whole batch's gradient
  for its own embeddings.

`cosine_scale` s > 0 (cosine logits, `heads`) normalises the gathered embeddings and this rank's
class rows (SphereFace normalises the class rows in any case): both are row-wise, so the shards still
equal the full head.

`sample_rate r < 1` (arcface_torch's Partial FC): per step each rank keeps every class of its shard
that appears in the global batch plus a random share of the others (`ceil(r * C_r)` classes in all,
or all positives if more), drawn from the head's own generator (seeded from the seed and the rank,
saved in `state_dict`), so the global RNG, and with it the noise, stays identical across ranks.
`r = 1.0` samples nothing: exactly the full softmax.

The initial weights are exactly the full head's rows: the full matrix is drawn from the global RNG
in row chunks (the same sequence as `nn.Linear`'s init) and each rank keeps its own rows, which also
keeps the global RNG at the same point as with the full head.

`ShardedClassifier.forward(embeddings, labels)` returns the loss (the global batch's mean, the same
number on every rank), not logits: nothing outside the head ever holds all the classes;
`loss_and_instruments` adds the training instruments (`heads.instrument_sums`) of the rows this rank
owns, which summed over ranks are the global batch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from facever.core.errors import FaceverError
from facever.core.settings import CLASSIFIERS, HEADS
from facever.training.heads import (
    TargetTransform,
    cosine_operands,
    create_head,
    default_cosine_scale,
    instrument_sums,
    make_transform,
    transform_targets,
)


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """Classes `[lo, hi)` held by `rank`: `lo = rank*C//W`, `hi = (rank+1)*C//W`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return rank * num_classes // world_size, (rank + 1) * num_classes // world_size


def _is_distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


class _GatherWithGradient(torch.autograd.Function):
    """All-gather rows of every rank (equal counts) into one `W*B x ...` tensor, gradient included.

    Backward sums the gathered tensor's gradient over ranks and returns this rank's rows, multiplied
    by `grad_scale`: the training loop wraps the backbone in DDP, which averages backbone gradients
    over ranks, while each rank's embedding gradient is already the whole batch's; `grad_scale = W`
    cancels that average. (Reduce-scatter on NCCL; all-reduce + slice where the backend has no
    reduce-scatter, e.g. gloo.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, group, rank: int, world_size: int, grad_scale: float) -> torch.Tensor:
        ctx.group, ctx.rank, ctx.world_size, ctx.grad_scale = group, rank, world_size, grad_scale
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x, group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        n = grad.shape[0] // ctx.world_size
        if dist.get_backend(ctx.group) == dist.Backend.NCCL:
            out = torch.empty((n,) + tuple(grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad, group=ctx.group)
        else:
            total = grad.clone()
            dist.all_reduce(total, group=ctx.group)
            out = total[ctx.rank * n : (ctx.rank + 1) * n].contiguous()
        if ctx.grad_scale != 1:
            out = out * ctx.grad_scale
        return out, None, None, None, None


def gather_rows(x: torch.Tensor, *, group=None, rank: int, world_size: int, grad_scale: float = 1.0) -> torch.Tensor:
    """`cat([x of rank 0, ..., x of rank W-1])` with the gradient flowing back (see `_GatherWithGradient`)."""
    if not _is_distributed(world_size):
        return x
    if x.requires_grad:
        return _GatherWithGradient.apply(x, group, rank, world_size, float(grad_scale))
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


class _DistributedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of `N x C_r` local logits whose rows continue on the other ranks.

    `target[i]` is the local column of sample i's class, or -1 where another rank owns it. With
    m = max over all classes, s = sum exp(z - m): loss_i = log s + m - z_target. Gradient of the
    local logits: (exp(z - m) / s - onehot) / N.

    Also returns, without gradient, each row's target probability `exp(z_target - m) / s` and, with
    `others`, the largest logit of the other classes over all ranks (for the training accuracy; it
    joins the maximum's all-reduce), else None.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, group, world_size: int, others: bool):
        distributed = _is_distributed(world_size)
        n = logits.shape[0]
        rows = torch.arange(n, device=logits.device)
        owned = target >= 0
        column = target.clamp_min(0)
        z = logits.detach()
        row_max = z.max(dim=1).values
        other_max = None
        if others:
            hidden = torch.where(owned, torch.full_like(row_max, -math.inf), z[rows, column])
            other_max = z.index_put((rows, column), hidden).max(dim=1).values
        if distributed:
            both = row_max if other_max is None else torch.stack([row_max, other_max])
            dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
            row_max, other_max = (both, None) if other_max is None else (both[0], both[1])
        probs = (z - row_max[:, None]).exp_()
        row_sum = probs.sum(dim=1)
        target_logit = torch.where(owned, z[rows, column], torch.zeros_like(row_max))
        if distributed:
            # One call for both sums (a batch of N floats each).
            both = torch.stack([row_sum, target_logit])
            dist.all_reduce(both, group=group)
            row_sum, target_logit = both[0], both[1]
        probs.div_(row_sum[:, None])
        loss = (row_sum.log() + row_max - target_logit).mean()
        p_target = (target_logit - row_max).exp() / row_sum
        ctx.save_for_backward(probs, target)
        ctx.mark_non_differentiable(p_target)
        if other_max is not None:
            ctx.mark_non_differentiable(other_max)
        return loss, p_target, other_max

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, *unused):
        probs, target = ctx.saved_tensors
        n = probs.shape[0]
        grad = probs  # saved for this one backward only: reuse its memory
        # -1 at each owned target, as a masked add: no list of rows, no device-to-host synchronisation.
        rows = torch.arange(n, device=grad.device)
        grad.index_put_((rows, target.clamp_min(0)), -(target >= 0).to(grad.dtype), accumulate=True)
        grad.mul_(grad_loss / n)
        return grad, None, None, None, None


class ShardedClassifier(nn.Module):
    """This rank's share of the classifier of head `kind` (one of settings.HEADS).

    `forward(embeddings, labels)` takes this rank's batch (B x D, B labels in [0, num_classes)) and
    returns the mean cross-entropy over all ranks' batches. Every rank must call it with the same B.
    `grad_scale` multiplies the gradient returned to the embeddings (the world size when the backbone
    is under DDP, which averages over ranks; see `_GatherWithGradient`). The transform's options
    (`margin`, `alpha2`, `noise`, `eps`, `sphereface_lambda`) are `heads.make_transform`'s, the cosine
    scale `heads.default_cosine_scale`'s (None: the head's default).
    """

    def __init__(
        self,
        kind: str,
        in_features: int,
        num_classes: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        group=None,
        sample_rate: float = 1.0,
        alpha2: float | None = None,
        noise: str | None = None,
        eps: float | None = None,
        margin: float | None = None,
        sphereface_lambda: Any = None,
        bias: bool = False,
        seed: int = 0,
        grad_scale: float | None = None,
        cosine_scale: float | None = None,
    ):
        super().__init__()
        if kind not in HEADS:
            raise FaceverError(f"unknown head {kind!r}; known heads: {', '.join(HEADS)}")
        if int(in_features) < 1 or int(num_classes) < 1:
            raise FaceverError(f"head needs in_features >= 1 and num_classes >= 1, got {in_features} and {num_classes}")
        if num_classes < world_size:
            raise FaceverError(f"cannot split {num_classes} classes over {world_size} processes (fewer classes than processes)")
        if not (0 < float(sample_rate) <= 1):
            raise FaceverError(f"sample rate must be in (0, 1], got {sample_rate}")
        self.transform: TargetTransform = make_transform(kind, margin=margin, alpha2=alpha2, noise=noise, eps=eps,
                                                         sphereface_lambda=sphereface_lambda)
        self.kind = kind
        self.cosine_scale = default_cosine_scale(kind, cosine_scale)
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.rank, self.world_size, self.group = int(rank), int(world_size), group
        self.lo, self.hi = shard_bounds(self.num_classes, self.world_size, self.rank)
        self.sample_rate = float(sample_rate)
        self.seed = int(seed)
        self.grad_scale = float(world_size if grad_scale is None else grad_scale)
        self.weight = nn.Parameter(torch.empty(self.hi - self.lo, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.hi - self.lo)) if bias else None
        self._generator: torch.Generator | None = None
        self._generator_state: tuple[str, torch.Tensor] | None = None
        self.reset_parameters()

    @property
    def alpha2(self) -> float:
        """The noise's alpha^2 (0 when the head has no noise)."""
        return self.transform.alpha2 if self.transform.noisy else 0.0

    @property
    def noise(self) -> str:
        return self.transform.noise

    @property
    def local_classes(self) -> int:
        return self.hi - self.lo

    @property
    def num_sampled(self) -> int:
        """Classes of this shard scored per step (at least; all positives are always kept)."""
        return max(1, min(self.local_classes, math.ceil(self.sample_rate * self.local_classes)))

    def extra_repr(self) -> str:
        return (f"{self.kind}, in_features={self.in_features}, classes [{self.lo}, {self.hi}) of {self.num_classes}, "
                f"rank {self.rank} of {self.world_size}, sample_rate={self.sample_rate}"
                + (f", cosine_scale={self.cosine_scale}" if self.cosine_scale else ""))

    @torch.no_grad()
    def reset_parameters(self, chunk_rows: int = 65536) -> None:
        """The full head's `nn.Linear` init, drawn in row chunks from the global RNG; keep own rows."""
        for param, draw in ((self.weight, self._draw_weight), (self.bias, self._draw_bias)):
            if param is None:
                continue
            for start in range(0, self.num_classes, chunk_rows):
                stop = min(self.num_classes, start + chunk_rows)
                values = draw(stop - start)
                lo, hi = max(start, self.lo), min(stop, self.hi)
                if lo < hi:
                    param[lo - self.lo : hi - self.lo].copy_(values[lo - start : hi - start])

    def _draw_weight(self, rows: int) -> torch.Tensor:
        values = torch.empty(rows, self.in_features)
        nn.init.kaiming_uniform_(values, a=math.sqrt(5))  # exactly as heads._LinearHead
        return values

    def _draw_bias(self, rows: int) -> torch.Tensor:
        bound = 1 / math.sqrt(self.in_features)
        return torch.empty(rows).uniform_(-bound, bound)

    # -- the sampling generator's state travels in state_dict (per rank: each rank saves its shard)
    def get_extra_state(self) -> dict[str, Any]:
        if self._generator is not None:
            return {"device_type": self._generator.device.type, "generator": self._generator.get_state()}
        if self._generator_state is not None:
            return {"device_type": self._generator_state[0], "generator": self._generator_state[1]}
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._generator = None
        self._generator_state = (state["device_type"], state["generator"]) if state else None

    def _sampling_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device.type != device.type:
            g = torch.Generator(device=device)
            if self._generator_state is not None:
                saved_type, saved = self._generator_state
                if saved_type != device.type:
                    raise FaceverError(f"the class sampler's saved state is for {saved_type}, the run is on {device.type}")
                g.set_state(saved)
            else:
                g.manual_seed((self.seed * 1_000_003 + self.rank * 7_919 + 29) % (2**63))
            self._generator, self._generator_state = g, None
        return self._generator

    def _sample(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Sorted local columns kept this step (None: all). Every positive of the batch is kept."""
        if self.num_sampled >= self.local_classes:
            return None
        device = self.weight.device
        scores = torch.rand(self.local_classes, generator=self._sampling_generator(device), device=device)
        local = labels - self.lo
        positives = local[(local >= 0) & (local < self.local_classes)]
        scores[positives] = 2.0  # above any draw in [0, 1)
        keep = max(self.num_sampled, int(torch.unique(positives).numel()))
        return torch.topk(scores, keep, sorted=False).indices.sort().values

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._loss(embeddings, labels, instruments=False)[0]

    def loss_and_instruments(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the global batch's mean cross-entropy, `heads.instrument_sums` of the rows this rank owns)."""
        return self._loss(embeddings, labels, instruments=True)

    def _loss(self, embeddings: torch.Tensor, labels: torch.Tensor, *, instruments: bool):
        if embeddings.dim() != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(f"ShardedClassifier expects embeddings N x {self.in_features}, got {tuple(embeddings.shape)}")
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(f"ShardedClassifier expects labels of shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            dtype = torch.promote_types(torch.promote_types(embeddings.dtype, self.weight.dtype), torch.float32)
            x = gather_rows(embeddings.to(dtype), group=self.group, rank=self.rank, world_size=self.world_size,
                            grad_scale=self.grad_scale)
            labels = gather_rows(labels.long(), group=self.group, rank=self.rank, world_size=self.world_size)
            kept = self._sample(labels) if self.training else None
            # Normalising rows is local to each rank (the gathered embeddings, this shard's classes).
            x, w = cosine_operands(x, self.weight.to(dtype), self.cosine_scale,
                                   normalise_weights=self.transform.margin.normalises_weights)
            b = None if self.bias is None else self.bias.to(dtype)
            local = labels - self.lo
            owned = (local >= 0) & (local < self.local_classes)
            if kept is not None:
                column = torch.full((self.local_classes,), -1, dtype=torch.long, device=w.device)
                column[kept] = torch.arange(kept.numel(), device=w.device)
                w = w[kept]
                b = None if b is None else b[kept]
                target = torch.where(owned, column[local.clamp(0, self.local_classes - 1)], -1)
            else:
                target = torch.where(owned, local, -1)
            logits = x @ w.t()
            # The one transform of every head (heads.transform_targets), on the rows whose class is here.
            logits, scores = transform_targets(logits, x, w, target.clamp_min(0), owned, self.transform,
                                               training=self.training, instruments=instruments, bias=b)
            if b is not None:
                logits = logits + b
            loss, p_target, other_max = _DistributedCrossEntropy.apply(logits, target, self.group, self.world_size,
                                                                       instruments)
            if not instruments:
                return loss, None
            return loss, instrument_sums(p_target, scores.raw >= other_max, scores)


def make_head(
    kind: str,
    in_features: int,
    num_classes: int,
    *,
    classifier: str = "full",
    sample_rate: float = 1.0,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """The training head: `heads.create_head` (full) or this rank's `ShardedClassifier` (sharded)."""
    if classifier not in CLASSIFIERS:
        raise FaceverError(f"unknown classifier {classifier!r}; known: {', '.join(CLASSIFIERS)}")
    if classifier == "full":
        if sample_rate != 1.0:
            raise FaceverError(f"sampling negative classes (rate {sample_rate}) needs the sharded classifier")
        return create_head(kind, in_features, num_classes, **options)
    options = {k: v for k, v in options.items() if v is not None}
    return ShardedClassifier(kind, in_features, num_classes, rank=rank, world_size=world_size,
                             sample_rate=sample_rate, seed=seed, **options)


def is_sharded(head: nn.Module) -> bool:
    return isinstance(head, ShardedClassifier)


# ---------------------------------------------------------------------------------------------
# What each layout costs (computed, not measured): the table in docs/distributed.md


@dataclass(frozen=True)
class ClassifierCost:
    """Per GPU and per step, for a `classes x dim` float32 classifier trained with SGD + momentum."""

    classes: int
    dim: int
    gpus: int
    layout: str  # "full" (DDP) or "sharded"
    weight_bytes: int  # classifier weights held by one GPU
    state_bytes: int  # weights + gradient + momentum held by one GPU
    logits_bytes: int  # logits (and their softmax) of one step on one GPU
    comm_bytes: int  # classifier traffic of one step, as the tensors' sizes each GPU contributes


def classifier_cost(classes: int, dim: int, gpus: int, *, layout: str, batch_per_gpu: int = 128,
                    sample_rate: float = 1.0, bytes_per_value: int = 4) -> ClassifierCost:
    """Bytes of the classifier per GPU and of its communication per step.

    full: every GPU holds `C x D`; the gradient (`C x D`) is all-reduced every step (when gpus > 1).
    sharded: the largest shard `ceil(C / W) x D`; per step the embeddings (`W*B x D`) are
    all-gathered, their gradient reduce-scattered (same size), labels (int64) all-gathered, and
    three floats per global sample all-reduced (max, sum, target logit). Logits: `B x C` (full) or
    `W*B x r*ceil(C/W)` (sharded), twice (logits and softmax/gradient).
    """
    if layout not in CLASSIFIERS:
        raise ValueError(f"layout must be one of {CLASSIFIERS}, got {layout!r}")
    v = bytes_per_value
    n = batch_per_gpu * gpus
    if layout == "full":
        rows = classes
        comm = classes * dim * v if gpus > 1 else 0
        logits = 2 * batch_per_gpu * classes * v
    else:
        rows = -(-classes // gpus)
        comm = (2 * n * dim * v + n * 8 + 3 * n * v) if gpus > 1 else 0
        logits = 2 * n * math.ceil(sample_rate * rows) * v
    weight = rows * dim * v
    return ClassifierCost(classes, dim, gpus, layout, weight, 3 * weight, logits, comm)

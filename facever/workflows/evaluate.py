"""The one evaluation workflow: a benchmark and where its embeddings come from in, a scored result out.

Every scoring command goes through here (eval-lfw, eval-fglfw, eval-ytf, eval-bin, eval-ijb, ensemble;
`verify` shares `EmbedSettings` and `load_model`):

1. `open_benchmark(name, path, ...)` (a pair benchmark) or `open_ijb(root, set_name, ...)` reads the
   protocol; a malformed file fails here, naming its line, before any model loads.
2. `benchmark_embeddings(bench, source, ...)`: the embeddings keyed by the protocol's items, from an
   embeddings file (`Source(embeddings=...)`) or from a model run now over the benchmark's data
   (`Source(model=...)`), through the one embedding cache (`facever.embedding.cache`). Missing inputs
   are named before the model loads.

   | benchmark                | a model embeds                              | cache (in OUT)   | embeddings used (in OUT) |
   |--------------------------|---------------------------------------------|------------------|--------------------------|
   | lfw, fglfw, calfw, cplfw | the pairs' images under `data`              | embedding_cache/ | embeddings.npz           |
   | bin                      | the `.bin`'s own images                     | embedding_cache/ | embeddings.npz           |
   | ytf                      | the videos' frames under `data` (mean each) | frame_cache/     | video_embeddings.npz     |
   | ijbc, ijbb               | crops aligned from the given landmarks      | embedding_cache/ | embeddings.npz           |

   In an ensemble the embeddings of the model named NAME go to `embeddings_NAME.npz` (YTF:
   `video_embeddings_NAME.npz`). A file source is used as it is (YTF frame embeddings are averaged
   per video first, and those are written).
3. `evaluate(bench, source, ...)` / `evaluate_ensemble(bench, sources, ...)`: the one engine
   (`facever.verification`), the one report writer (`facever.verification.report`: report.json and
   roc.png, IJB also scores.npz), and a result object for the caller to show: `to_dict()` is
   report.json's content, `title` and `tables()` the summary as tables of text cells (`note`: a line under them).

Settings come in two groups, each a frozen dataclass whose defaults are facever's
(`facever.core.settings`): `EmbedSettings` (how a model embeds) and `ScoringSettings` (how pairs are
scored). A new option for every scoring command is a field of one of them, read here.

The workflow never prints: messages, warnings and progress go through `facever.core.progress.Hooks`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from facever.core.errors import FaceverError, InputFileError
from facever.core.progress import Hooks
from facever.core.settings import (
    AMP_MODES, CONVENTIONS, DEFAULT_AMP, DEFAULT_CONVENTION, DEFAULT_DEVICE, DEFAULT_FLIP, DEFAULT_FUSION,
    DEFAULT_THRESHOLDS, EMBED_BATCH_SIZE, FLIP_MODES, FUSIONS, METRICS, PAIR_BENCHMARKS, THRESHOLD_MODES, check_choice,
)

# -- settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedSettings:
    """How a model turns images into embeddings: the same options on every command that runs a model.

    `amp`: the precision mode (auto, bf16, fp16, off; `facever.core.devices.resolve_amp`).
    `weights`: the state dict of a `facenet:*` / `arcface:*` model (`load_embedding_model`).
    """

    flip: str = DEFAULT_FLIP
    batch_size: int = EMBED_BATCH_SIZE
    device: str = DEFAULT_DEVICE
    amp: str = DEFAULT_AMP
    weights: Path | None = None

    def __post_init__(self) -> None:
        check_choice("flip", self.flip, FLIP_MODES)
        check_choice("amp", self.amp, AMP_MODES)
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class ScoringSettings:
    """How a protocol's pairs are scored (`facever.verification.evaluate.evaluate_protocol`'s options).

    `metric` None: cosine with exact thresholds, squared L2 with grid thresholds (facenet's). IJB sets
    take only `convention` (their test modes are their own). `convention`: whose number the report gives
    (`facever.verification.conventions`): facever's engine with these options, or a peer script's, which
    sets metric, thresholds and mean subtraction itself (and on IJB the test mode and 1:N numbers).
    """

    thresholds: str = DEFAULT_THRESHOLDS
    metric: str | None = None
    subtract_mean: bool = False
    allow_missing: bool = False
    convention: str = DEFAULT_CONVENTION

    def __post_init__(self) -> None:
        check_choice("thresholds", self.thresholds, THRESHOLD_MODES)
        if self.metric is not None:
            check_choice("metric", self.metric, METRICS)
        check_choice("convention", self.convention, CONVENTIONS)

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of `evaluate_protocol` (and `evaluate_ensemble`)."""
        return {"metric": self.metric, "thresholds": self.thresholds, "subtract_mean": self.subtract_mean,
                "allow_missing": self.allow_missing, "convention": self.convention}


@dataclass(frozen=True)
class Source:
    """Where one model's embeddings come from: an embeddings file (or `Embeddings` already in memory), or a
    model run over the benchmark's data.

    `name`: in an ensemble, the model's name (its files are OUT/embeddings_NAME.npz; messages start with it).
    """

    embeddings: Path | None = None
    model: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.embeddings is None) == (self.model is None):
            raise FaceverError("give either an embeddings file or a model", options=("embeddings", "model"))

    @classmethod
    def parse(cls, text: str | Path, name: str | None = None) -> "Source":
        """An existing `.npz` file is an embeddings file; anything else a model (`load_embedding_model`)."""
        from facever.protocols.catalog import is_embeddings_file

        if is_embeddings_file(text):
            return cls(embeddings=Path(text), name=name)
        return cls(model=str(text), name=name)

    @property
    def text(self) -> str:
        return str(self.embeddings) if self.embeddings is not None else str(self.model)


def load_model(spec: str, embed: EmbedSettings, **preprocessing):
    """The `EmbeddingModel` of `spec` (a model.pt, run folder, facenet:*, arcface:*, .onnx ...) on `embed.device`.
    `preprocessing`: mean, std or color overrides for graphs that do not say (`load_embedding_model`)."""
    from facever.embedding.loading import load_embedding_model

    return load_embedding_model(spec, weights=embed.weights, device=embed.device, **preprocessing)


# -- benchmarks ------------------------------------------------------------------------------------------

# What a model embeds for each kind of pair benchmark, in messages.
_DATA_WHAT = {"images": "image folder", "ytf": "YTF root (holding aligned_images_DB/ or frame_images_DB/)",
              "bin": ".bin file"}


@dataclass
class PairBenchmark:
    """A pair protocol ready to score, with the data a model embeds and what the report records about it.

    `data`: the image folder the pairs' paths start from (lfw, fglfw, calfw, cplfw), the YTF root (ytf);
    a `.bin` holds its own images (`blobs`). YTF only: `frames` per video (None: all), `layout`
    (auto, frames, aligned), `align` (detect and align each frame here).
    """

    name: str
    protocol: Any  # PairProtocol
    path: Path
    data: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    frames: int | None = None
    layout: str = "auto"
    align: bool = False
    blobs: list[bytes] | None = None

    @property
    def kind(self) -> str:
        return self.name if self.name in ("ytf", "bin") else "images"

    def used_file(self, model_name: str | None = None) -> str:
        """The name of the embeddings file a run writes in OUT (`embeddings_NAME.npz` in an ensemble)."""
        stem = "video_embeddings" if self.kind == "ytf" else "embeddings"
        return f"{stem}_{model_name}.npz" if model_name else f"{stem}.npz"

    def default_cache(self, out: Path | None) -> Path | None:
        if out is None:
            return None
        return Path(out) / ("frame_cache" if self.kind == "ytf" else "embedding_cache")

    def title(self, label: str, settings: dict[str, Any]) -> str:
        p = self.protocol
        shown = {"lfw": "LFW", "ytf": "YTF", "bin": self.path.name}.get(self.name, self.name.upper())
        what = "video pairs" if self.kind == "ytf" else "pairs"
        title = f"{shown} {p.n_folds}-fold verification: {len(p)} {what} from {self.path}, {label}"
        if self.kind == "ytf":
            title += f", frames per video: {settings.get('frames')}"
        return title


def open_benchmark(name: str, path: str | Path, *, data: str | Path | None = None, ext: str | None = None,
                   pairs_per_fold: int | None = None, frames: int | None = None, layout: str = "auto",
                   align: bool = False) -> PairBenchmark:
    """Read the pair benchmark `name` (lfw, fglfw, calfw, cplfw, ytf, bin) from its protocol file `path`.

    `ext`: lfw appends it to `Name_0001` (default .jpg); fglfw/calfw/cplfw replace the list's
    extension with it (default: keep the list's). `pairs_per_fold`: fglfw's fold size (default 600).
    `frames`, `layout`, `align`: YTF only (`PairBenchmark`).
    """
    from facever.protocols.catalog import read_benchmark
    from facever.protocols.pair_protocol import check_folds

    check_choice("benchmark", name, PAIR_BENCHMARKS)
    path = Path(path)
    if name == "bin":
        from facever.protocols.insightface_bin import bin_protocol, load_bin

        blobs, issame = load_bin(path)
        protocol = bin_protocol(issame, name=path.name, source=path)
        return PairBenchmark(name, protocol, path, data=path, blobs=blobs, settings={
            "bin_file": str(path), "images": len(blobs), "folds_rule": "10 contiguous blocks (insightface)"})
    protocol = read_benchmark(name, path, ext=ext, pairs_per_fold=pairs_per_fold)
    check_folds(protocol)  # k-fold needs two folds: refused before any model runs
    data = Path(data) if data is not None else None
    if name == "ytf":
        return PairBenchmark(name, protocol, path, data=data, frames=frames, layout=layout, align=align, settings={
            "splits_file": str(path),
            "frames": frames if frames is not None else "all",
            "frame_sampling": "all frames" if frames is None else "frame floor((k + 1/2) * n / N), k = 0..N-1, of n",
            "aggregation": "mean of L2-normalised frame embeddings, L2-normalised",
            "align": align,
        })
    settings: dict[str, Any] = {"pairs_file": str(path)}
    if name in ("fglfw", "calfw", "cplfw"):
        settings["ext"] = ext
        if name == "fglfw":
            settings["pairs_per_fold"] = pairs_per_fold if pairs_per_fold is not None else 600
        else:
            settings["fold_rule"] = "positives: token - 1; negatives: file order cut into one equal block per fold"
    return PairBenchmark(name, protocol, path, data=data, settings=settings)


@dataclass
class IJBBenchmark:
    """An IJB-B/C set's 1:1 protocol (and 1:N search sets when asked), with the test modes to score."""

    set_name: str
    root: Path
    meta: Any  # facever.protocols.ijb.IJBMeta
    modes: list  # facever.verification.ijb.TestMode
    search_sets: tuple | None = None
    _landmarks: Any = None

    @property
    def landmarks(self):
        """The set's five points and faceness scores (read on first use: models align from them, D1 modes
        weigh by them)."""
        if self._landmarks is None:
            from facever.protocols.ijb import read_landmarks

            self._landmarks = read_landmarks(self.meta.landmarks_path())
        return self._landmarks

    def needs_landmarks(self, source: Source) -> bool:
        return source.model is not None or any(m.detector for m in self.modes)

    def used_file(self, model_name: str | None = None) -> str:
        return f"embeddings_{model_name}.npz" if model_name else "embeddings.npz"

    def default_cache(self, out: Path | None) -> Path | None:
        return Path(out) / "embedding_cache" if out is not None else None


def open_ijb(root: str | Path, set_name: str, *, modes: str | Sequence = "F1N0D0", one_to_n: bool = False,
             hooks: Hooks | None = None) -> IJBBenchmark:
    """Read IJB set `set_name` (ijbc, ijbb) under `root`; `modes`: test modes (`parse_test_modes` text or a
    list of `TestMode`); `one_to_n`: also read the 1:N gallery and probe files."""
    from facever.protocols import ijb as reader
    from facever.verification.ijb import parse_test_modes

    hooks = hooks or Hooks()
    modes = parse_test_modes(modes) if isinstance(modes, str) else list(modes)
    start = time.perf_counter()
    meta = reader.read_ijb(root, set_name)
    hooks.message(f"{set_name}: {len(meta.pairs)} template pairs, {len(meta.media)} image lines "
                  f"({time.perf_counter() - start:.1f}s to read)")
    search_sets = None
    if one_to_n:
        galleries, probe_path = reader.search_files(meta.folder, set_name)
        search_sets = ([(name, reader.read_search_set(path)) for name, path in galleries],
                       reader.read_search_set(probe_path))
    return IJBBenchmark(set_name, Path(root), meta, modes, search_sets)


# -- embeddings ------------------------------------------------------------------------------------------


@dataclass
class Embedded:
    """One source's embeddings for a benchmark: keyed by the protocol's items (video ids for YTF), with
    `label` (how titles and errors name them) and `settings` (what the report records about them)."""

    embeddings: Any  # Embeddings
    label: str
    settings: dict[str, Any] = field(default_factory=dict)


def benchmark_embeddings(bench: PairBenchmark | IJBBenchmark, source: Source, *, embed: EmbedSettings | None = None,
                         allow_missing: bool = False, out: str | Path | None = None, cache: str | Path | None = None,
                         crops: str | Path | None = None, hooks: Hooks | None = None) -> Embedded:
    """The embeddings `bench` needs from `source` (module doc): loaded from the file, or computed now with
    the model (cached in `cache`, default the benchmark's folder in `out`; the embeddings used written
    to `out`). `allow_missing`: images that cannot be read are left out (their pairs dropped later)
    instead of failing. `crops`: IJB only, the folder of aligned crops (default OUT/crops_HxW)."""
    embed = embed or EmbedSettings()
    hooks = hooks or Hooks()
    out = Path(out) if out is not None else None
    cache = Path(cache) if cache is not None else bench.default_cache(out)
    if isinstance(bench, IJBBenchmark):
        if source.model is not None:
            return _ijb_model(bench, source, embed, out=out, cache=cache, crops=crops, hooks=hooks)
        return _from_file(source, {})
    if source.embeddings is not None:
        return _pairs_from_file(bench, source, out=out)
    if bench.kind == "bin":
        return _bin_model(bench, source, embed, out=out, cache=cache, hooks=hooks)
    if bench.data is None:
        raise FaceverError(f"{source.model} is a model: give the {_DATA_WHAT[bench.kind]} to embed it on")
    if bench.kind == "ytf":
        return _ytf_model(bench, source, embed, out=out, cache=cache, hooks=hooks)
    return _images_model(bench, source, embed, allow_missing=allow_missing, out=out, cache=cache, hooks=hooks)


def _from_file(source: Source, settings: dict[str, Any]):
    from facever.core.embeddings_file import Embeddings, load_embeddings

    if isinstance(source.embeddings, Embeddings):  # already in memory (the Python API's callers)
        return Embedded(source.embeddings, "the embeddings given", {"embeddings_file": None, **settings})
    return Embedded(load_embeddings(source.embeddings), str(source.embeddings),
                    {"embeddings_file": str(source.embeddings), **settings})


def _pairs_from_file(bench: PairBenchmark, source: Source, *, out: Path | None) -> Embedded:
    """An embeddings file as the protocol needs it: YTF frame embeddings are averaged per video (and written)."""
    used = _from_file(source, {})
    if bench.kind != "ytf":
        return used
    from facever.protocols import ytf

    emb = used.embeddings
    items = bench.protocol.items()
    if bench.align:
        raise FaceverError("`align` aligns frames before embedding them: it needs a model", options=("align", "model"))
    if all(len(p.split("/")) == 2 for p in emb.paths):
        # Already one embedding per video (`Name/video` keys, e.g. video_embeddings.npz of an earlier run);
        # videos missing from it are refused or dropped (`allow_missing`) by the evaluation.
        if bench.frames is not None:
            raise FaceverError("`frames` needs frame embeddings; this file holds one embedding per video",
                               options=("frames",))
        used.settings.update({"frames": emb.metadata.get("frames", "as in the embeddings file"),
                              "frames_per_video": emb.metadata.get("frames_per_video")})
        return used
    if bench.data is not None:
        tree = ytf.find_video_tree(bench.data, layout=bench.layout)
        frame_lists = _match_prefix(ytf.list_video_frames(tree, items), emb, tree)
        used.settings.update({"layout": tree.layout, "videos_folder": str(tree.base)})
    else:
        frame_lists = ytf.frames_from_embeddings(emb, items)
    videos = ytf.video_embeddings(emb, items, frame_lists, frames=bench.frames)
    videos.metadata["frame_embeddings_metadata"] = emb.metadata
    used.embeddings = videos
    used.settings["frames_per_video"] = videos.metadata.get("frames_per_video")
    if out is not None:
        _save_used(out / bench.used_file(source.name), videos)
    return used


def _match_prefix(frame_lists: dict[str, list[str]], emb, tree) -> dict[str, list[str]]:
    """Frame paths as the embeddings file writes them: relative to the *_DB folder or to the YTF root."""
    index = emb.index()
    first = next(iter(frame_lists.values()))[0]
    if first in index:
        return frame_lists
    prefixed = f"{tree.base.name}/"
    if prefixed + first in index:
        return {v: [prefixed + f for f in fl] for v, fl in frame_lists.items()}
    return frame_lists


def _prefix(source: Source) -> str:
    return f"{source.name}: " if source.name else ""


def _stage(what: str, source: Source) -> str:
    return f"{what} ({source.name})" if source.name else what


def _embedded_message(source: Source, net, emb, total: int, reused: int, cache: Path | None) -> str:
    reuse = f" ({len(emb) - reused} computed, {reused} reused from {cache})" if reused else ""
    return f"{_prefix(source)}{len(emb)} of {total} images embedded with {net.model_id}{reuse}"


def _model_settings(source: Source, embed: EmbedSettings, saved: Path | None, **more) -> dict[str, Any]:
    return {"model": source.model, "flip": embed.flip, **more,
            **({"embeddings_file": str(saved)} if saved is not None else {})}


def _images_model(bench: PairBenchmark, source: Source, embed: EmbedSettings, *, allow_missing: bool,
                  out: Path | None, cache: Path | None, hooks: Hooks) -> Embedded:
    """A model over the pairs' images: missing images named first (unless `allow_missing`), then embedded
    through the one cache; unreadable ones fail the run, naming them, or are left out."""
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import BadImagesError

    items = bench.protocol.items()
    if not bench.data.is_dir():
        raise FaceverError(f"{bench.data}: image folder not found")
    if not allow_missing:
        missing = [p for p in items if not (bench.data / p).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
            raise FaceverError(f"{len(missing)} of {len(items)} images of {bench.path} are missing under "
                               f"{bench.data}: {shown}; use `allow_missing` to drop their pairs",
                               options=("allow_missing",))
    net = load_model(source.model, embed)
    try:
        with hooks.progress(_stage("embedding", source), len(items)) as advance:
            emb, bad, reused = embed_items_cached(
                net, bench.data, items, cache=cache, flip=embed.flip, batch_size=embed.batch_size,
                device=embed.device, amp=embed.amp, skip_bad=allow_missing, progress=advance,
                on_plan=lambda done, todo: advance(done),
            )
    except BadImagesError as exc:
        hooks.bad_images(exc.bad)
        raise FaceverError(f"{_prefix(source)}{exc}; use `allow_missing` to drop their pairs",
                           options=("allow_missing",)) from None
    if bad:
        hooks.bad_images(bad)
    hooks.message(_embedded_message(source, net, emb, len(items), reused, cache))
    saved = _save_used(out / bench.used_file(source.name), emb) if out is not None else None
    return Embedded(emb, f"model {source.model}", _model_settings(source, embed, saved, images=str(bench.data)))


def _bin_model(bench: PairBenchmark, source: Source, embed: EmbedSettings, *, out: Path | None,
               cache: Path | None, hooks: Hooks) -> Embedded:
    """A model over a `.bin`'s own images: each fitted to the model's input (centre crop to its aspect
    ratio, then resize), through the one cache; an undecodable image fails the run and writes nothing."""
    from facever.core.images import decode_image_bytes_rgb
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import BadImagesError
    from facever.embedding.sources import ImageBytes
    from facever.protocols.insightface_bin import image_names

    names = image_names(len(bench.blobs))
    first = decode_image_bytes_rgb(bench.blobs[0], name=f"{bench.path} image 0").shape[:2]
    net = load_model(source.model, embed)
    size = tuple(int(v) for v in net.input_size)
    if tuple(first) != size:
        hooks.message(f"{_prefix(source)}images are {first[0]}x{first[1]}: centre-cropped to the model's aspect "
                      f"ratio and resized to {size[0]}x{size[1]} (h x w)")
    try:
        with hooks.progress(_stage("embedding", source), len(names)) as advance:
            emb, _, reused = embed_items_cached(
                net, ImageBytes(bench.blobs, names, source=bench.path), names, cache=cache, flip=embed.flip,
                batch_size=embed.batch_size, device=embed.device, amp=embed.amp, keep_partial=False,
                progress=advance, on_plan=lambda done, todo: advance(done),
            )
    except BadImagesError as exc:
        b = exc.bad[0]
        raise InputFileError(bench.path, f"image {int(b.path)}: {b.reason}"
                             + (f" (and {len(exc.bad) - 1} more)" if len(exc.bad) > 1 else "")) from None
    emb.metadata.update({"bin_file": str(bench.path), "source_image_size": list(first),
                         "fit": "centre crop to the input's aspect ratio, then resize"})
    hooks.message(_embedded_message(source, net, emb, len(names), reused, cache))
    saved = _save_used(out / bench.used_file(source.name), emb) if out is not None else None
    return Embedded(emb, f"model {source.model}", _model_settings(
        source, embed, saved, source_image_size=list(first), input_size=list(size)))


def _ytf_model(bench: PairBenchmark, source: Source, embed: EmbedSettings, *, out: Path | None,
               cache: Path | None, hooks: Hooks) -> Embedded:
    """A model over YouTube Faces videos: the frames `frames` selects (aligned here with `align`), through
    the one cache, averaged per video (`facever.embedding.videos`)."""
    from facever.embedding.videos import embed_videos
    from facever.protocols import ytf

    items = bench.protocol.items()
    tree = ytf.find_video_tree(bench.data, layout=bench.layout, prefer="frames" if bench.align else "aligned")
    frame_lists = ytf.list_video_frames(tree, items)  # names every missing video before any model loads
    net = load_model(source.model, embed)
    aligner = None
    if bench.align:
        from facever.data_prep.align import FaceAligner

        aligner = FaceAligner(tuple(net.input_size), device=embed.device)
    hooks.message(f"{_prefix(source)}{len(items)} videos under {tree.base} ({tree.layout})"
                  + (f"; frame cache {cache}" if cache else "; no frame cache (give an output folder or a cache)"))
    frame_count = len({f for fl in ytf.select_frames(frame_lists, frames=bench.frames).values() for f in fl})
    with hooks.progress(_stage("embedding frames", source), frame_count, unit="frame") as advance:
        videos, facts = embed_videos(
            net, tree, items, frames=bench.frames, cache_dir=cache, flip=embed.flip, batch_size=embed.batch_size,
            device=embed.device, amp=embed.amp, align=aligner, progress=advance, frame_lists=frame_lists,
        )
    hooks.message(f"{_prefix(source)}frames: {facts['frames_embedded_now']} embedded now, "
                  f"{facts['frames_from_cache']} from the cache, {facts['bad_frames']} unusable")
    saved = _save_used(out / bench.used_file(source.name), videos) if out is not None else None
    return Embedded(videos, f"model {source.model}", _model_settings(
        source, embed, saved, **facts, frames_per_video=videos.metadata.get("frames_per_video")))


def _ijb_model(bench: IJBBenchmark, source: Source, embed: EmbedSettings, *, out: Path | None,
               cache: Path | None, crops: str | Path | None, hooks: Hooks) -> Embedded:
    """A model over an IJB set: every image aligned from its given five points onto the model's template
    (resumable crops), then embedded through the one cache."""
    from facever.embedding.cache import embed_items_cached

    if out is None and crops is None:
        raise FaceverError("a model's aligned crops and embeddings cache need a folder: give `out` (or `crops`)",
                           options=("out", "crops"))
    meta = bench.meta
    landmarks = bench.landmarks
    net = load_model(source.model, embed)
    h, w = (int(v) for v in net.input_size)
    crops_dir = Path(crops) if crops is not None else out / f"crops_{h}x{w}"
    names = meta.image_names()
    with hooks.progress(_stage("aligning", source), len(names)) as on_crop:
        summary = _ijb_crops(meta, landmarks, (h, w), crops_dir, progress=on_crop)
    hooks.message(f"{_prefix(source)}crops: {summary.written} aligned now, {summary.reused} kept in {crops_dir}")
    with hooks.progress(_stage("embedding", source), len(names)) as advance:
        emb, _, reused = embed_items_cached(
            net, crops_dir, names, cache=cache, flip=embed.flip, batch_size=embed.batch_size, device=embed.device,
            amp=embed.amp, progress=advance, on_plan=lambda done, todo: advance(done),
        )
    emb.metadata.update({"ijb_set": meta.set_name, "alignment": f"given 5 points onto the {h}x{w} template "
                         "(Umeyama similarity, bilinear warp, as facever align)"})
    hooks.message(_embedded_message(source, net, emb, len(names), reused, cache))
    saved = _save_used(out / bench.used_file(source.name), emb) if out is not None else None
    return Embedded(emb, f"model {source.model}", _model_settings(source, embed, saved, crops=str(crops_dir)))


def _ijb_crops(meta, landmarks, size: tuple[int, int], crops_dir: Path, *, progress=None):
    """Align every image of an IJB set from its five given points onto the template of `size`, as `facever
    align` warps (`data_prep.landmark_crops`). Resumable: crops already in `crops_dir` are kept."""
    from facever.core.locks import folder_lock
    from facever.data_prep.landmark_crops import crop_from_landmarks

    names = meta.image_names()
    first_row: dict[str, int] = {}
    for i, n in enumerate(meta.media.names):
        first_row.setdefault(n, i)
    where = [meta.media.where(first_row[n]) for n in names]
    rows = landmarks.rows(names, where=where.__getitem__)
    # A crops folder is an output folder like any other: new, empty, or facever's own crops (core.output_folders).
    with folder_lock(crops_dir, kind="ijb-crops"):
        return crop_from_landmarks(meta.images_dir, names, landmarks.points[rows], crops_dir, tuple(size),
                                   where=where, progress=progress)


def _save_used(path: Path, emb) -> Path:
    """Write the embeddings a run used next to its report, unless the file already holds exactly these rows
    (a rerun that reused every row leaves it untouched)."""
    from facever.core.embeddings_file import load_embeddings, save_embeddings

    if emb.metadata.get("reused") == len(emb) and path.is_file():
        try:
            old = load_embeddings(path)
        except FaceverError:
            old = None
        if old is not None and old.paths == emb.paths and old.embeddings.shape == emb.embeddings.shape \
                and (old.embeddings == emb.embeddings).all():
            return path
    save_embeddings(path, emb.paths, emb.embeddings, emb.metadata)
    return path


# -- evaluation ------------------------------------------------------------------------------------------


@dataclass
class PairEvaluation:
    """One source scored on a pair benchmark: the engine's result, a title, the files written."""

    result: Any  # VerificationResult
    title: str
    written: dict[str, Path] = field(default_factory=dict)

    @property
    def dropped_pairs(self) -> int:
        return self.result.dropped_pairs

    def to_dict(self) -> dict[str, Any]:
        """report.json's content."""
        return self.result.to_dict()

    def tables(self) -> list:
        """The per-fold table and the summary, each `(columns, rows)` (`facever.verification.report`)."""
        from facever.verification.report import fold_table, summary_table

        return [fold_table(self.result), summary_table(self.result)]

    def verbatim(self) -> list[str]:
        """Lines to print as they are after the tables: a peer convention's script output, if any."""
        from facever.verification.report import peer_lines

        return peer_lines(self.result)

    note = None


@dataclass
class IJBEvaluation:
    """One source scored on an IJB set: a result per test mode (1:N for the first when asked)."""

    results: list
    search: Any
    title: str
    written: dict[str, Path] = field(default_factory=dict)
    dropped_pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        from facever.verification.report import ijb_report_data

        return ijb_report_data(self.results, search=self.search)

    def tables(self) -> list:
        """The 1:1 table (and the 1:N one with a search), each `(columns, rows)`."""
        from facever.verification.report import ijb_tables

        return ijb_tables(self.results, self.search)

    @property
    def note(self) -> str:
        from facever.verification.report import ijb_note

        return ijb_note(self.search)


def evaluate(bench: PairBenchmark | IJBBenchmark, source: Source, *, embed: EmbedSettings | None = None,
             scoring: ScoringSettings | None = None, out: str | Path | None = None, cache: str | Path | None = None,
             crops: str | Path | None = None, hooks: Hooks | None = None) -> PairEvaluation | IJBEvaluation:
    """Score `source` on `bench` (module doc): embeddings, the engine, report.json and roc.png in `out`.

    `cache`: the embedding cache folder (default: the benchmark's folder in `out`); `crops`: IJB's
    aligned crops (default OUT/crops_HxW). Nothing is written without `out` but the cache and crops.
    """
    embed = embed or EmbedSettings()
    scoring = scoring or ScoringSettings()
    hooks = hooks or Hooks()
    out = Path(out) if out is not None else None
    if isinstance(bench, IJBBenchmark):
        return _evaluate_ijb(bench, source, embed=embed, scoring=scoring, out=out, cache=cache, crops=crops,
                             hooks=hooks)
    from facever.verification.conventions import check_benchmark
    from facever.verification.evaluate import evaluate_protocol
    from facever.verification.report import write_report

    check_benchmark(scoring.convention, bench.name)  # before any model time
    used = benchmark_embeddings(bench, source, embed=embed, allow_missing=scoring.allow_missing, out=out, cache=cache,
                                hooks=hooks)
    result = evaluate_protocol(bench.protocol, used.embeddings, embeddings_source=used.label,
                               **scoring.engine_options())
    result.settings.update({**bench.settings, **used.settings, "embeddings_metadata": used.embeddings.metadata})
    written = write_report(out, result) if out is not None else {}
    return PairEvaluation(result, bench.title(used.label, result.settings), written)


def _ijb_convention(bench: IJBBenchmark, scoring: ScoringSettings):
    """`(bench, convention)`: under a peer's convention its test mode is scored first (it replaces the
    default F1N0D0; modes asked for with `modes` follow it)."""
    from facever.verification.conventions import check_benchmark
    from facever.verification.ijb import TestMode

    conv = check_benchmark(scoring.convention, bench.set_name)
    if conv.is_peer:
        first = TestMode.parse(conv.ijb_mode)
        default = [TestMode.parse(get_ijb_default_mode())]
        rest = [] if bench.modes == default else [m for m in bench.modes if m != first]
        bench = dataclasses.replace(bench, modes=[first, *rest])
    return bench, conv


def get_ijb_default_mode() -> str:
    """facever's own IJB test mode (the facever convention's)."""
    from facever.verification.conventions import get_convention

    return get_convention("facever").ijb_mode


def _evaluate_ijb(bench: IJBBenchmark, source: Source, *, embed: EmbedSettings, scoring: ScoringSettings,  # noqa: ARG001
                  out, cache, crops, hooks) -> IJBEvaluation:
    """`evaluate` on an IJB set: every test mode of `bench`, 1:N for the first when asked. `scoring`'s pair
    options do not apply to templates (the CLI does not offer them here); its convention does
    (`_ijb_convention`: insightface's test mode first, and its 1:N numbers beside NIST's)."""
    from facever.verification.ijb import evaluate_ijb, evaluate_search, ijb_template_features, insightface_search
    from facever.verification.report import write_ijb_report

    bench, conv = _ijb_convention(bench, scoring)
    landmarks = bench.landmarks if bench.needs_landmarks(source) else None  # named before any model loads
    used = benchmark_embeddings(bench, source, embed=embed, out=out, cache=cache, crops=crops, hooks=hooks)
    emb, meta = used.embeddings, bench.meta
    results, search = [], None
    for k, mode in enumerate(bench.modes):
        t0 = time.perf_counter()
        feats = ijb_template_features(meta, emb, mode, landmarks=landmarks)
        results.append(evaluate_ijb(meta, emb, mode, template_feats=feats))
        if k == 0 and bench.search_sets is not None:
            search = evaluate_search(*feats, *bench.search_sets)
            if "insightface" in conv.ijb_one_to_n:
                search = (*search, insightface_search(*feats, *bench.search_sets))
        hooks.message(f"{mode.label}: scored in {time.perf_counter() - t0:.1f}s")
    for r in results:
        r.settings.update({"embeddings_source": used.label, "embeddings_metadata": emb.metadata,
                           "convention": conv.to_dict()})
    written = {}
    if out is not None:
        written = write_ijb_report(out, results, t1=meta.pairs.t1, t2=meta.pairs.t2, search=search)
    r0 = results[0]
    title = (f"{bench.set_name.upper()} 1:1: {r0.n_pairs} template pairs ({r0.n_same} same), {r0.n_templates} "
             f"templates, {r0.n_images} images; {used.label}")
    return IJBEvaluation(results, search, title, written)


# -- ensembles -------------------------------------------------------------------------------------------


def default_names(sources: Sequence[str]) -> list[str]:
    """A distinct plain name per model: a run folder's name for RUN/model.pt, a file's stem, facenet-vggface2."""
    names: list[str] = []
    for src in sources:
        src = str(src)
        if src.startswith("facenet:"):
            base = src.split("=", 1)[0].replace(":", "-")
        else:
            path = Path(src)
            base = path.parent.name if path.name == "model.pt" and path.parent.name else path.stem
        name, k = base or "model", 2
        while name in names or name == "ensemble":
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


@dataclass
class EnsembleEvaluation:
    """Each model alone and their fusion on one benchmark (`facever.embedding.ensemble.EnsembleResult`)."""

    result: Any  # EnsembleResult
    title: str
    written: dict[str, Path] = field(default_factory=dict)
    fused: Any = None  # the fused Embeddings written to `fused_file`, when asked
    fused_file: Path | None = None
    ijb: bool = False

    @property
    def dropped_pairs(self) -> int:
        return getattr(self.result.ensemble, "dropped_pairs", 0)

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def tables(self) -> list:
        """One table, `(columns, rows)`: a row per model and one for the ensemble (IJB: two rows each)."""
        from facever.verification.report import comparison_table, ijb_tables

        if self.ijb:
            rows = self.result.results()
            return ijb_tables([r for _, r in rows], names=[n for n, _ in rows])
        return [comparison_table(self.result)]

    @property
    def note(self) -> str | None:
        from facever.verification.report import IJB_TAR_NOTE

        return IJB_TAR_NOTE if self.ijb else None


def evaluate_ensemble(bench: PairBenchmark | IJBBenchmark, sources: Sequence[Source | str], *,
                      names: Sequence[str] | None = None, weights: Sequence[float] | None = None,
                      fusion: str = DEFAULT_FUSION, embed: EmbedSettings | None = None,
                      scoring: ScoringSettings | None = None, out: str | Path | None = None,
                      save_fused: str | Path | None = None, hooks: Hooks | None = None) -> EnsembleEvaluation:
    """Each source alone and their fusion on `bench`, side by side (`facever.embedding.ensemble`).

    Sources are embeddings files or models (`Source.parse`), each embedded as `evaluate` would (the
    embeddings of model NAME written to OUT/embeddings_NAME.npz). `names`: one plain name per source
    (default `default_names`); `weights`: one per source (default equal); `fusion`: concat or
    score-mean. `save_fused`: also write the fused embeddings there (pair benchmarks). IJB sets fuse
    the template scores of their (single) test mode.
    """
    from facever.core.paths import check_output_is_not_an_input
    from facever.embedding.ensemble import check_model_names
    from facever.embedding.loading import model_files

    embed = embed or EmbedSettings()
    scoring = scoring or ScoringSettings()
    hooks = hooks or Hooks()
    out = Path(out) if out is not None else None
    check_choice("fusion", fusion, FUSIONS)
    sources = [s if isinstance(s, Source) else Source.parse(s) for s in sources]
    if save_fused is not None:
        if isinstance(bench, IJBBenchmark):
            raise FaceverError("fused embeddings are written for pair benchmarks only (an IJB ensemble fuses template "
                               "scores)", options=("save_embeddings",))
        inputs = [f for s in sources for f in ([s.embeddings] if s.embeddings else model_files(s.model))]
        check_output_is_not_an_input(save_fused, inputs + [bench.path])
    if len(sources) < 2:
        raise FaceverError(f"an ensemble needs at least two embeddings files or models, got {len(sources)}")
    names = list(names) if names is not None else default_names([s.text for s in sources])
    if len(names) != len(sources):
        raise FaceverError(f"`names` gives {len(names)} names for {len(sources)} models", options=("names",))
    check_model_names(names)
    sources = [dataclasses.replace(s, name=n) for s, n in zip(sources, names)]
    if isinstance(bench, IJBBenchmark):
        return _ensemble_ijb(bench, sources, names, weights, embed=embed, scoring=scoring, out=out, hooks=hooks)
    from facever.embedding.ensemble import evaluate_ensemble as engine_ensemble
    from facever.verification.conventions import check_benchmark
    from facever.verification.report import write_ensemble_report

    check_benchmark(scoring.convention, bench.name)

    per_model = [benchmark_embeddings(bench, s, embed=embed, allow_missing=scoring.allow_missing, out=out, hooks=hooks)
                 for s in sources]
    result = engine_ensemble(bench.protocol, [u.embeddings for u in per_model], names, fusion=fusion, weights=weights,
                             **scoring.engine_options())
    for name, src, used in zip(names, sources, per_model):
        result.models[name].settings.update({"pairs_file": str(bench.path), "source": src.text,
                                             "embeddings_metadata": used.embeddings.metadata})
    result.ensemble.settings["pairs_file"] = str(bench.path)
    written = write_ensemble_report(out, result) if out is not None else {}
    proto = bench.protocol
    title = f"{proto.name.upper()} {len(proto)} pairs from {bench.path}: {len(sources)} models, fusion {fusion}"
    evaluation = EnsembleEvaluation(result, title, written)
    if save_fused is not None:
        evaluation.fused, evaluation.fused_file = _save_fused(Path(save_fused), per_model, result, fusion, names,
                                                              sources)
    return evaluation


def _save_fused(path: Path, per_model: Sequence[Embedded], result, fusion: str, names, sources):
    from facever.core.embeddings_file import save_embeddings
    from facever.embedding.ensemble import common_paths, fuse_embeddings

    embeddings = [u.embeddings for u in per_model]
    fused = fuse_embeddings(embeddings, weights=result.weights, method=fusion, items=common_paths(embeddings),
                            names=names)
    fused.metadata["sources"] = [s.text for s in sources]
    save_embeddings(path, fused.paths, fused.embeddings, fused.metadata)
    return fused, path


def _ensemble_ijb(bench: IJBBenchmark, sources: Sequence[Source], names, weights, *, embed: EmbedSettings,
                  scoring: ScoringSettings, out, hooks):
    """IJB-B/C: per-image embeddings of each source, fused at the template level (one test mode)."""
    from facever.embedding.ensemble import evaluate_ensemble_ijb
    from facever.verification.report import write_ensemble_report

    bench, conv = _ijb_convention(bench, scoring)
    if conv.is_peer:
        bench = dataclasses.replace(bench, modes=bench.modes[:1])
    if len(bench.modes) != 1:
        raise FaceverError("`mode`: give one test mode for an ensemble", options=("mode",))
    mode = bench.modes[0]
    landmarks = bench.landmarks if any(bench.needs_landmarks(s) for s in sources) else None
    per_model = [benchmark_embeddings(bench, s, embed=embed, out=out, hooks=hooks) for s in sources]
    result = evaluate_ensemble_ijb(bench.meta, [u.embeddings for u in per_model], names, weights=weights, mode=mode,
                                   landmarks=landmarks)
    for name, src in zip(names, sources):
        result.models[name].settings["source"] = src.text
    for _, res in result.results():
        res.settings["convention"] = conv.to_dict()
    written = {}
    if out is not None:
        written = write_ensemble_report(out, result, title=f"{bench.set_name.upper()} ROC: models and ensemble",
                                        min_fpr=1e-6)
    first = result.ensemble
    title = (f"{bench.set_name.upper()} 1:1: {first.n_pairs} template pairs, {first.n_templates} templates; "
             f"{len(sources)} models, test mode {mode.label}")
    return EnsembleEvaluation(result, title, written, ijb=True)

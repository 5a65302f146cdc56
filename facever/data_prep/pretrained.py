"""Public face-recognition models by name: where each comes from, how to feed it, under what licence,
and the cache folder they are pulled into.

The registry (`PRETRAINED`) gives, for each model: the URL the publishing project's OWN code downloads
(and which file of that code says so), the file's format (which facever loader reads it), the input
contract (size, alignment, channel order, mean/std, the publisher's flip convention), the licence as
the publisher states it, the training data, and the accuracy the publisher claims, quoted with its
source. Nothing here is measured by facever.

The cache: `$FACEVER_HOME/models/` (else the platform's cache folder, `~/.cache/facever/models/` on
Linux), one folder per model holding its file, and one lock file, `models.lock` (JSON), that records
per model the SHA-256 of the download and of the model file, and whether its licence was shown.

Integrity: where the publisher gives a checksum it is verified. Where it does not (none of the
current entries has one) facever trusts the FIRST download and pins its SHA-256 in the lock file
("trust on first use"); any later download or cached file that differs is refused. A model file
never runs code: ONNX graphs run in onnxruntime, weights are read with `torch.load(weights_only=True)`
(`facever.embedding.loading`). Archives are checked member by member before one member is extracted
(`fetch.extract_member`). Downloads resume, are atomic and locked (`fetch.download`, `core.locks`).

Sources of the files: url > `FACEVER_URL_<NAME>` > `$FACEVER_MODEL_MIRROR` + file name > the
publisher's URL. `FACEVER_OFFLINE=1` never touches the network; a model that is not cached then
fails with one line saying what to download and where to put it.

Torch-free on purpose: `facever models list` and the command line's progress hook import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from facever.core.checksums import file_digest
from facever.core.errors import FaceverError, InputFileError
from facever.core.environment import offline
from facever.core.settings import HOME_ENV, MODEL_MIRROR_ENV, OFFLINE_ENV

log = logging.getLogger(__name__)

LOCK_FILE = "models.lock"
LOCK_FORMAT = "facever-models-lock/1"
TRUST_PUBLISHER = "publisher checksum"
TRUST_FIRST_USE = "trust on first use"


@dataclass(frozen=True)
class InputContract:
    """How a model must be fed: what the publisher's code does, and what facever does to match it."""

    input_size: tuple[int, int]  # (h, w)
    color: str  # channel order the network expects: RGB or BGR
    mean: tuple[float, float, float]  # facever's convention: x = (pixels / 255 - mean) / std
    std: tuple[float, float, float]
    normalisation: str  # the publisher's formula on 0..255 pixels
    normalisation_source: str  # where the publisher's code says so
    alignment: str
    flip: str  # the publisher's convention for the mirrored face
    embedding_dim: int
    output: str = ""

    def summary(self) -> str:
        h, w = self.input_size
        return f"{h}x{w} {self.color}, {self.normalisation}"


@dataclass(frozen=True)
class PretrainedModel:
    """One public model: its file, its source, its contract, its licence, its published claims."""

    name: str
    summary: str
    publisher: str
    url: str
    url_source: str  # where in the publisher's own code that URL is built
    download: str  # the downloaded file's name (an archive, or the model file itself)
    format: str  # facever loader: one of settings.PRETRAINED_FORMATS
    contract: InputContract
    licence: str
    licence_source: str
    training_data: str
    claimed_accuracy: str
    accuracy_source: str
    member: str | None = None  # the model file inside the archive (a name one member has, at any depth)
    variant: str = ""  # the facenet loader's name for it (vggface2, casia-webface)
    sha256: str | None = None  # the publisher's checksum of the download, where one is published
    sha256_source: str = ""
    size: str = ""  # as the publisher states it (approximate)
    in_torch_cache: bool = False  # facenet-pytorch keeps this file in $TORCH_HOME/checkpoints/
    notes: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        """The model file's name in the cache."""
        return PurePosixPath(self.member).name if self.member else self.download

    @property
    def integrity(self) -> str:
        return TRUST_PUBLISHER if self.sha256 else TRUST_FIRST_USE

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["file"] = self.file
        data["integrity"] = self.integrity
        return data


_FACENET_README = "https://github.com/timesler/facenet-pytorch/blob/master/README.md"
_FACENET_CODE = ("facenet-pytorch models/inception_resnet_v1.py, load_weights(): the same URL in its "
                 "released 2.5.3 and on master")
_FACENET_LICENCE = (
    "not stated for the weights: facenet-pytorch's README gives no licence for them; its repository's "
    "LICENSE.md is the MIT licence (Copyright (c) 2019 Timothy Esler), for the code. The README says the "
    "weights were ported from davidsandberg/facenet's pretrained TensorFlow models"
)
_FACENET_CONTRACT = InputContract(
    input_size=(160, 160),
    color="RGB",
    mean=(127.5 / 255.0,) * 3,
    std=(128.0 / 255.0,) * 3,
    normalisation="(x - 127.5) / 128",
    normalisation_source="facenet-pytorch's fixed_image_standardization",
    alignment=("facenet-pytorch: 'Both pretrained models were trained on 160x160 px images ... images should "
               "also be cropped to the face using MTCNN' (its MTCNN crops the box, no rotation); facever aligns "
               "on its 5-point template scaled to 160x160 (rotation corrected), which is not the same crop"),
    flip="none: facenet-pytorch embeds the crop alone",
    embedding_dim=512,
    output="L2-normalised (facenet-pytorch's InceptionResnetV1 normalises its output)",
)
_INSIGHTFACE_README = "https://github.com/deepinsight/insightface/blob/master/python-package/README.md"
_INSIGHTFACE_CODE = ("insightface python package (>= 0.7.3) insightface/utils/storage.py: "
                     "download() fetches BASE_REPO_URL + '/' + name + '.zip', called by FaceAnalysis(name={name!r})")
_INSIGHTFACE_LICENCE = (
    "non-commercial research purposes only: 'The pretrained models we provided with this library are "
    "available for non-commercial research purposes only, including both auto-downloading models and "
    "manual-downloading models.' (the library's code is MIT)"
)
_ARCFACE_CONTRACT = InputContract(
    input_size=(112, 112),
    color="RGB",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    normalisation="(x - 127.5) / 127.5",
    normalisation_source=("insightface model_zoo/arcface_onnx.py ArcFaceONNX: input_mean 127.5, input_std 127.5, "
                          "cv2.dnn.blobFromImages(..., swapRB=True) on BGR images, i.e. RGB in"),
    alignment=("insightface norm_crop: 5-point similarity onto arcface_dst, ArcFace's 112x112 template; "
               "facever's 112x112 template is the same points"),
    flip=("none in insightface's FaceAnalysis; its benchmark evaluation (arcface_torch eval/verification.py) "
          "adds the mirrored crop's embedding (facever's flip 'sum')"),
    embedding_dim=512,
    output="not normalised (facever normalises before comparing)",
)

PRETRAINED: dict[str, PretrainedModel] = {
    entry.name: entry
    for entry in (
        PretrainedModel(
            name="facenet-vggface2",
            summary="FaceNet Inception-ResNet-v1 20180402-114759 (davidsandberg/facenet), facenet-pytorch's port",
            publisher="timesler/facenet-pytorch",
            url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
            url_source=_FACENET_CODE,
            download="20180402-114759-vggface2.pt",
            format="facenet",
            variant="vggface2",
            contract=_FACENET_CONTRACT,
            licence=_FACENET_LICENCE,
            licence_source=_FACENET_README,
            training_data="VGGFace2 (8,631 identities in its classifier, as the README says)",
            claimed_accuracy="LFW 0.9965 (README table 'LFW accuracy (as listed [by davidsandberg/facenet])')",
            accuracy_source=_FACENET_README,
            size="107MB",
            in_torch_cache=True,
        ),
        PretrainedModel(
            name="facenet-casia-webface",
            summary="FaceNet Inception-ResNet-v1 20180408-102900 (davidsandberg/facenet), facenet-pytorch's port",
            publisher="timesler/facenet-pytorch",
            url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
            url_source=_FACENET_CODE,
            download="20180408-102900-casia-webface.pt",
            format="facenet",
            variant="casia-webface",
            contract=_FACENET_CONTRACT,
            licence=_FACENET_LICENCE,
            licence_source=_FACENET_README,
            training_data="CASIA-WebFace (10,575 identities in its classifier, as the README says)",
            claimed_accuracy="LFW 0.9905 (README table 'LFW accuracy (as listed [by davidsandberg/facenet])')",
            accuracy_source=_FACENET_README,
            size="111MB",
            in_torch_cache=True,
        ),
        PretrainedModel(
            name="arcface-r50-webface600k",
            summary="ArcFace ResNet-50 on WebFace600K: w600k_r50.onnx, the recognition model of insightface's "
            "default pack buffalo_l",
            publisher="deepinsight/insightface",
            url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            url_source=_INSIGHTFACE_CODE.format(name="buffalo_l"),
            download="buffalo_l.zip",
            member="w600k_r50.onnx",
            format="onnx",
            contract=_ARCFACE_CONTRACT,
            licence=_INSIGHTFACE_LICENCE,
            licence_source=_INSIGHTFACE_README,
            training_data="WebFace600K (README: recognition model 'ResNet50@WebFace600K')",
            claimed_accuracy="buffalo_l: MR-ALL 91.25, African 90.29, Caucasian 94.70, South Asian 93.16, "
            "East Asian 74.96, LFW 99.83, CFP-FP 99.33, AgeDB-30 98.23, IJB-C(E4) 97.25",
            accuracy_source=_INSIGHTFACE_README + " ('Recognition Accuracy')",
            size="326MB (the whole pack; facever keeps only w600k_r50.onnx)",
        ),
        PretrainedModel(
            name="arcface-r100-glint360k",
            summary="ArcFace ResNet-100 on Glint360K: glintr100.onnx, the recognition model of insightface's "
            "pack antelopev2",
            publisher="deepinsight/insightface",
            url="https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip",
            url_source=_INSIGHTFACE_CODE.format(name="antelopev2"),
            download="antelopev2.zip",
            member="glintr100.onnx",
            format="onnx",
            contract=_ARCFACE_CONTRACT,
            licence=_INSIGHTFACE_LICENCE,
            licence_source=_INSIGHTFACE_README,
            training_data="Glint360K (README: recognition model 'ResNet100@Glint360K')",
            claimed_accuracy="none for antelopev2 in the package README; insightface's model zoo lists an R100 "
            "trained on Glint360K at MR-ALL 90.659 (African 89.488, Caucasian 94.285, South Asian 93.434, "
            "East Asian 72.528), without saying it is this file",
            accuracy_source="https://github.com/deepinsight/insightface/blob/master/model_zoo/README.md",
            size="407MB (the whole pack; facever keeps only glintr100.onnx)",
            notes=(
                "the package README marks antelopev2 as not auto-downloaded ('Auto: N', a Google Drive link); "
                "its code builds this release URL all the same, and the asset was reported missing there in "
                "January 2024 (insightface issue 2517)",
                "the zip holds its files under a folder antelopev2/",
            ),
        ),
    )
}


def names() -> tuple[str, ...]:
    return tuple(PRETRAINED)


def find(spec: str) -> PretrainedModel | None:
    """The registry entry named `spec`, or None (a path or another kind of model spec)."""
    return PRETRAINED.get(str(spec))


def get(name: str) -> PretrainedModel:
    """The registry entry `name`; a one-line error listing the names on a typo."""
    entry = find(name)
    if entry is None:
        raise FaceverError(f"unknown pretrained model {name!r}; known: {', '.join(PRETRAINED)}")
    return entry


# ---------------------------------------------------------------------------------------------------
# The cache folder and its lock file


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where pulled models live: `$FACEVER_HOME/models`, else the platform's cache folder + `facever/models`."""
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "models"
    if sys.platform == "darwin":
        base = Path("~/Library/Caches").expanduser() / "facever"
    elif os.name == "nt":
        base = Path(env.get("LOCALAPPDATA") or Path("~/AppData/Local").expanduser()) / "facever" / "Cache"
    else:
        base = Path(env.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "facever"
    return base / "models"


def torch_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where facenet-pytorch keeps its downloaded weights: `$TORCH_HOME/checkpoints` (its own rule)."""
    env = os.environ if environ is None else environ
    torch_home = env.get("TORCH_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(torch_home)) / "checkpoints"


def model_folder(entry: PretrainedModel, root: Path | None = None) -> Path:
    return (root if root is not None else cache_root()) / entry.name


def read_lock(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The lock file's per-model records (`{}` when there is none yet)."""
    path = (root if root is not None else cache_root()) / LOCK_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"not a readable facever models lock file ({exc}); it holds the pinned "
                                   "checksums: repair it, or delete it to trust the cached files anew") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise InputFileError(path, "not a facever models lock file (no 'models' table)")
    return models


def _update_lock(root: Path, name: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the record of `name`, under the lock file's own lock (a short wait for others)."""
    from facever.core.atomic import write_text_atomic
    from facever.core.locks import file_lock

    path = root / LOCK_FILE
    with file_lock(path, wait=30.0):
        models = read_lock(root)
        record = {**models.get(name, {}), **fields}
        models[name] = record
        write_text_atomic(path, json.dumps({"format": LOCK_FORMAT, "models": models}, indent=2, sort_keys=True) + "\n")
    return record


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------
# What a pull reports (the library never prints: the command line installs its own events)


class PullEvents:
    """Receives what a pull has to say. The default logs: notices (licence, trust on first use) as
    warnings, so a library user sees them; the command line draws progress bars instead."""

    def notice(self, text: str) -> None:
        log.warning("%s", text)

    def download_started(self, filename: str, already: int, total: int | None) -> None:
        log.info("downloading %s (%s bytes already here, %s in all)", filename, already, total or "?")

    def downloaded(self, n: int) -> None:
        pass

    def download_finished(self) -> None:
        pass


_EVENTS: contextvars.ContextVar[PullEvents] = contextvars.ContextVar("facever_pull_events", default=PullEvents())


@contextlib.contextmanager
def pull_events(events: PullEvents) -> Iterator[PullEvents]:
    """Send what pulls say inside the block (including pulls by `load_embedding_model`) to `events`."""
    token = _EVENTS.set(events)
    try:
        yield events
    finally:
        _EVENTS.reset(token)


# ---------------------------------------------------------------------------------------------------
# Pulling


@dataclass(frozen=True)
class CachedModel:
    """A model file ready to load, and how it got there."""

    entry: PretrainedModel
    path: Path
    sha256: str  # of `path`, checked against the pin
    trust: str  # TRUST_PUBLISHER or TRUST_FIRST_USE
    url: str  # where it came from (or would come from)
    downloaded: bool = False  # this call transferred bytes
    bytes_received: int = 0
    resumed_from: int = 0
    pinned_now: bool = False  # this call pinned the sha256 (trust on first use)
    licence_shown: bool = False  # this call showed the licence notice
    lock_file: Path = field(default=Path())


def is_offline(environ: Mapping[str, str] | None = None) -> bool:
    """$FACEVER_OFFLINE, checked like an option (facever.core.environment)."""
    return offline(environ)


def source_url(entry: PretrainedModel, environ: Mapping[str, str] | None = None) -> str:
    """The URL a pull uses: FACEVER_URL_<NAME> > $FACEVER_MODEL_MIRROR/<file> > the publisher's."""
    return _remote(entry, environ).url


def _remote(entry: PretrainedModel, environ: Mapping[str, str] | None):
    from facever.data_prep.fetch import RemoteFile, resolve_entry

    remote = RemoteFile(name=entry.name, url=entry.url, filename=entry.download, description=entry.summary,
                        sha256=entry.sha256)
    return resolve_entry(remote, environ=environ, mirror_env=MODEL_MIRROR_ENV)


def cached_path(entry: PretrainedModel, environ: Mapping[str, str] | None = None) -> Path | None:
    """The model file facever would use without downloading, or None."""
    root = cache_root(environ)
    own = model_folder(entry, root) / entry.file
    if own.is_file():
        return own
    if entry.in_torch_cache:
        other = torch_cache_dir(environ) / entry.download
        if other.is_file():
            return other
    return None


def ensure_model(
    name: str | PretrainedModel,
    *,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    events: PullEvents | None = None,
    timeout: float = 30.0,
    retries: int = 2,
) -> CachedModel:
    """The cached file of model `name`, pulled first when missing (or when `force`), always checked.

    A cached file (facever's cache, or facenet-pytorch's for its two models) is hashed and compared
    with the pin in the lock file; without a pin it is pinned now (trust on first use). A missing
    file is downloaded (resuming a `.part`), verified against the publisher's checksum or the pinned
    one, and for an archive its one model member is extracted safely; the archive is then deleted.
    The licence is shown once per model (remembered in the lock file).

    Raises FaceverError: offline without the file (says what to download and where to put it), a
    download or file that differs from its pin (trust on first use) or from the publisher's
    checksum, another process pulling the same model, an archive that is unsafe or lacks the member.
    """
    from facever.core.locks import file_lock

    entry = get(name) if isinstance(name, str) else name
    events = events if events is not None else _EVENTS.get()
    root = cache_root(environ)
    folder = model_folder(entry, root)
    url = source_url(entry, environ)
    path = None if force else cached_path(entry, environ)
    pull = None
    if path is None and is_offline(environ) and not (folder / entry.download).is_file():
        raise FaceverError(f"{entry.name} is not in the cache and {OFFLINE_ENV} is set: {_by_hand(entry, folder, url, environ)}")
    if path is None:
        # One puller per model: a second process is refused at once, naming the first. Readers of a
        # cached file take no lock (many commands may use one model at once).
        with file_lock(folder / entry.download):
            pull = _pull(entry, folder, url, read_lock(root).get(entry.name, {}), force=force, events=events,
                         environ=environ, timeout=timeout, retries=retries, root=root)
            path = folder / entry.file
            # Checked while still locked: a fresh file that fails its pin is deleted before anyone uses it.
            digest, pinned_now = _check_pin(entry, root, path, url=url, events=events, pull=pull)
    else:
        digest, pinned_now = _check_pin(entry, root, path, url=url, events=events, pull=None)
    shown = _show_licence_once(entry, root, events)
    return CachedModel(
        entry=entry, path=path, sha256=digest, trust=entry.integrity, url=url,
        downloaded=bool(pull and pull.bytes_received), bytes_received=pull.bytes_received if pull else 0,
        resumed_from=pull.resumed_from if pull else 0, pinned_now=pinned_now, licence_shown=shown,
        lock_file=root / LOCK_FILE,
    )


def _by_hand(entry: PretrainedModel, folder: Path, url: str, environ) -> str:
    """What to download and where to put it, for a machine without network (one line)."""
    where = f"download {url} and put it at {folder / entry.download}"
    if entry.member:
        where += f" (or only its member {entry.member} at {folder / entry.file})"
    if entry.in_torch_cache:
        where += f" (or in facenet-pytorch's cache {torch_cache_dir(environ)}/)"
    return where


@dataclass(frozen=True)
class _Pulled:
    bytes_received: int
    resumed_from: int
    download_sha256: str  # of the download (archive or file), to pin once the model file passed its check


def _pull(entry: PretrainedModel, folder: Path, url: str, pins: dict[str, Any], *, force: bool, events: PullEvents,
          environ, timeout: float, retries: int, root: Path) -> _Pulled:
    """Download into `folder` (resuming), verify against the publisher's or the pinned checksum, extract."""
    from facever.data_prep import fetch

    archive = folder / entry.download
    # A plain model file is its own download: its pinned sha256 applies to the download as well.
    expected = entry.sha256 or pins.get("download_sha256") or (None if entry.member else pins.get("sha256"))
    started = False

    def on_start(already: int, total: int | None) -> None:
        nonlocal started
        started = True
        events.download_started(entry.download, already, total)

    placed = archive.is_file() and not force
    try:
        result = fetch.download(url, archive, sha256=expected, force=force, timeout=timeout, retries=retries,
                                progress=events.downloaded, on_start=on_start)
    except fetch.ChecksumError as exc:
        raise FaceverError(_mismatch(entry, root, what=f"{archive}" if placed else f"{entry.download} from {url}",
                                     actual=exc.actual, expected=expected, pins=pins, placed=placed)) from None
    except FaceverError as exc:
        raise FaceverError(f"{entry.name}: {exc}", options=exc.options) from None
    finally:
        if started:
            events.download_finished()
    download_sha = expected or file_digest(archive)
    if entry.member:
        fetch.extract_member(archive, entry.member, folder / entry.file)
        archive.unlink()
    return _Pulled(result.bytes_received, result.resumed_from, download_sha)


def _check_pin(entry: PretrainedModel, root: Path, path: Path, *, url: str, events: PullEvents,
               pull: _Pulled | None) -> tuple[str, bool]:
    """sha256 of `path`, compared with the pin; pinned now when there is none (trust on first use)."""
    digest = file_digest(path)
    record = read_lock(root).get(entry.name, {})
    pinned = record.get("sha256")
    expected = entry.sha256 if entry.sha256 and not entry.member else pinned
    if expected and digest != expected:
        if pull is not None:
            path.unlink()  # just made by this pull, and wrong: never leave it for a later run to use
        raise FaceverError(_mismatch(entry, root, what=str(path), actual=digest, expected=expected, pins=record,
                                     placed=pull is None, cached=True))
    fields: dict[str, Any] = {}
    if pull is not None and record.get("download_sha256") != pull.download_sha256:
        fields["download_sha256"] = pull.download_sha256
    if not pinned:
        fields.update(sha256=digest, file=path.name, pinned=_now(), pinned_from=url if pull else str(path),
                      trust=entry.integrity)
    if fields:
        _update_lock(root, entry.name, **fields)
    if not pinned and not entry.sha256:
        events.notice(
            f"{entry.name}: no checksum is published for it, so facever trusts this first copy (trust on first "
            f"use): sha256 {digest} of {path.name} is pinned in {root / LOCK_FILE}; a later download or cached "
            "file that differs will be refused")
    return digest, not pinned


def _mismatch(entry: PretrainedModel, root: Path, *, what: str, actual: str | None, expected: str | None,
              pins: dict[str, Any], placed: bool, cached: bool = False) -> str:
    lock = root / LOCK_FILE
    got = f"sha256 {actual}" if actual else "another sha256"
    if entry.sha256 and expected == entry.sha256:
        why = f"not the publisher's checksum {entry.sha256}"
        fix = "delete it and pull again" if placed else "the download was deleted; try again or another mirror"
    else:
        when = f" on {pins['pinned']}" if pins.get("pinned") else ""
        why = (f"not the {expected} pinned in {lock}{when} (trust on first use: a file that differs from the "
               "first one is refused)")
        fix = (f"if the publisher really replaced the file, delete the {entry.name!r} entry of {lock} "
               + ("and the cached file " if cached else "") + "to trust the new one")
        if not placed:
            fix = "the download was deleted; " + fix
    return f"{entry.name}: {what} has {got}, {why}; {fix}"


def _show_licence_once(entry: PretrainedModel, root: Path, events: PullEvents) -> bool:
    if read_lock(root).get(entry.name, {}).get("licence_shown"):
        return False
    events.notice(f"{entry.name}: licence, as {entry.publisher} states it: {entry.licence} ({entry.licence_source})")
    _update_lock(root, entry.name, licence_shown=_now())
    return True


def registry_rows(environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every entry as plain data, with where its file is (or would be) and whether it is cached."""
    root = cache_root(environ)
    pins = read_lock(root)
    rows = []
    for entry in PRETRAINED.values():
        path = cached_path(entry, environ)
        record = pins.get(entry.name, {})
        rows.append({
            **entry.to_dict(),
            "source_url": source_url(entry, environ),
            "cached": path is not None,
            "path": str(path if path is not None else model_folder(entry, root) / entry.file),
            "pinned_sha256": record.get("sha256"),
        })
    return rows


"""Download the public benchmark files (LFW, its pairs, YTF splits): resumable, verified, safely extracted.

Three steps, each usable alone:

1. `download(url, path)`: streams into `path + ".part"` and resumes an interrupted transfer with an HTTP
   Range request; when the server ignores Range (answers 200, not 206) or the remote file changed
   (`If-Range` validator no longer matches) it restarts from byte zero. The `.part` file is renamed to
   `path` only after the byte count and the checksum are right, so a file under its final name is
   always complete.
2. `verify_file(path, sha256=..., md5=...)`: checks every digest that is known. A wrong checksum on a
   downloaded `.part` deletes it (its bytes are wrong, resuming from them would only repeat the error);
   a file the user placed under the final name is never deleted, only reported.
3. `extract_archive(archive, dest, folder=...)`: validates EVERY member before writing anything (no
   absolute path, no `..`, no symlink, hardlink, device or fifo member), extracts into a hidden temporary
   folder in `dest`, then renames it to `dest/folder` in one step, so an interrupted extraction leaves
   no half folder under the final name and is simply redone.

`fetch(name, dest)` chains them for a named `CATALOGUE` entry. URLs are overridable per call, per
environment variable (`FACEVER_URL_<NAME>`, e.g. `FACEVER_URL_LFW_PAIRS`) or by a mirror base URL
(`FACEVER_MIRROR`): precedence url > FACEVER_URL_<NAME> > mirror > FACEVER_MIRROR > catalogue default.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

from facever import __version__
from facever.core.checksums import file_digests
from facever.core.errors import FaceverError, InputFileError

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
# Called when a transfer starts: (bytes already in the .part file, total bytes or None when unknown).
OnStart = Callable[[int, "int | None"], None]

_CHUNK = 1 << 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteFile:
    """One public file: where it lives, what its bytes hash to, and what extracting it creates.

    `sha256`/`md5` are None where no published digest could be checked; verification is then skipped
    (and said so). `extracts_to` is the folder an archive creates in DEST (None for a plain file).
    `alternatives` are other public URLs documented to serve the same bytes (pass one with `url=`).
    """

    name: str
    url: str
    filename: str
    description: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    extracts_to: str | None = None
    alternatives: tuple[str, ...] = ()
    note: str = ""

    @property
    def is_archive(self) -> bool:
        return self.extracts_to is not None


# Checksums, with where each was checked (never invented):
# - lfw.tgz: sha256 from scikit-learn's sklearn/datasets/_lfw.py (figshare mirror used by
#   fetch_lfw_people); md5 = the one the UMass LFW page and torchvision's datasets/lfw.py publish; the
#   figshare object's ETag equals that md5, i.e. the mirror holds the UMass bytes (180,566,744 bytes).
# - lfw-funneled.tgz: sha256 from scikit-learn, md5 from UMass/torchvision (243,346,528 bytes).
# - lfw-deepfunneled.tgz: md5 from UMass/torchvision (and TFDS); no sha256 published -> md5 checked only.
# - pairs.txt: sha256 from scikit-learn and md5 from torchvision; both also recomputed here on the
#   copy in ../shared/data/protocols/lfw_pairs.txt (155,335 bytes), which matches both.
# - YTF splits.txt: no published digest found -> not verified.
_UMASS = "http://vis-www.cs.umass.edu/lfw/"

CATALOGUE: dict[str, RemoteFile] = {
    entry.name: entry
    for entry in (
        RemoteFile(
            name="lfw",
            url="https://ndownloader.figshare.com/files/5976018",
            filename="lfw.tgz",
            description="LFW images, original (unaligned) 250x250 JPEGs: lfw/<Name>/<Name>_<nnnn>.jpg, "
            "13,233 images of 5,749 people",
            sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
            md5="a17d05bd522c52d84eca14327a23d494",
            size=180_566_744,
            extracts_to="lfw",
            alternatives=(_UMASS + "lfw.tgz",),
            note="figshare mirror used by scikit-learn; byte-identical to the UMass original",
        ),
        RemoteFile(
            name="lfw-funneled",
            url="https://ndownloader.figshare.com/files/5976015",
            filename="lfw-funneled.tgz",
            description="LFW images aligned by funneling: lfw_funneled/<Name>/<Name>_<nnnn>.jpg",
            sha256="b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a",
            md5="1b42dfed7d15c9b2dd63d5e5840c86ad",
            size=243_346_528,
            extracts_to="lfw_funneled",
            alternatives=(_UMASS + "lfw-funneled.tgz",),
            note="figshare mirror used by scikit-learn",
        ),
        RemoteFile(
            name="lfw-deepfunneled",
            url=_UMASS + "lfw-deepfunneled.tgz",
            filename="lfw-deepfunneled.tgz",
            description="LFW images aligned by deep funneling: lfw-deepfunneled/<Name>/<Name>_<nnnn>.jpg",
            md5="68331da3eb755a505a502b5aacb3c201",
            extracts_to="lfw-deepfunneled",
            note="UMass host only (it has been unreachable at times); no sha256 is published, the "
            "published md5 is checked",
        ),
        RemoteFile(
            name="lfw-pairs",
            url="https://ndownloader.figshare.com/files/5976006",
            filename="pairs.txt",
            description="LFW View 2 pairs.txt: 10 folds x (300 same + 300 different) pairs",
            sha256="ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
            md5="9f1ba174e4e1c508ff7cdf10ac338a7d",
            size=155_335,
            alternatives=(_UMASS + "pairs.txt",),
            note="figshare mirror used by scikit-learn",
        ),
        RemoteFile(
            name="ytf-splits",
            url="http://www.cs.tau.ac.il/~wolf/ytfaces/splits.txt",
            filename="splits.txt",
            description="YouTube Faces splits.txt: 10 splits x 500 video pairs (header line first)",
            alternatives=("https://www.cs.tau.ac.il/~wolf/ytfaces/splits.txt",),
            note="no published checksum: not verified",
        ),
    )
}


# ---------------------------------------------------------------------------------------------------
# Catalogue look-up and overrides


def get_entry(name: str) -> RemoteFile:
    """The catalogue entry `name`; a clear error listing the known names on a typo."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise FaceverError(f"unknown dataset {name!r}; known: {known}") from None


def env_var_for(name: str) -> str:
    """Environment variable that overrides the URL of `name`: `lfw-pairs` -> `FACEVER_URL_LFW_PAIRS`."""
    return "FACEVER_URL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def resolve_entry(
    name: str | RemoteFile,
    *,
    url: str | None = None,
    mirror: str | None = None,
    sha256: str | None = None,
    environ: Mapping[str, str] | None = None,
    mirror_env: str = "FACEVER_MIRROR",
) -> RemoteFile:
    """The entry with overrides applied: url > FACEVER_URL_<NAME> > mirror > $mirror_env > default.

    A mirror is a base URL; the entry's file name is appended (`https://host/lfw/` -> `.../lfw.tgz`).
    An explicit `sha256` replaces the catalogue's digests (md5 included): it states what to expect.
    `mirror_env` names the environment variable holding a mirror: FACEVER_MIRROR for the datasets,
    FACEVER_MODEL_MIRROR for the pretrained models (one mirror is not the other's).
    """
    entry = get_entry(name) if isinstance(name, str) else name
    env = os.environ if environ is None else environ
    mirror = mirror or env.get(mirror_env) or None
    chosen = url or env.get(env_var_for(entry.name)) or None
    if chosen is None and mirror:
        chosen = mirror.rstrip("/") + "/" + entry.filename
    if chosen is not None:
        _check_url(chosen)
        entry = replace(entry, url=chosen)
    if sha256 is not None:
        entry = replace(entry, sha256=normalise_sha256(sha256), md5=None)
    return entry


def normalise_sha256(value: str) -> str:
    text = value.strip().lower()
    if not _HEX64.match(text):
        raise FaceverError(f"`sha256` must be 64 hexadecimal digits, got {value!r}", options=('sha256',))
    return text


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise FaceverError(f"unsupported URL {url!r}: expected http://, https:// or file://")


# ---------------------------------------------------------------------------------------------------
# Checksums


class ChecksumError(FaceverError):
    """The bytes on disk do not hash to the expected digest (`expected`, `actual`: hex, when known)."""

    def __init__(self, message: str = "", *, options=(), expected: str | None = None, actual: str | None = None):
        super().__init__(message, options=options)
        self.expected, self.actual = expected, actual


def verify_file(path: str | Path, *, sha256: str | None = None, md5: str | None = None) -> str | None:
    """Check every known digest of `path`. Returns the strongest one checked ("sha256"/"md5") or None
    when no digest is known (nothing verified). Raises ChecksumError naming the file on a mismatch."""
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    if not expected:
        return None
    actual = file_digests(path, tuple(expected))
    for name, value in expected.items():  # sha256 first: the one worth quoting in an error
        if actual[name] != value:
            raise ChecksumError(f"{path}: {name} mismatch: expected {value}, got {actual[name]}", expected=value,
                                actual=actual[name])
    return next(iter(expected))


# ---------------------------------------------------------------------------------------------------
# Download


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    bytes_received: int  # bytes transferred by this call (0 when the file was already there)
    resumed_from: int  # bytes kept from an earlier .part (0: started from zero)
    verified: str | None  # "sha256", "md5" or None (no digest known)
    already_present: bool


def part_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".part")


def _validator_path(path: Path) -> Path:
    # ETag / Last-Modified of the response the .part came from; sent as If-Range when resuming so a
    # server whose file changed sends the whole new file instead of splicing two versions.
    return path.with_name(path.name + ".part.validator")


def _offline_error(url: str, target: Path, reason: object) -> FaceverError:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return FaceverError(f"cannot read {url}: {reason}")
    host = parts.hostname or url
    return FaceverError(
        f"cannot reach {host}: {reason} (offline?) — download {url} manually and put it at {target}"
    )


def _open(url: str, *, start: int, validator: str | None, timeout: float):
    headers = {"User-Agent": f"facever/{__version__}", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked in resolve)


_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


def _transfer_once(
    url: str,
    part: Path,
    *,
    timeout: float,
    progress: Progress | None,
    on_start: OnStart | None,
    final: Path,
) -> tuple[int, int]:
    """One HTTP request appending to `part`. Returns (bytes received, offset it resumed from).

    Raises _Interrupted when the connection ended early (the .part keeps what arrived).
    """
    start = part.stat().st_size if part.exists() else 0
    validator_file = _validator_path(final)
    validator = validator_file.read_text().strip() if (start and validator_file.exists()) else None
    try:
        response = _open(url, start=start, validator=validator, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start > 0:
            # Range not satisfiable: either the .part is already whole (interrupted just before the
            # rename) or it is longer than the remote file. Content-Range "bytes */N" tells which.
            total = _total_from_unsatisfied(exc.headers.get("Content-Range"))
            exc.close()
            if total == start:
                return 0, start
            part.unlink()
            return _transfer_once(url, part, timeout=timeout, progress=progress, on_start=on_start, final=final)
        exc.close()
        raise FaceverError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _offline_error(url, final, getattr(exc, "reason", exc)) from None
    except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
        raise _offline_error(url, final, exc) from None

    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206 and start > 0:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != start:
                # A partial answer that does not continue our bytes: start over rather than splice.
                log.info("server answered an unexpected range for %s; restarting from zero", url)
                resumed_from, mode = 0, None
            else:
                resumed_from, mode = start, "ab"
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if mode is None:
                response.close()
                part.unlink()
                return _transfer_once(url, part, timeout=timeout, progress=progress, on_start=on_start, final=final)
        else:
            # 200: the server ignored Range (or If-Range said the file changed): the body is the
            # whole file, so what we had is discarded.
            if start:
                log.info("server sent the whole file for %s (no range support or file changed)", url)
            resumed_from, mode = 0, "wb"
            total = length
        expected_body = length
        new_validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if mode == "wb":
            if new_validator and not new_validator.startswith("W/"):
                validator_file.write_text(new_validator)
            else:
                with contextlib.suppress(FileNotFoundError):
                    validator_file.unlink()
        if on_start is not None:
            on_start(resumed_from, total)

        received = 0
        with open(part, mode) as out:
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
                raise _Interrupted(
                    f"{exc.__class__.__name__}: {exc}", resumed_from + received, total, received
                ) from None
            finally:
                out.flush()
                os.fsync(out.fileno())
        # http.client returns b"" (no error) when the peer closes before Content-Length: count ourselves.
        if expected_body is not None and received < expected_body:
            raise _Interrupted("connection closed early", resumed_from + received, total, received)
        return received, resumed_from


class _Interrupted(Exception):
    def __init__(self, reason: str, have: int, total: int | None, received: int):
        super().__init__(reason)
        self.reason, self.have, self.total, self.received = reason, have, total, received


def _total_from_unsatisfied(header: str | None) -> int | None:
    match = re.match(r"^bytes\s+\*/(\d+)$", (header or "").strip())
    return int(match.group(1)) if match else None


def download(
    url: str,
    path: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    force: bool = False,
    timeout: float = 30.0,
    retries: int = 2,
    retry_wait: float = 1.0,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
) -> DownloadResult:
    """Download `url` to `path` (resuming `path.part`), verify it, then rename it into place.

    An existing `path` is verified and reused unless `force`. `retries` extra attempts resume after a
    dropped connection (waiting `retry_wait * attempt` seconds); if all fail the `.part` file stays and
    the next call resumes from it. Raises FaceverError when offline, on an HTTP error, an incomplete
    transfer, or a checksum mismatch (the bad `.part` is deleted).
    """
    _check_url(url)
    path = Path(path)
    part = part_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if force:
        # The existing file stays until the new one is complete and verified (os.replace below): a
        # failed or interrupted forced download loses nothing.
        for stale in (part, _validator_path(path)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    elif path.exists():
        try:
            verified = verify_file(path, sha256=sha256, md5=md5)
        except ChecksumError as exc:
            # Never delete a file the user may have placed there themselves.
            raise ChecksumError(f"{exc} (delete it, or pass `force` to download again)", options=('force',),
                                expected=exc.expected, actual=exc.actual) from None
        return DownloadResult(path, 0, 0, verified, already_present=True)

    received_total, resumed_from = 0, None
    for attempt in range(retries + 1):
        try:
            received, resumed = _transfer_once(
                url, part, timeout=timeout, progress=progress, on_start=on_start, final=path
            )
            received_total += received
            resumed_from = resumed if resumed_from is None else resumed_from
            break
        except _Interrupted as exc:
            received_total += exc.received
            if resumed_from is None:
                resumed_from = exc.have - exc.received
            if attempt == retries:
                size = f" of {exc.total:,}" if exc.total else ""
                raise FaceverError(
                    f"download of {url} interrupted after {exc.have:,}{size} bytes ({exc.reason}); "
                    f"run the same command again to resume from {part}"
                ) from None
            log.info("download interrupted (%s); resuming (attempt %d)", exc.reason, attempt + 2)
            time.sleep(retry_wait * (attempt + 1))

    try:
        verified = verify_file(part, sha256=sha256, md5=md5)
    except ChecksumError as exc:
        # The bytes are wrong; keeping them would make the next run resume onto garbage.
        part.unlink()
        with contextlib.suppress(FileNotFoundError):
            _validator_path(path).unlink()
        raise ChecksumError(
            f"{exc}; the download from {url} was deleted. Run again to retry; if this mirror "
            "really serves a different file, pass its digest with `sha256`", options=('sha256',),
            expected=exc.expected, actual=exc.actual) from None
    os.replace(part, path)
    with contextlib.suppress(FileNotFoundError):
        _validator_path(path).unlink()
    if verified is None:
        log.info("no checksum known for %s: integrity not verified", path.name)
    return DownloadResult(path, received_total, resumed_from or 0, verified, already_present=False)


# ---------------------------------------------------------------------------------------------------
# Safe extraction


def _safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path a member may be written to; InputFileError when it would escape the folder."""
    if "\x00" in name:
        raise InputFileError(archive, f"member {name!r} has a NUL byte in its name; refusing to extract")
    posix = name.replace("\\", "/")
    # A drive letter ("C:/x") or a leading slash is absolute on some platform: refuse both.
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise InputFileError(archive, f"member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise InputFileError(
            archive, f"member {name!r} would be written outside the destination (..); refusing to extract"
        )
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


@dataclass(frozen=True)
class _Member:
    path: PurePosixPath
    is_dir: bool
    handle: object  # TarInfo or ZipInfo


def _tar_members(archive: Path, tar: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tar.getmembers():
        rel = _safe_member_path(archive, info.name)
        if info.issym() or info.islnk():
            kind = "symlink" if info.issym() else "hardlink"
            raise InputFileError(
                archive, f"member {info.name!r} is a {kind} (to {info.linkname!r}); links are refused"
            )
        if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
            raise InputFileError(archive, f"member {info.name!r} is a device or fifo; refusing to extract")
        if not (info.isfile() or info.isdir()):
            raise InputFileError(archive, f"member {info.name!r} has an unsupported type; refusing to extract")
        members.append(_Member(rel, info.isdir(), info))
    return members


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        rel = _safe_member_path(archive, info.filename)
        # Unix zips keep st_mode in the high 16 bits; many writers store permissions without a type.
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            raise InputFileError(archive, f"member {info.filename!r} is a symlink; links are refused")
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InputFileError(
                archive, f"member {info.filename!r} is a device or special file; refusing to extract"
            )
        members.append(_Member(rel, info.is_dir(), info))
    return members


def _refuse_clashes(archive: Path, members: list[_Member]) -> list[_Member]:
    """Two members of one name (a file twice, or a file and a folder) are refused: extracting both would
    silently keep one of them. A folder listed twice is harmless."""
    seen: dict[PurePosixPath, _Member] = {}
    for member in members:
        before = seen.setdefault(member.path, member)
        if before is not member and not (before.is_dir and member.is_dir):
            raise InputFileError(archive, f"two members are named {str(member.path)!r}; one would silently replace "
                                          "the other, so nothing is extracted")
    return members


def archive_kind(archive: str | Path) -> str:
    """"tar" or "zip", decided by the content (a mirror may name a zip `.tgz`); InputFileError otherwise."""
    archive = Path(archive)
    with open(archive, "rb") as f:
        head = f.read(6)
    if head.startswith(b"PK\x03\x04") or zipfile.is_zipfile(archive):
        return "zip"
    # gzip, bzip2, xz magic numbers: a compressed tar (a truncated one still fails clearly on extraction).
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")) or tarfile.is_tarfile(archive):
        return "tar"
    raise InputFileError(archive, "not a .tar/.tgz/.tar.gz or .zip archive")


def safe_extract(
    archive: str | Path,
    dest_dir: str | Path,
    *,
    progress: Progress | None = None,
    on_count: Callable[[int], None] | None = None,
) -> int:
    """Extract `archive` into `dest_dir` after checking every member; returns the number of members.

    Nothing is written unless all members pass: no absolute paths, no `..`, no links, no devices, no two
    members of one name.
    `on_count(n)` is called once the members are checked, before writing; `progress(1)` per member.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    kind = archive_kind(archive)
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tar:
                members = _refuse_clashes(archive, _tar_members(archive, tar))
                if on_count is not None:
                    on_count(len(members))
                _write_members(archive, root, members, lambda m: tar.extractfile(m.handle), progress)
        else:
            with zipfile.ZipFile(archive) as zf:
                members = _refuse_clashes(archive, _zip_members(archive, zf))
                if on_count is not None:
                    on_count(len(members))
                _write_members(archive, root, members, lambda m: zf.open(m.handle), progress)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InputFileError(archive, f"corrupt or truncated archive ({exc})") from None
    return len(members)


def _write_members(archive: Path, root: Path, members: list[_Member], open_member, progress) -> None:
    for member in members:
        try:
            _write_member(archive, root, member, open_member)
        except OSError as exc:
            # A file and a folder of one name, a name too long for the filesystem, a full disk.
            raise InputFileError(
                archive, f"cannot extract member {str(member.path)[:80]!r}: {exc.strerror or exc}"
            ) from None
        if progress is not None:
            progress(1)


def _write_member(archive: Path, root: Path, member: _Member, open_member) -> None:
    target = root.joinpath(*member.path.parts) if member.path.parts else root
    # Defence in depth: the checks above already exclude this, and we never create links.
    if not target.resolve().is_relative_to(root):
        raise InputFileError(archive, f"member {str(member.path)!r} escapes the destination")
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        source = open_member(member)
        if source is None:
            raise InputFileError(archive, f"member {str(member.path)!r} has no data")
        # Names are unique (`_refuse_clashes`) and this function never creates links.
        with source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)


def extract_member(archive: str | Path, member: str, target: str | Path) -> Path:
    """Extract the one file `member` of `archive` to `target`, atomically; returns `target`.

    `member` is a path inside the archive, or a file name that exactly one member has at any depth
    (packs are zipped with and without a top folder: `buffalo_l.zip` holds `w600k_r50.onnx`,
    `antelopev2.zip` holds `antelopev2/glintr100.onnx`). Every member is checked first, as by
    `safe_extract`: an archive with any member that would escape its folder (absolute path, `..`),
    or any link or device, is refused whole and nothing is written. The member goes to a hidden
    temporary file beside `target`, renamed into place once complete.
    """
    from facever.core.atomic import atomic_path

    archive, target = Path(archive), Path(target)
    kind = archive_kind(archive)
    wanted = str(_safe_member_path(archive, member))
    try:
        with contextlib.ExitStack() as stack:
            if kind == "tar":
                tar = stack.enter_context(tarfile.open(archive, "r:*"))
                members = _tar_members(archive, tar)
                opener = lambda m: tar.extractfile(m.handle)  # noqa: E731
            else:
                zf = stack.enter_context(zipfile.ZipFile(archive))
                members = _zip_members(archive, zf)
                opener = lambda m: zf.open(m.handle)  # noqa: E731
            files = [m for m in members if not m.is_dir]
            chosen = [m for m in files if str(m.path) == wanted] or [m for m in files if m.path.name == wanted]
            if len(chosen) != 1:
                names = ", ".join(str(m.path) for m in files[:8]) + (" ..." if len(files) > 8 else "")
                what = "no member" if not chosen else f"{len(chosen)} members"
                raise InputFileError(archive, f"{what} named {member!r} (it holds: {names or 'nothing'})")
            source = opener(chosen[0])
            if source is None:
                raise InputFileError(archive, f"member {str(chosen[0].path)!r} has no data")
            with source, atomic_path(target) as tmp:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InputFileError(archive, f"corrupt or truncated archive ({exc})") from None
    return target


def extract_archive(
    archive: str | Path,
    dest: str | Path,
    *,
    folder: str,
    force: bool = False,
    progress: Progress | None = None,
    on_count: Callable[[int], None] | None = None,
) -> Path:
    """Extract `archive` so that its content ends up in `dest/folder`, atomically.

    The archive is extracted into a hidden `dest/.folder.extracting-*` folder, then renamed: if it
    holds exactly one top-level folder named `folder` (LFW's layout: `lfw/Name/...`), that folder is
    renamed to `dest/folder`; otherwise the whole extracted tree becomes `dest/folder`. Leftovers of
    an interrupted extraction are removed first. An existing `dest/folder` is kept (returned as is)
    unless `force`, which replaces it only after the new tree is complete.
    """
    archive, dest = Path(archive), Path(dest)
    if not folder or "/" in folder or "\\" in folder or folder in (".", ".."):
        raise FaceverError(f"invalid extraction folder name {folder!r}")
    final = dest / folder
    if final.exists() and not final.is_dir():
        raise FaceverError(f"{final}: exists and is not a folder; move it away to extract {archive.name}")
    if final.exists() and not force:
        return final
    dest.mkdir(parents=True, exist_ok=True)
    for leftover in dest.glob(f".{folder}.extracting-*"):
        log.info("removing an interrupted extraction: %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.extracting-", dir=dest))
    try:
        safe_extract(archive, tmp, progress=progress, on_count=on_count)
        entries = list(tmp.iterdir())
        source = entries[0] if len(entries) == 1 and entries[0].name == folder and entries[0].is_dir() else tmp
        if final.exists():  # force: swap in the new tree, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{folder}.old-", dir=dest))
            os.replace(final, old / folder)
            os.replace(source, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(source, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------------
# The whole job for a named entry


@dataclass(frozen=True)
class FetchResult:
    entry: RemoteFile  # with overrides applied (the URL actually used)
    path: Path  # the plain file, or the extracted folder for an archive
    download: DownloadResult | None  # None when the extracted folder was already there
    extracted: bool  # an archive was extracted by this call


def fetch(
    name: str | RemoteFile,
    dest: str | Path,
    *,
    url: str | None = None,
    mirror: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    timeout: float = 30.0,
    retries: int = 2,
    retry_wait: float = 1.0,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
    extract_progress: Progress | None = None,
    on_extract: Callable[[int], None] | None = None,
) -> FetchResult:
    """Download (resuming), verify, and for archives extract the catalogue entry `name` into `dest`.

    A plain file lands at `dest/<filename>`; an archive is extracted to `dest/<extracts_to>` and the
    archive itself deleted afterwards unless `keep_archive`. Re-running is cheap: a finished folder
    or verified file is reused (pass `force` to fetch again). `progress(n)` is called with bytes just
    received, `on_start(already, total)` when a transfer starts, `on_extract(members)` once the
    archive's members are checked and `extract_progress(1)` per extracted member.
    """
    entry = resolve_entry(name, url=url, mirror=mirror, sha256=sha256, environ=environ)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FaceverError(f"{dest}: not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    file_path = dest / entry.filename

    if entry.is_archive and not force and (dest / entry.extracts_to).is_dir():
        return FetchResult(entry, dest / entry.extracts_to, None, extracted=False)

    result = download(
        entry.url,
        file_path,
        sha256=entry.sha256,
        md5=entry.md5,
        force=force,
        timeout=timeout,
        retries=retries,
        retry_wait=retry_wait,
        progress=progress,
        on_start=on_start,
    )
    if not entry.is_archive:
        return FetchResult(entry, file_path, result, extracted=False)

    folder = extract_archive(
        file_path, dest, folder=entry.extracts_to, force=force, progress=extract_progress, on_count=on_extract
    )
    if not keep_archive:
        file_path.unlink()
    return FetchResult(entry, folder, result, extracted=True)


def format_size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{n} B"


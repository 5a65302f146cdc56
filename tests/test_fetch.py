"""`facever data fetch` against a local HTTP server on 127.0.0.1 serving archives built in the test.

The server (http.server in a thread, port 0) honours `Range: bytes=N-` and `If-Range`, can ignore
Range (answer 200), and can drop the connection after K bytes of a response. Nothing but 127.0.0.1
is contacted: proxies are switched off for every test here.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.core.errors import FaceverError, InputFileError
from facever.core.images import list_images, read_image_rgb
from facever.data_prep import fetch as F
from tests.helpers.http_server import FileServer, no_proxy

pytestmark = pytest.mark.timeout(60)

LFW_SAMPLE = "faces/lfw_sample/Anthony_Hopkins"


# ------------------------------------------------------------------------------------------------
# Local server (tests/helpers/http_server.py)


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    no_proxy(monkeypatch)
    for var in [v for v in __import__("os").environ if v.startswith("FACEVER_URL_") or v == "FACEVER_MIRROR"]:
        monkeypatch.delenv(var)


@pytest.fixture()
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture()
def ignoring_server():
    s = FileServer(ignore_range=True)
    yield s
    s.close()


def closed_port_url(path: str) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}{path}"


# ------------------------------------------------------------------------------------------------
# Archives in LFW's real layout, built in the test


@pytest.fixture(scope="module")
def lfw_images(shared_data) -> dict[str, bytes]:
    """Relative path inside the archive -> bytes; real LFW JPEGs, plus a second person re-using them."""
    folder = shared_data / LFW_SAMPLE
    if not folder.is_dir():
        pytest.skip(f"real LFW sample not found at {folder}")
    originals = sorted(folder.glob("*.jpg"))
    images = {f"Anthony_Hopkins/{p.name}": p.read_bytes() for p in originals}
    images["Zed_Other/Zed_Other_0001.jpg"] = originals[0].read_bytes()
    return images


def make_tgz(entries: dict[str, bytes], *, top: str | None = "lfw") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        dirs = set()
        for rel in entries:
            parts = ([top] if top else []) + rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for rel, data in entries.items():
            info = tarfile.TarInfo(f"{top}/{rel}" if top else rel)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(entries: dict[str, bytes], *, top: str = "lfw") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in entries.items():
            zf.writestr(f"{top}/{rel}", data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def assert_lfw_extracted(folder: Path, images: dict[str, bytes]) -> None:
    assert list_images(folder) == sorted(images)
    for rel, data in images.items():
        assert (folder / rel).read_bytes() == data
    pixels = read_image_rgb(folder / "Anthony_Hopkins/Anthony_Hopkins_0001.jpg")
    assert pixels.shape == (250, 250, 3)


# ------------------------------------------------------------------------------------------------
# Catalogue


def test_catalogue_has_the_public_files_with_real_looking_digests():
    assert {"lfw", "lfw-deepfunneled", "lfw-pairs", "ytf-splits"} <= set(F.CATALOGUE)
    for entry in F.CATALOGUE.values():
        assert entry.url.startswith(("http://", "https://"))
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.md5 is None or re.fullmatch(r"[0-9a-f]{32}", entry.md5)
    assert F.CATALOGUE["lfw"].extracts_to == "lfw"
    assert F.CATALOGUE["lfw-pairs"].extracts_to is None
    assert F.CATALOGUE["ytf-splits"].sha256 is None and F.CATALOGUE["ytf-splits"].md5 is None


def test_catalogue_pairs_digests_match_the_real_pairs_file(lfw_pairs_file):
    # The recorded digests were copied from scikit-learn / torchvision; the real file must hash to them.
    entry = F.CATALOGUE["lfw-pairs"]
    assert F.verify_file(lfw_pairs_file, sha256=entry.sha256, md5=entry.md5) == "sha256"
    assert lfw_pairs_file.stat().st_size == entry.size


def test_unknown_name_lists_known_names():
    with pytest.raises(FaceverError, match=r"unknown dataset 'lfq'; known: lfw, .*ytf-splits"):
        F.get_entry("lfq")


def test_url_overrides_precedence():
    env = {"FACEVER_URL_LFW_PAIRS": "http://127.0.0.1:9/env/pairs.txt", "FACEVER_MIRROR": "http://127.0.0.1:9/m"}
    assert F.env_var_for("lfw-pairs") == "FACEVER_URL_LFW_PAIRS"
    assert F.resolve_entry("lfw-pairs", environ=env).url == "http://127.0.0.1:9/env/pairs.txt"
    assert F.resolve_entry("lfw-pairs", url="http://127.0.0.1:9/x", environ=env).url == "http://127.0.0.1:9/x"
    assert F.resolve_entry("lfw", environ=env).url == "http://127.0.0.1:9/m/lfw.tgz"
    assert F.resolve_entry("lfw", mirror="http://127.0.0.1:9/n/", environ=env).url == "http://127.0.0.1:9/n/lfw.tgz"
    assert F.resolve_entry("lfw", environ={}).url == F.CATALOGUE["lfw"].url
    overridden = F.resolve_entry("lfw", sha256="AB" * 32, environ={})
    assert overridden.sha256 == "ab" * 32 and overridden.md5 is None
    with pytest.raises(FaceverError, match="64 hexadecimal"):
        F.resolve_entry("lfw", sha256="abc", environ={})
    with pytest.raises(FaceverError, match="unsupported URL"):
        F.resolve_entry("lfw", url="ftp://127.0.0.1/lfw.tgz", environ={})


# ------------------------------------------------------------------------------------------------
# Download + extract


def test_full_download_and_extract(server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    server.files["/lfw.tgz"] = archive
    seen: list[int] = []
    starts: list[tuple[int, int | None]] = []
    result = F.fetch(
        "lfw",
        tmp_path / "data",
        url=server.url("/lfw.tgz"),
        sha256=sha256(archive),
        progress=seen.append,
        on_start=lambda a, t: starts.append((a, t)),
        environ={},
    )
    assert result.path == tmp_path / "data" / "lfw"
    assert result.extracted and result.download.verified == "sha256"
    assert result.download.bytes_received == len(archive) == sum(seen)
    assert starts == [(0, len(archive))]
    assert_lfw_extracted(result.path, lfw_images)
    # Archive deleted after extraction, no temporary leftovers in DEST.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["lfw"]

    # A second run reuses the folder without contacting the server.
    n_requests = len(server.requests)
    again = F.fetch("lfw", tmp_path / "data", url=server.url("/lfw.tgz"), sha256=sha256(archive), environ={})
    assert again.download is None and again.path == result.path
    assert len(server.requests) == n_requests


def test_zip_archive_extracts_like_tgz(server, lfw_images, tmp_path):
    archive = make_zip(lfw_images, top="lfw-deepfunneled")
    server.files["/lfw-deepfunneled.zip"] = archive
    result = F.fetch(
        "lfw-deepfunneled", tmp_path, url=server.url("/lfw-deepfunneled.zip"), sha256=sha256(archive),
        keep_archive=True, environ={},
    )
    assert result.path == tmp_path / "lfw-deepfunneled"
    assert_lfw_extracted(result.path, lfw_images)
    assert (tmp_path / "lfw-deepfunneled.tgz").read_bytes() == archive  # kept, under the catalogue's name


def test_catalogue_checksum_verifies_served_real_pairs_file(server, lfw_pairs_file, tmp_path):
    server.files["/pairs.txt"] = lfw_pairs_file.read_bytes()
    result = F.fetch("lfw-pairs", tmp_path, url=server.url("/pairs.txt"), environ={})
    assert result.path == tmp_path / "pairs.txt"
    assert result.download.verified == "sha256"
    assert result.path.read_bytes() == lfw_pairs_file.read_bytes()


def test_interrupted_download_resumes_with_range(server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    assert len(archive) > 20_000
    server.files["/lfw.tgz"] = archive
    server.drop_after["/lfw.tgz"] = 10_000
    url, digest = server.url("/lfw.tgz"), sha256(archive)

    with pytest.raises(FaceverError, match=r"interrupted after 10,000 of [\d,]+ bytes.*run the same command again"):
        F.fetch("lfw", tmp_path, url=url, sha256=digest, retries=0, environ={})
    part = tmp_path / "lfw.tgz.part"
    assert part.read_bytes() == archive[:10_000]
    assert not (tmp_path / "lfw.tgz").exists() and not (tmp_path / "lfw").exists()

    starts: list[tuple[int, int | None]] = []
    result = F.fetch("lfw", tmp_path, url=url, sha256=digest, retries=0, on_start=lambda a, t: starts.append((a, t)),
                     environ={})
    assert server.requests[-1] == ("/lfw.tgz", "bytes=10000-", 206)
    assert starts == [(10_000, len(archive))]
    assert result.download.resumed_from == 10_000
    assert result.download.bytes_received == len(archive) - 10_000
    assert_lfw_extracted(result.path, lfw_images)
    assert not part.exists()


def test_dropped_connection_is_resumed_within_one_call_by_retries(server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    server.files["/lfw.tgz"] = archive
    server.drop_after["/lfw.tgz"] = 7_000
    result = F.download(server.url("/lfw.tgz"), tmp_path / "lfw.tgz", sha256=sha256(archive), retries=1,
                        retry_wait=0.01)
    assert (tmp_path / "lfw.tgz").read_bytes() == archive
    assert [r[1:] for r in server.requests] == [(None, 200), ("bytes=7000-", 206)]
    assert result.bytes_received == len(archive)


def test_server_ignoring_range_restarts_from_zero(ignoring_server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    ignoring_server.files["/lfw.tgz"] = archive
    ignoring_server.drop_after["/lfw.tgz"] = 9_000
    url, digest = ignoring_server.url("/lfw.tgz"), sha256(archive)
    with pytest.raises(FaceverError, match="interrupted"):
        F.download(url, tmp_path / "lfw.tgz", sha256=digest, retries=0)
    assert (tmp_path / "lfw.tgz.part").stat().st_size == 9_000
    result = F.download(url, tmp_path / "lfw.tgz", sha256=digest, retries=0)
    assert ignoring_server.requests[-1] == ("/lfw.tgz", "bytes=9000-", 200)  # asked to resume, got it all
    assert result.resumed_from == 0 and result.bytes_received == len(archive)
    assert (tmp_path / "lfw.tgz").read_bytes() == archive  # not the old 9,000 bytes + the whole file


def test_misaligned_partial_answer_restarts_from_zero(server, tmp_path):
    body = bytes(range(256)) * 100
    server.files["/splits.txt"] = body
    (tmp_path / "splits.txt.part").write_bytes(body[:3_000])
    server.misalign_range = True
    result = F.download(server.url("/splits.txt"), tmp_path / "splits.txt", sha256=sha256(body), retries=0)
    assert [r[1:] for r in server.requests] == [("bytes=3000-", 206), (None, 200)]
    assert result.resumed_from == 0 and (tmp_path / "splits.txt").read_bytes() == body


def test_changed_remote_file_is_not_spliced(server, tmp_path):
    # If-Range: the .part came from an older version of the file, so the server sends the new one whole.
    old, new = bytes(range(256)) * 100, bytes(reversed(range(256))) * 120
    server.files["/splits.txt"] = old
    server.drop_after["/splits.txt"] = 5_000
    with pytest.raises(FaceverError, match="interrupted"):
        F.download(server.url("/splits.txt"), tmp_path / "splits.txt", retries=0)
    server.files["/splits.txt"] = new
    F.download(server.url("/splits.txt"), tmp_path / "splits.txt", retries=0)
    assert server.requests[-1][1:] == ("bytes=5000-", 200)
    assert (tmp_path / "splits.txt").read_bytes() == new


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    # Interrupted between the last byte and the rename: the server answers 416, the .part is whole.
    body = b"1, 1, A/1, A/2, 1\n" * 50
    server.files["/splits.txt"] = body
    (tmp_path / "splits.txt.part").write_bytes(body)
    result = F.download(server.url("/splits.txt"), tmp_path / "splits.txt", sha256=sha256(body), retries=0)
    assert server.requests[-1][2] == 416
    assert result.verified == "sha256" and (tmp_path / "splits.txt").read_bytes() == body


def test_wrong_checksum_leaves_no_final_file(server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    server.files["/lfw.tgz"] = archive
    with pytest.raises(F.ChecksumError, match=r"lfw\.tgz\.part: sha256 mismatch: expected 0{64}, got " + sha256(archive)):
        F.fetch("lfw", tmp_path, url=server.url("/lfw.tgz"), sha256="0" * 64, environ={})
    assert list(tmp_path.iterdir()) == []  # no lfw.tgz, no .part, no lfw/


def test_catalogue_checksum_rejects_a_different_pairs_file(server, tmp_path):
    server.files["/pairs.txt"] = b"10\t300\nAbel_Pacheco\t1\t4\n"
    with pytest.raises(F.ChecksumError, match="sha256 mismatch: expected ea42330c"):
        F.fetch("lfw-pairs", tmp_path, url=server.url("/pairs.txt"), environ={})
    assert list(tmp_path.iterdir()) == []


def test_user_placed_file_is_verified_and_never_deleted(tmp_path):
    placed = tmp_path / "pairs.txt"
    placed.write_bytes(b"not the real pairs file\n")
    with pytest.raises(F.ChecksumError, match=r"pairs\.txt: sha256 mismatch.*pass `force`"):
        F.fetch("lfw-pairs", tmp_path, url=closed_port_url("/pairs.txt"), environ={})
    assert placed.read_bytes() == b"not the real pairs file\n"


def test_manually_downloaded_archive_is_verified_and_extracted(lfw_images, tmp_path):
    # The offline recipe: put the archive where the error said, run again (no server at all).
    archive = make_tgz(lfw_images)
    (tmp_path / "lfw.tgz").write_bytes(archive)
    result = F.fetch("lfw", tmp_path, url=closed_port_url("/lfw.tgz"), sha256=sha256(archive), environ={})
    assert result.download.already_present and result.download.verified == "sha256"
    assert_lfw_extracted(result.path, lfw_images)


def test_offline_gives_a_clear_error(tmp_path):
    url = closed_port_url("/lfw.tgz")
    with pytest.raises(FaceverError) as info:
        F.fetch("lfw", tmp_path / "data", url=url, environ={}, retries=0)
    message = str(info.value)
    assert message.startswith("cannot reach 127.0.0.1: ")
    assert "(offline?)" in message and f"download {url} manually and put it at {tmp_path / 'data' / 'lfw.tgz'}" in message


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(FaceverError, match=r"/missing\.txt: HTTP 404"):
        F.download(server.url("/missing.txt"), tmp_path / "missing.txt", retries=0)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Malicious archives


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("lfw/Anthony_Hopkins/Anthony_Hopkins_0001.jpg")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))  # a harmless member first: it must not be written either
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 4) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


def _malicious_tars(outside: Path) -> dict[str, tuple[bytes, str]]:
    return {
        "dotdot": (_tar_with(_member("lfw/../../evil.txt"), b"evil"), r"outside the destination \(\.\.\)"),
        "absolute": (_tar_with(_member(str(outside / "abs_evil.txt")), b"evil"), "absolute path"),
        "symlink": (_tar_with(_member("lfw/link", tarfile.SYMTYPE, str(outside))), "symlink .*links are refused"),
        "hardlink": (_tar_with(_member("lfw/hard", tarfile.LNKTYPE, "/etc/passwd")), "hardlink .*links are refused"),
        "device": (_tar_with(_member("lfw/null", tarfile.CHRTYPE)), "device"),
        "fifo": (_tar_with(_member("lfw/pipe", tarfile.FIFOTYPE)), "device or fifo"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_malicious_tar_is_refused_and_nothing_is_written(case, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "sandbox" / "dest"
    archive_bytes, message = _malicious_tars(outside)[case]
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(archive_bytes)
    with pytest.raises(InputFileError, match=rf"evil\.tgz: member .*{message}"):
        F.extract_archive(archive, dest, folder="lfw")
    assert tree(outside) == set()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sandbox" / "evil.txt").exists()
    assert tree(dest) == set()  # no lfw/, no temporary folder left behind


def test_malicious_archive_via_server_is_refused(server, tmp_path):
    archive = _tar_with(_member("lfw/../../evil.txt"), b"evil")
    server.files["/lfw.tgz"] = archive
    dest = tmp_path / "a" / "dest"
    with pytest.raises(InputFileError, match=r"lfw\.tgz: member 'lfw/\.\./\.\./evil\.txt' would be written outside"):
        F.fetch("lfw", dest, url=server.url("/lfw.tgz"), sha256=sha256(archive), environ={})
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()
    assert tree(dest) == {"lfw.tgz"}  # the verified download stays; nothing was extracted


@pytest.mark.parametrize(
    "case, message",
    [("dotdot", r"outside the destination \(\.\.\)"), ("absolute", "absolute path"), ("symlink", "symlink; links are refused")],
)
def test_malicious_zip_is_refused(case, message, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lfw/ok.jpg", b"abc")
        if case == "dotdot":
            zf.writestr("lfw/../../evil.txt", b"evil")
        elif case == "absolute":
            zf.writestr(str(outside / "abs_evil.txt"), b"evil")
        else:
            info = zipfile.ZipInfo("lfw/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, str(outside))
    archive = tmp_path / "evil.zip"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "sandbox" / "dest"
    with pytest.raises(InputFileError, match=rf"evil\.zip: member .*{message}"):
        F.extract_archive(archive, dest, folder="lfw")
    assert tree(outside) == set() and not (tmp_path / "evil.txt").exists()
    assert tree(dest) == set()


def test_corrupt_archive_is_a_clear_error(tmp_path):
    archive = tmp_path / "lfw.tgz"
    noise = b"".join(hashlib.sha256(bytes([i, j])).digest() for i in range(4) for j in range(256))
    whole = make_tgz({"A/A_0001.jpg": noise})
    assert len(whole) > 20_000
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFileError, match=r"lfw\.tgz: corrupt or truncated archive"):
        F.extract_archive(archive, tmp_path / "dest", folder="lfw")
    assert tree(tmp_path / "dest") == set()


# ------------------------------------------------------------------------------------------------
# Atomic extraction


def test_interrupted_extraction_is_redone(lfw_images, tmp_path):
    archive = tmp_path / "lfw.tgz"
    archive.write_bytes(make_tgz(lfw_images))

    def interrupt_after_first(_n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        F.extract_archive(archive, tmp_path, folder="lfw", progress=interrupt_after_first)
    assert not (tmp_path / "lfw").exists()
    # A crash (not an exception) would leave the hidden folder behind: simulate it, then rerun.
    stale = tmp_path / ".lfw.extracting-crashed"
    (stale / "lfw" / "Anthony_Hopkins").mkdir(parents=True)
    (stale / "lfw" / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg").write_bytes(b"half")
    folder = F.extract_archive(archive, tmp_path, folder="lfw")
    assert_lfw_extracted(folder, lfw_images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw", "lfw.tgz"]


def test_flat_archive_is_wrapped_in_the_expected_folder(lfw_images, tmp_path):
    archive = tmp_path / "flat.tgz"
    archive.write_bytes(make_tgz(lfw_images, top=None))
    folder = F.extract_archive(archive, tmp_path / "dest", folder="lfw")
    assert folder == tmp_path / "dest" / "lfw"
    assert_lfw_extracted(folder, lfw_images)


def test_force_replaces_the_folder_only_when_the_new_one_is_complete(server, lfw_images, tmp_path):
    (tmp_path / "lfw" / "Old_Person").mkdir(parents=True)
    archive = make_tgz(lfw_images)
    server.files["/lfw.tgz"] = archive
    result = F.fetch("lfw", tmp_path, url=server.url("/lfw.tgz"), sha256=sha256(archive), force=True, environ={})
    assert_lfw_extracted(result.path, lfw_images)
    assert not (result.path / "Old_Person").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw"]


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_fetch_end_to_end(server, lfw_images, tmp_path):
    archive = make_tgz(lfw_images)
    server.files["/lfw.tgz"] = archive
    runner = CliRunner()
    dest = tmp_path / "data"
    args = ["data", "fetch", "lfw", "--dest", str(dest), "--url", server.url("/lfw.tgz"), "--sha256", sha256(archive)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(dest / "lfw")
    assert_lfw_extracted(dest / "lfw", lfw_images)
    assert "sha256 verified" in result.stderr
    # stderr is not a terminal here: plain progress lines, each stage closed with its final count.
    lines = result.stderr.splitlines()
    assert any(line.startswith("lfw.tgz: ") and " MB/s" in line and line.endswith("done") for line in lines), lines
    assert any(line.startswith("extracting lfw.tgz: ") and "(100%)" in line and line.endswith("done") for line in lines)

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and again.stdout.strip() == str(dest / "lfw")
    assert "already present" in again.stderr


def test_cli_fetch_via_env_url_without_checksum_warns(server, tmp_path, monkeypatch):
    body = b"split number, pair id, first name, second name, is same\n1, 1, A/1, A/2, 1\n"
    server.files["/ytf/splits.txt"] = body
    monkeypatch.setenv("FACEVER_URL_YTF_SPLITS", server.url("/ytf/splits.txt"))
    result = CliRunner().invoke(app, ["data", "fetch", "ytf-splits", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()).read_bytes() == body
    assert "NOT verified" in result.stderr


def test_cli_fetch_via_mirror(server, lfw_pairs_file, tmp_path):
    server.files["/mirror/lfw/pairs.txt"] = lfw_pairs_file.read_bytes()
    result = CliRunner().invoke(
        app, ["data", "fetch", "lfw-pairs", "--dest", str(tmp_path), "--mirror", server.url("/mirror/lfw/")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pairs.txt").read_bytes() == lfw_pairs_file.read_bytes()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--url", "OFFLINE"], r"error: cannot reach 127\.0\.0\.1: .*\(offline\?\)"),
        (["--url", "OFFLINE", "--sha256", "xyz"], r"error: --sha256 must be 64 hexadecimal digits"),
    ],
)
def test_cli_errors_are_one_line_exit_2(extra, message, tmp_path):
    extra = [closed_port_url("/lfw.tgz") if a == "OFFLINE" else a for a in extra]
    result = CliRunner().invoke(app, ["data", "fetch", "lfw", "--dest", str(tmp_path), "--retries", "0", *extra])
    assert result.exit_code == 2
    assert re.search(message, result.stderr.replace("\n", " "))


def test_cli_unknown_name_and_list():
    runner = CliRunner()
    bad = runner.invoke(app, ["data", "fetch", "lfq", "--dest", "x"])
    assert bad.exit_code == 2 and "unknown dataset 'lfq'" in bad.stderr
    listing = runner.invoke(app, ["data", "list"])
    assert listing.exit_code == 0
    names = [line.split("\t")[0] for line in listing.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(F.CATALOGUE)
    assert "FACEVER_URL_LFW_PAIRS" in listing.stdout


def test_fetch_module_does_not_import_torch():
    import subprocess

    code = "import sys, facever.data_prep.fetch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

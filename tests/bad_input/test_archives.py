"""Archives from `facever data fetch`: nothing outside DEST, no half-extracted folder, one-line errors."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from tests.bad_input.conftest import refused


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, _, data in members:
            zf.writestr(name, data)


OK = ("lfw/Ann/Ann_0001.jpg", "file", b"jpeg")
CASES = {
    "file/folder clash": (_tar, [("lfw/Ann", "file", b"x"), OK], r"cannot extract member"),
    "300-character name": (_tar, [OK, ("lfw/" + "n" * 300, "file", b"x")], r"cannot extract member .*name too long"),
    "member with ..": (_tar, [OK, ("lfw/../../evil", "file", b"x")], r"outside the destination"),
    "absolute member": (_tar, [OK, ("/tmp/evil", "file", b"x")], r"absolute path"),
    "symlink member": (_tar, [OK, ("lfw/link", "symlink", "/etc/passwd")], r"is a symlink"),
    "fifo member": (_tar, [OK, ("lfw/pipe", "fifo", None)], r"device or fifo"),
    "zip with ..": (_zip, [OK, ("../evil", "file", b"x")], r"outside the destination"),
    "zip file/folder clash": (_zip, [("lfw/Ann", "file", b"x"), OK], r"cannot extract member"),
    "tar member twice": (_tar, [OK, ("lfw/Ann/Ann_0001.jpg", "file", b"other")],
                         r"two members are named 'lfw/Ann/Ann_0001\.jpg'; one would silently replace the other"),
    "zip member twice": (_zip, [OK, ("lfw/Ann/Ann_0001.jpg", "file", b"other")], r"two members are named"),
    "same name as ./name": (_tar, [OK, ("./lfw/Ann/Ann_0001.jpg", "file", b"other")], r"two members are named"),
    "file and folder of one name": (_tar, [("lfw/Ann", "dir", None), ("lfw/Ann", "file", b"x")], r"two members are named 'lfw/Ann'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_archive_refused(tmp_path, case):
    make, members, match = CASES[case]
    src = tmp_path / "src"
    src.mkdir()
    make(src / "lfw.tgz", members)
    digest = hashlib.sha256((src / "lfw.tgz").read_bytes()).hexdigest()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("user file")
    # The verified download itself may stay (the next run re-extracts without downloading); nothing else.
    refused(["data", "fetch", "lfw", "--dest", dest, "--url", f"file://{src}/lfw.tgz", "--sha256", digest],
            match, tmp_path, resume_files=("dest/lfw.tgz",))
    assert (dest / "keep.txt").read_text() == "user file"


def test_truncated_archive(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "full.tgz", [OK] + [(f"lfw/f{i}", "file", bytes(range(256)) * 64) for i in range(20)])
    (src / "lfw.tgz").write_bytes((src / "full.tgz").read_bytes()[:700])
    digest = hashlib.sha256((src / "lfw.tgz").read_bytes()).hexdigest()
    refused(["data", "fetch", "lfw", "--dest", tmp_path / "dest", "--url", f"file://{src}/lfw.tgz", "--sha256", digest],
            r"corrupt or truncated archive", tmp_path, resume_files=("dest", "dest/lfw.tgz"))


def test_a_folder_listed_twice_is_accepted(tmp_path):
    from tests.bad_input.conftest import accepted

    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "lfw.tgz", [("lfw", "dir", None), ("lfw/Ann", "dir", None), OK, ("lfw/Ann", "dir", None)])
    digest = hashlib.sha256((src / "lfw.tgz").read_bytes()).hexdigest()
    accepted(["data", "fetch", "lfw", "--dest", tmp_path / "dest", "--url", f"file://{src}/lfw.tgz", "--sha256", digest])
    assert (tmp_path / "dest" / "lfw" / "Ann" / "Ann_0001.jpg").read_bytes() == b"jpeg"

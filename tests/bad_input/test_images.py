"""Images and image lists: FIFOs never hang, undecodable files are named, align never mixes up crops."""

from __future__ import annotations

import os

import pytest

from tests.bad_input.conftest import accepted, refused, snapshot, write_images


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "imgs", names=["Ann", "Bob"])
    return tmp_path


@pytest.mark.timeout(60)
def test_fifo_in_image_list_embed(photos, tiny_model):
    os.mkfifo(photos / "imgs" / "Ann" / "fifo.jpg")
    (photos / "list.txt").write_text("imgs/Ann/Ann_0001.jpg\nimgs/Ann/fifo.jpg\nimgs/Bob/Bob_0001.jpg\n")
    refused(["embed", tiny_model, photos / "list.txt", "--out", photos / "out.npz", "--device", "cpu", "--workers", "0"],
            r"--skip-bad", photos, resume_files=(".out.partial",))
    result = accepted(["embed", tiny_model, photos / "list.txt", "--out", photos / "out.npz", "--device", "cpu",
                       "--workers", "0", "--skip-bad"])
    assert "FIFO" in result.stderr
    from facever.core.embeddings_file import load_embeddings

    assert sorted(load_embeddings(photos / "out.npz").paths) == ["imgs/Ann/Ann_0001.jpg", "imgs/Bob/Bob_0001.jpg"]


@pytest.mark.timeout(20)
def test_fifo_as_the_image_list(photos, tiny_model):
    os.mkfifo(photos / "list.fifo")
    refused(["embed", tiny_model, photos / "list.fifo", "--out", photos / "out.npz"], r"list\.fifo: a FIFO", photos)


@pytest.mark.timeout(20)
def test_fifo_in_a_folder_is_not_an_image(photos, tiny_model):
    os.mkfifo(photos / "imgs" / "Ann" / "x.jpg")  # folder scans list regular files only
    accepted(["embed", tiny_model, photos / "imgs", "--out", photos / "out.npz", "--device", "cpu", "--workers", "0"])


@pytest.mark.parametrize("content, match", [
    (b"this is text, not a JPEG", r"not an image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", r"cannot decode|not an image"),
])
def test_undecodable_image_named(photos, tiny_model, content, match):
    (photos / "imgs" / "Ann" / "Ann_0001.jpg").write_bytes(content)
    refused(["embed", tiny_model, photos / "imgs", "--out", photos / "out.npz", "--device", "cpu", "--workers", "0"],
            r"--skip-bad", photos, resume_files=(".out.partial",))


def test_no_images(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    refused(["embed", tiny_model, tmp_path / "empty", "--out", tmp_path / "out.npz"], r"empty: no images found", tmp_path)


def test_align_into_its_own_folder(photos):
    refused(["align", photos / "imgs", photos / "imgs", "--device", "cpu"], r"the output folder is the input folder", photos)


def test_align_names_that_would_collide(photos):
    src = photos / "src"
    src.mkdir()
    for name in ("p.jpg", "p.png", "p.png.jpg"):
        (src / name).write_bytes((photos / "imgs" / "Ann" / "Ann_0001.jpg").read_bytes())
    before = snapshot(photos)
    refused(["align", src, photos / "out", "--device", "cpu"], r"p\.png and p\.png\.jpg would both be aligned to p\.png\.jpg",
            photos)
    assert snapshot(photos) == before


@pytest.mark.timeout(20)
def test_align_list_that_is_a_fifo(photos):
    os.mkfifo(photos / "list.fifo")
    refused(["align", photos / "list.fifo", photos / "out", "--device", "cpu"], r"list\.fifo: a FIFO", photos)

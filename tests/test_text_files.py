"""The one reader of a user's text files (`facever.core.text_files.read_text`): every protocol and list
reader refuses a missing file, a folder, a FIFO and a binary file in the same words, naming the file."""

from __future__ import annotations

import os

import pytest

from facever.core.errors import InputFileError
from facever.core.text_files import read_text
from facever.protocols.fglfw import read_fglfw_pairs, read_token_pairs
from facever.protocols.lfw import read_lfw_pairs
from facever.protocols.pair_lists import read_path_pairs
from facever.protocols.ytf import read_ytf_splits
from facever.workflows.verify import read_pairs_table

READERS = {  # reader -> what its "not found" names
    "lfw": (read_lfw_pairs, "pairs file"),
    "fglfw": (read_fglfw_pairs, "pair list"),
    "calfw": (read_token_pairs, "pair list"),
    "ytf": (read_ytf_splits, "splits file"),
    "path list": (read_path_pairs, "pairs file"),
    "verify": (read_pairs_table, "pairs file"),
}


def test_read_text_drops_a_byte_order_mark_and_names_what_is_wrong(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfAnn\t1\t2\n")
    assert read_text(tmp_path / "bom.txt") == "Ann\t1\t2\n"
    (tmp_path / "bin.txt").write_bytes(b"ok line\nAnn \xff\xfe\n")
    with pytest.raises(InputFileError, match=r"bin\.txt: not a text file \(byte 12, line 2, is not UTF-8\)$"):
        read_text(tmp_path / "bin.txt")
    with pytest.raises(InputFileError, match=r"none\.txt: splits file not found$"):
        read_text(tmp_path / "none.txt", what="splits file")


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.timeout(20)
def test_every_reader_refuses_alike(tmp_path, reader):
    read, what = READERS[reader]
    with pytest.raises(InputFileError, match=rf"none\.txt: {what} not found$"):
        read(tmp_path / "none.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputFileError, match=r"folder: not a regular file \(a folder\)$"):
        read(tmp_path / "folder")
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer forever
    with pytest.raises(InputFileError, match=r"fifo: not a regular file \(a FIFO\)$"):
        read(tmp_path / "fifo")
    (tmp_path / "binary.txt").write_bytes(b"Ann\t1\t2\n\xff\xd8\xff")
    with pytest.raises(InputFileError, match=r"binary\.txt: not a text file \(byte 8, line 2, is not UTF-8\)"):
        read(tmp_path / "binary.txt")

"""`facever.core.sizes.parse_size`: the one HxW parser, and the three places that read a size through it
(`facever align --size`, `facever train --input-size`, a config file's `input_size`) agreeing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.core.errors import FaceverError
from facever.core.sizes import parse_size
from facever.training.config_files import parse_options, parse_toml_text


@pytest.mark.parametrize("text, size", [("112x96", (112, 96)), ("112X112", (112, 112)), ("160", (160, 160)),
                                        ("56,48", (56, 48)), (" 20 x 16 ", (20, 16))])
def test_parse_size_reads_every_spelling(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["abc", "112x", "1x1", "112x96x3", "0x0", "8x5000", ""])
def test_parse_size_refuses_quoting_the_text(bad):
    with pytest.raises(ValueError, match=f"invalid size {bad!r}"):
        parse_size(bad)


@pytest.mark.parametrize("text", ["56x48", "56,48", "160", "7x7", "56x"])
def test_config_file_and_command_line_read_sizes_alike(text, tmp_path):
    try:
        expected = parse_size(text)
    except ValueError:
        expected = None
    # config file
    if expected is None:
        with pytest.raises(FaceverError, match="input_size"):
            parse_options(parse_toml_text(f'input_size = "{text}"\n', where="c.toml"), where="c.toml")
    else:
        assert parse_options(parse_toml_text(f'input_size = "{text}"\n', where="c.toml"), where="c.toml") == {
            "input_size": expected}
    # facever train --input-size: a bad size is refused before any data is read
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                                      "--input-size", text])
    if expected is None:
        assert result.exit_code == 2 and "invalid size" in result.output, result.output
    else:
        assert "invalid size" not in result.output
    # facever align --size (on an empty folder of photos)
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(app, ["align", str(tmp_path / "photos"), str(tmp_path / "dst"), "--size", text])
    assert ("invalid size" in result.output) == (expected is None), result.output

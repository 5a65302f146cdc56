"""Decoding any photo a user may hold into an upright 8-bit RGB array.

Handles what real datasets contain: EXIF-rotated JPEGs, greyscale (PGM), palette, RGBA/LA (composited
on white, so a transparent background does not turn black), CMYK, 16-bit and 32-bit greyscale, and
files whose extension lies about their content (WebP data under a `.jpg` name: PIL sniffs the bytes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facever.core.errors import FaceverError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp", ".gif")


class ImageDecodeError(FaceverError):
    """A file that is not a decodable image (corrupt, truncated, not an image at all)."""


def _to_rgb(img):
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit greyscale: rescale the actual range to 0..255 instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr8 = np.clip((arr - lo) * scale, 0, 255).round().astype(np.uint8)
        return np.stack([arr8] * 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def check_regular_file(path: str | Path, *, error: type[FaceverError] = FaceverError) -> None:
    """Raise `error` for a path that is missing or not a regular file (FIFO, socket, device, folder).

    Reading a FIFO blocks until a writer comes, which may be never: check before opening.
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket or device"
        raise error(f"{path}: {kind}, not a regular file")


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an upright `H x W x 3` uint8 RGB array (C-contiguous).

    Raises `ImageDecodeError` naming the file for anything that is not a decodable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    # A FIFO or device would block (or never end) in open(): only regular files are images.
    check_regular_file(path, error=ImageDecodeError)
    try:
        with Image.open(path) as img:
            img.load()  # force full decode now: truncated files fail here, not later
            img = ImageOps.exif_transpose(img) or img
            arr = _to_rgb(img)
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"{path}: decoded to an unusable shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def decode_image_bytes_rgb(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG/PNG/...) to `H x W x 3` uint8 RGB, same rules as `read_image_rgb`."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            arr = _to_rgb(img)
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image ({exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"{name}: decoded to an unusable shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def read_file_bytes(path: str | Path) -> tuple[bytes, int]:
    """(bytes, mtime in ns) of a regular file, read in one go (for content digests and `decode_image_bytes_rgb`).

    Raises `ImageDecodeError` naming the file when it is missing, unreadable or not a regular file.
    """
    check_regular_file(path, error=ImageDecodeError)
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno()).st_mtime_ns
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def list_images(root: str | Path) -> list[str]:
    """Relative POSIX paths of every image file under `root` (any depth), sorted; hidden files skipped.

    Symlinked folders are followed, as the identity-folder reader of training follows them (a train /
    test split made of links to person folders is common); a link back to a folder already walked is
    not entered again, so a loop of links ends.
    """
    root = Path(root)
    found = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder)
        for name in files:
            p = base / name
            if not name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.append(p.relative_to(root).as_posix())
    return sorted(found)

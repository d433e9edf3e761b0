"""Image sizes and 250 px thumbnails (Chatwoot's thumb_url), made by Pillow in a thread so
the event loop never decodes an image, at most THUMBNAIL_WORKERS at once. An image over
ATTACHMENT_MAX_PIXELS is refused before it is decoded (its header says its size): a small
file that inflates to gigabytes of pixels (a decompression bomb) costs nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

THUMB_SIZE = (250, 250)
# Types Pillow decodes: the ones a thumbnail is made of (others, e.g. SVG, get none).
RASTER_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})


class BadImage(ValueError):
    """The file is not the image its type says, or is too large to decode."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    width: int
    height: int
    path: Path  # the JPEG thumbnail


def _make(source: Path, target: Path, max_pixels: int) -> Thumbnail:
    try:
        with Image.open(source) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise BadImage(f"image is too large ({width}x{height} pixels)")
            im.draft("RGB", THUMB_SIZE)  # JPEG: decode at a reduced scale
            im.thumbnail(THUMB_SIZE)
            im.convert("RGB").save(target, "JPEG", quality=80)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's guard, at twice the limit
        raise BadImage("image is too large (pixels)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage("file is not a valid image") from exc
    return Thumbnail(width, height, target)


class Thumbnailer:
    def __init__(self, workers: int, max_pixels: int) -> None:
        self._slots = asyncio.Semaphore(workers)
        self.max_pixels = max_pixels
        # Pillow's own guard, for what reaches the decoder: an error past twice this.
        Image.MAX_IMAGE_PIXELS = max_pixels

    async def make(self, source: Path, target: Path) -> Thumbnail:
        """Raises BadImage."""
        async with self._slots:
            return await asyncio.to_thread(_make, source, target, self.max_pixels)

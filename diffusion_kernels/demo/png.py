"""A PNG writer in plain zlib and a small RGB canvas (rectangles, lines, bitmap text): what the
demo's picture needs when matplotlib is not installed."""
import struct
import zlib
from typing import Sequence, Tuple

from . import font

RGB = Tuple[int, int, int]
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: str, rgb_rows: Sequence[Sequence[RGB]]) -> None:
    """``rgb_rows``: a list of rows, each a list of ``(r, g, b)`` byte triples."""
    rows = [bytes(c for px in row for c in px) for row in rgb_rows]
    _write_rgb(path, len(rgb_rows[0]), len(rgb_rows), rows)


def _write_rgb(path: str, width: int, height: int, rows: Sequence[bytes]) -> None:
    raw = b"".join(b"\x00" + row for row in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(_chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(_chunk(b"IEND", b""))


def viridis(frac: float) -> RGB:
    """Dark blue (0) to yellow (1), a viridis-like ramp."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    frac = min(max(frac, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(frac), len(stops) - 2)
    t = frac - i
    return tuple(int(a + (b - a) * t) for a, b in zip(stops[i], stops[i + 1]))


def blend(colour: RGB, towards: RGB, t: float) -> RGB:
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(colour, towards))


def ink_for(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return BLACK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else WHITE


class Canvas:
    """An RGB image in memory: ``rect``, ``frame``, ``text``, then ``save``."""

    def __init__(self, width: int, height: int, background: RGB = WHITE):
        self.width, self.height = width, height
        self.rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x: int, y: int, w: int, h: int, colour: RGB) -> None:
        x0, x1 = max(x, 0), min(x + w, self.width)
        if x1 <= x0:
            return
        span = bytes(colour) * (x1 - x0)
        for yy in range(max(y, 0), min(y + h, self.height)):
            self.rows[yy][3 * x0:3 * x1] = span

    def frame(self, x: int, y: int, w: int, h: int, colour: RGB) -> None:
        """A one-pixel outline."""
        self.rect(x, y, w, 1, colour)
        self.rect(x, y + h - 1, w, 1, colour)
        self.rect(x, y, 1, h, colour)
        self.rect(x + w - 1, y, 1, h, colour)

    def text(self, x: int, y: int, text: str, colour: RGB = BLACK, scale: int = 1) -> None:
        """``text`` with its top-left corner at ``(x, y)``, in the 5x7 font magnified ``scale`` times."""
        for i, char in enumerate(text):
            left = x + i * (font.WIDTH + 1) * scale
            for r, line in enumerate(font.glyph(char)):
                for c, ink in enumerate(line):
                    if ink == "#":
                        self.rect(left + c * scale, y + r * scale, scale, scale, colour)

    def centred_text(self, cx: int, cy: int, text: str, colour: RGB = BLACK, scale: int = 1) -> None:
        self.text(cx - font.text_width(text, scale) // 2, cy - font.HEIGHT * scale // 2, text, colour, scale)

    def save(self, path: str) -> None:
        _write_rgb(path, self.width, self.height, [bytes(r) for r in self.rows])

"""A PNG writer in plain zlib (no matplotlib): enough for a heat map of the decoding order."""
import struct
import zlib


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: str, rgb_rows):
    """``rgb_rows``: a list of rows, each a list of ``(r, g, b)`` byte triples."""
    h, w = len(rgb_rows), len(rgb_rows[0])
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in rgb_rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(_chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(_chunk(b"IEND", b""))


def _colour(frac: float):
    """Dark blue (early) to yellow (late), a viridis-like ramp."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    frac = min(max(frac, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(frac), len(stops) - 2)
    t = frac - i
    return tuple(int(a + (b - a) * t) for a, b in zip(stops[i], stops[i + 1]))


def decoding_order_png(path: str, order, steps: int, cell: int = 24):
    """One row of cells per sequence, one cell per generated token, coloured by the step that
    committed it (grey: not generated)."""
    rows = []
    for seq in order:
        line = []
        for s in seq:
            c = (128, 128, 128) if s < 0 else _colour(s / max(steps - 1, 1))
            line.extend([c] * cell)
            line.append((255, 255, 255))
        rows.extend([line] * cell + [[(255, 255, 255)] * len(line)])
    write_png(path, rows)

import struct
import zlib

import pytest
import torch

from diffusion_kernels import __main__ as cli
from diffusion_kernels.demo import WEIGHTS, load_model, task
from diffusion_kernels.demo.png import decoding_order_png


def _read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body)
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == h * (1 + 3 * w)
    return w, h, raw


def test_png_has_one_cell_per_token(tmp_path):
    p = tmp_path / "o.png"
    decoding_order_png(str(p), [[0, 2, 1, -1], [3, 3, 0, 1]], steps=4, cell=5)
    w, h, raw = _read_png(p)
    assert (w, h) == (4 * 6, 2 * 6)
    first = raw[1:4]  # step 0 -> the ramp's first colour
    assert tuple(first) == (68, 1, 84)


def test_shipped_model_is_small_and_sorts():
    import os

    assert os.path.getsize(WEIGHTS) <= 5 * 2**20
    model = load_model()
    prompts, answers = task.make_batch(32, torch.Generator().manual_seed(123))
    from diffusion_kernels import generate

    out = generate(model, prompts, task.DIGITS, task.BLOCK, task.DIGITS, mask_id=task.MASK, progress=False)
    assert (out == answers).all(1).float().mean() >= 0.9  # every digit of the 24 right


def test_demo_cli(tmp_path, capsys):
    png = tmp_path / "order.png"
    rc = cli.main(["demo", "503912748160293847561029", "--png", str(png), "-v"])
    text = capsys.readouterr().out
    assert "answer: 000111222334455667788999" in text and rc == 0
    _read_png(png)


def test_bench_cli(capsys):
    assert cli.main(["bench", "--batch", "8", "--repeats", "1"]) == 0
    text = capsys.readouterr().out
    for name in ("vanilla", "prefix cache", "dual cache", "threshold 0.9", "dual + threshold 0.9"):
        assert f"| {name} |" in text

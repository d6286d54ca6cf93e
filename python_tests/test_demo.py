import struct
import sys
import zlib

import pytest
import torch

from diffusion_kernels import __main__ as cli
from diffusion_kernels.demo import WEIGHTS, load_model, task
from diffusion_kernels.demo.font import glyph
from diffusion_kernels.demo.picture import PALE, decoding_order_picture, draw_builtin
from diffusion_kernels.demo.png import WHITE, blend, viridis


def _read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body)
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {2: 3, 6: 4}[colour_type]  # RGB (the built-in writer) or RGBA (matplotlib)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert depth == 8 and len(raw) == h * (1 + channels * w)
    return w, h, raw


def _pixel(raw, w, x, y):
    i = y * (1 + 3 * w) + 1 + 3 * x
    return tuple(raw[i:i + 3])


def test_builtin_picture_is_a_grid_of_steps_by_positions_with_digits(tmp_path):
    p = tmp_path / "o.png"
    tokens, order, steps = [7, 3, 5, 1], [0, 2, 1, -1], 3
    g = draw_builtin(str(p), tokens, order, steps, block_length=2, title="T", subtitle="S")
    w, h, raw = _read_png(p)
    assert (w, h) == (g.width, g.height) and g.cell >= 20  # scaled up: digits at twice the font size

    def cell_pixels(s, pos):
        x, y = g.x0 + pos * g.cell, g.y0 + s * g.cell
        return {(i, j): _pixel(raw, w, x + i, y + j) for j in range(g.cell - 1) for i in range(g.cell - 1)}

    # committed at this step: the step's colour, the token drawn in the font
    for s, pos in ((0, 0), (2, 1), (1, 2)):
        px = cell_pixels(s, pos)
        assert px[(0, 0)] == viridis(s / (steps - 1))
        ink = sorted(k for k, v in px.items() if v != px[(0, 0)])
        x0, y0 = min(i for i, _ in ink), min(j for _, j in ink)
        drawn = {(i - x0, j - y0) for i, j in ink}
        want = {(c * 2 + a, r * 2 + b) for r, row in enumerate(glyph(str(tokens[pos]))) for c, ch in enumerate(row)
                if ch == "#" for a in (0, 1) for b in (0, 1)}
        assert drawn == want, (s, pos)
    assert cell_pixels(2, 0)[(0, 0)] == blend(viridis(0.0), WHITE, PALE)  # committed earlier: pale
    assert cell_pixels(0, 1)[(3, 3)] == WHITE  # still masked: empty
    assert cell_pixels(1, 1)[(3, 3)] == WHITE


def test_picture_falls_back_to_the_builtin_writer_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    p = tmp_path / "o.png"
    assert decoding_order_picture(str(p), [1, 2], [1, 0], 2) == "builtin"
    _read_png(p)
    with pytest.raises(ImportError):
        decoding_order_picture(str(p), [1, 2], [1, 0], 2, backend="matplotlib")


def test_matplotlib_picture(tmp_path):
    pytest.importorskip("matplotlib")
    p = tmp_path / "o.png"
    assert decoding_order_picture(str(p), list(range(10)) * 2, list(range(20)), 20, block_length=5) == "matplotlib"
    w, h, _ = _read_png(p)
    assert w > 400 and h > 300


def test_picture_arguments():
    with pytest.raises(ValueError, match="'backend'"):
        decoding_order_picture("x.png", [1], [0], 1, backend="svg")
    with pytest.raises(ValueError, match="'order'"):
        decoding_order_picture("x.png", [1, 2], [0], 1)


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
    rc = cli.main(["demo", "503912748160293847561029", "--png", str(png), "-v", "--png-backend", "builtin"])
    text = capsys.readouterr().out
    assert "answer: 000111222334455667788999" in text and rc == 0
    assert f"wrote {png} (builtin)" in text
    w, h, _ = _read_png(png)
    assert w > 24 * 20 and h > 24 * 20  # a grid of 24 steps x 24 positions


def test_bench_cli(capsys):
    assert cli.main(["bench", "--batch", "8", "--repeats", "1"]) == 0
    text = capsys.readouterr().out
    for name in ("vanilla", "prefix cache", "dual cache", "threshold 0.9", "dual + threshold 0.9"):
        assert f"| {name} |" in text
    assert "| block diffusion | exact cache, block 4 |" in text and "| full attention | dual cache, block 8 |" in text


def test_shipped_block_model_is_small_and_sorts_with_the_exact_cache():
    import os

    from diffusion_kernels import generate
    from diffusion_kernels.demo import BLOCK_WEIGHTS, load_block_model

    assert os.path.getsize(BLOCK_WEIGHTS) <= 2**20
    model = load_block_model()
    prompts, answers = task.make_batch(8, torch.Generator().manual_seed(123))  # not the training stream
    steps = cli.default_steps("block", model.config.block_size)
    out = generate(model, prompts, task.DIGITS, block_length=model.config.block_size, steps=steps,
                   cache="exact", mask_id=task.MASK, progress=False)
    assert (out == answers).float().mean() >= 0.8  # measured 0.89 of the digits (0.945 on 64 prompts)


def test_demo_cli_block_model(tmp_path, capsys):
    png = tmp_path / "order.png"
    cli.main(["demo", "503912748160293847561029", "--model", "block", "--png", str(png), "--png-backend", "builtin"])
    text = capsys.readouterr().out
    assert "block model" in text and "answer: " in text and f"wrote {png} (builtin)" in text
    _read_png(png)

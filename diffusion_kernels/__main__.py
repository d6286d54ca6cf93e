"""``python -m diffusion_kernels demo [DIGITS] [--model block]`` | ``python -m diffusion_kernels bench``."""
import argparse
import sys

import torch


def demo(args):
    from . import generate
    from .demo import load_block_model, load_model, task
    from .demo.picture import decoding_order_picture

    if args.model == "block":  # block-causal: its own block grid, the exact KV cache
        model = load_block_model()
        args.block, args.cache = model.config.block_size, "exact"
    else:
        model = load_model()
    digits = args.digits or "".join(str(int(d)) for d in torch.randint(0, 10, (task.DIGITS,)))
    prompt = task.parse(digits)
    steps = default_steps(args.model, args.block) if args.steps is None else args.steps
    print(f"prompt: {task.render(prompt[0])}   (sort the digits; {args.model} model, {steps} steps, "
          f"block {args.block})")

    def show(info):
        if args.verbose:
            print(f"  step {info.step}: {task.render(info.x[0, info.prompt_length:])}")

    out = generate(model, prompt, task.DIGITS, args.block, steps, mask_id=task.MASK, callback=show,
                   progress=not args.verbose, return_dict=True, threshold=args.threshold, cache=args.cache)
    answer = task.render(out.sequences[0])
    ok = answer == "".join(sorted(digits))
    print(f"answer: {answer}   {'correct' if ok else 'WRONG (expected ' + ''.join(sorted(digits)) + ')'}   NFE {out.nfe}")
    print("decoding order (step that committed each token):", out.order[0].tolist())
    strategy = f"threshold {args.threshold}" if args.threshold is not None else f"{steps} steps"
    backend = decoding_order_picture(
        args.png, out.sequences[0].tolist(), out.order[0].tolist(), max(out.nfe, 1),
        labels=lambda t: task.render([t]), backend=args.png_backend,
        block_length=args.block if args.model == "llada" else None,  # the block grid is not the answer's
        title="Decoding order: which token each step committed",
        subtitle=f"{args.model} model   prompt {task.render(prompt[0])}   answer {answer}   {strategy}, "
                 f"block {args.block}, cache {args.cache or 'none'}, NFE {out.nfe}")
    print(f"wrote {args.png} ({backend})")
    return 0 if ok else 1


def default_steps(model: str, block: int) -> int:
    """One token per step: the answer's length, or for the block model ``block`` steps for each
    block of its grid the answer touches (the first and last blocks are partial)."""
    from .demo import task

    if model == "llada":
        return task.DIGITS
    first, end = task.PROMPT_LEN // block, -(-(task.PROMPT_LEN + task.DIGITS) // block)
    return (end - first) * block


def bench(args):
    from .demo import load_block_model, load_model, task
    from .demo.strategies import bench_table, format_model_table, format_table, model_rows

    torch.manual_seed(0)
    model = load_model()
    prompts, answers = task.make_batch(args.batch, torch.Generator().manual_seed(args.seed))
    rows = bench_table(model, prompts, task.DIGITS, args.block, task.MASK,
                       check=lambda seq: (seq == answers).all(dim=1), repeats=args.repeats)
    print(f"embedded sorting model, CPU, batch {args.batch}, gen {task.DIGITS}, block {args.block}, "
          f"{torch.get_num_threads()} threads (median of {args.repeats})")
    print(format_table(rows))
    block_model = load_block_model()
    b = block_model.config.block_size
    rows = model_rows(model, block_model, prompts, answers, task.DIGITS, args.block, default_steps("block", b),
                      task.MASK, repeats=args.repeats)
    print(f"\nfull attention vs block diffusion (block {b}, steps {default_steps('block', b)}, exact cache)")
    print(format_model_table(rows))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m diffusion_kernels")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="sort digits with the embedded masked-diffusion model")
    d.add_argument("digits", nargs="?", help="the 24 digits to sort (default: random)")
    d.add_argument("--model", choices=["llada", "block"], default="llada",
                   help="the full-attention model (default) or the block-diffusion one (cache='exact')")
    d.add_argument("--steps", type=int, default=None)
    d.add_argument("--block", type=int, default=None)
    d.add_argument("--threshold", type=float, default=None)
    d.add_argument("--cache", choices=["prefix", "dual"], default=None)
    d.add_argument("--png", default="decoding_order.png")
    d.add_argument("--png-backend", choices=["auto", "matplotlib", "builtin"], default="auto",
                   help="who draws the picture (auto: matplotlib when installed)")
    d.add_argument("-v", "--verbose", action="store_true", help="print the sequence after every step")
    b = sub.add_parser("bench", help="tokens/s, NFE and accuracy per decoding strategy")
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--block", type=int, default=None)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    from .demo import task
    if args.block is None:
        args.block = task.BLOCK
    return demo(args) if args.cmd == "demo" else bench(args)


if __name__ == "__main__":
    sys.exit(main())

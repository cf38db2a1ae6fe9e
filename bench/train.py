"""Benchmark one stage-2 training step of the GeMKR-Mini preset on CPU (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/train.py --batches 8 16 32 --reps 5

One thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)), as the other benches. The model is the mini preset's
GeMKR (`gemkr.train.MiniPreset().model`: tiny CLIP ViT 64 px 4 x 128 with the object-aware prefix, tiny LLaMA
4 x 256, LoRA q,v) with seeded random weights: speed does not depend on the values. Examples: GeMKR-Mini
`train` questions with first-sentence clue targets and gold-box regions (Mini, its tokenizer and KB are built
and cached on first use), or with `--quick` (a smoke run) synthetic examples and a toy tokenizer.

For each LM head and batch size: one untimed warm-up step, then `--reps` timed AdamW steps, each split into
  vision      the visual tokens (object-aware ViT forward)
  llm_fwd     token layout, embeddings, the LLaMA forward and the loss
  backward    `loss.backward()` (through the LLM and the vision front-end's trained parts)
  optim       the AdamW step and zeroing the gradients
with the LM head
  labels      applied only at the label positions (clue + EOS), `GeMKR.loss`
  full        applied at every position, then the same loss (`gemkr.model.loss_full_logits`)
Memory: `saved_mb` is what autograd keeps for the backward pass (bytes of the tensors saved by the forward,
counted by a saved-tensors hook, parameters excluded), `peak_rss_mb` the process's peak resident size so far
(monotone: configurations run from the smallest batch up). One CSV row per (head, batch) to `<out>/train.csv`,
a stacked-bar plot to `<out>/train.png`, a table to stdout.
"""
from __future__ import annotations
import argparse, dataclasses, os, resource, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
import numpy as np
import torch
from gemkr.core import atomic_write

HEADS = ("labels", "full")
PARTS = ("vision", "llm_fwd", "backward", "optim")


# ---------------------------------------------------------------------------------------------- inputs
def quick_inputs(n: int, seed: int):
    "A toy tokenizer, the mini preset's model config at toy width, and `n` synthetic examples."
    from gemkr.model import GeMKRExample
    from gemkr.testing import hf_word_tokenizer
    from gemkr.train import MiniPreset
    words = "the capital of denmark is copenhagen a nordic country what city is this in which year".split()
    tok = hf_word_tokenizer([" ".join(words)], specials=("<pad>", "<s>", "</s>", "<unk>"))
    cfg = dataclasses.replace(MiniPreset().model, clip=dataclasses.replace(MiniPreset().model.clip, seed=seed))
    g, d = torch.Generator().manual_seed(seed), cfg.clip.width
    def example(i):
        clue = tuple(tok(" ".join(words[i % 8:i % 8 + 6]), add_special_tokens=False)["input_ids"])
        return GeMKRExample(f"q{i}", torch.randn(3, cfg.clip.image_size, cfg.clip.image_size, generator=g),
                            torch.randn(cfg.n_regions, d, generator=g), torch.ones(cfg.n_regions, dtype=torch.bool),
                            "what city is this", clue)
    return tok, cfg, [example(i) for i in range(n)], "synthetic"


def mini_inputs(n: int, seed: int):
    "Mini's tokenizer, the mini preset's model config, and `n` train examples with first-sentence clues."
    from gemkr.clues import ClueConfig, clue_targets, mini_kb, mini_tokenizer
    from gemkr.mini import build_mini
    from gemkr.model import build_gemkr, mini_examples
    from gemkr.train import MiniPreset
    mini = build_mini(); tok = mini_tokenizer(mini); kb = mini_kb(mini, tok); cfg = MiniPreset().model
    queries = mini.split("train").queries[:n]
    targets = clue_targets(queries, kb, ClueConfig(kind="first_sentence"))
    exs = mini_examples(mini, "train", build_gemkr(cfg, tok), targets=targets, limit=n)
    if len(exs) < n: exs = (exs * (n // max(1, len(exs)) + 1))[:n]
    return tok, cfg, exs[:n], "mini-train"


# ---------------------------------------------------------------------------------------------- timing
class SavedBytes:
    "Bytes of the non-parameter tensors autograd saves during a forward (a saved-tensors hook)."
    def __init__(self, params): self.params, self.bytes = {p.data_ptr() for p in params}, 0
    def pack(self, t):
        if t.data_ptr() not in self.params: self.bytes += t.numel() * t.element_size()
        return t
    def __enter__(self):
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t); self.ctx.__enter__(); return self
    def __exit__(self, *a): self.ctx.__exit__(*a)


def one_step(model, batch, head: str, opt) -> tuple[dict, int]:
    "Seconds of each part of one training step, and the bytes saved for backward."
    from gemkr.model import loss_full_logits, stack_examples
    t = [time.perf_counter()]
    with SavedBytes(model.parameters()) as saved:
        vis = model.visual_tokens(*stack_examples(batch)); t.append(time.perf_counter())
        lay = model.layout([e.question for e in batch], [e.clue for e in batch])
        x = model.embed(lay, vis)
        loss_fn = model.loss if head == "labels" else (lambda *a: loss_full_logits(model, *a))
        loss = loss_fn(x, lay.attention_mask, lay.labels); t.append(time.perf_counter())
    loss.backward(); t.append(time.perf_counter())
    opt.step(); opt.zero_grad(set_to_none=True); t.append(time.perf_counter())
    return dict(zip(PARTS, np.diff(t))), saved.bytes


def measure(tok, cfg, examples, head: str, batch: int, reps: int) -> dict:
    "Median seconds per part over `reps` steps (after a warm-up), samples/s, saved and peak memory."
    from gemkr.model import build_gemkr
    model = build_gemkr(cfg, tok).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = [examples[(i * batch) % len(examples):][:batch] for i in range(reps + 1)]
    batches = [b if len(b) == batch else examples[:batch] for b in batches]
    one_step(model, batches[0], head, opt)
    runs = [one_step(model, b, head, opt) for b in batches[1:]]
    parts = {k: float(np.median([r[0][k] for r in runs])) for k in PARTS}
    step = float(np.median([sum(r[0].values()) for r in runs]))
    return dict(head=head, batch=batch, samples_per_s=batch / step, ms_step=1e3 * step,
                **{f"ms_{k}": 1e3 * v for k, v in parts.items()}, saved_mb=runs[-1][1] / 2**20,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, reps=reps,
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                load1=os.getloadavg()[0])


# ---------------------------------------------------------------------------------------------- reporting
def plot(df, f):
    "Step time split into parts, one stacked bar per (head, batch); PNG written to the binary file `f`."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(df)), 4.0))
    labels, bottom = [f"{h}\nB={b}" for h, b in zip(df["head"], df["batch"])], np.zeros(len(df))
    for part in PARTS:
        v = df[f"ms_{part}"].to_numpy(); ax.bar(labels, v, bottom=bottom, label=part); bottom += v
    for i, (y, s) in enumerate(zip(bottom, df["samples_per_s"])):
        ax.text(i, y, f"{s:.0f}/s", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="ms per training step (median)", title="GeMKR-Mini stage-2 step on CPU, 1 thread")
    ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(f, format="png", dpi=110); plt.close(fig)


def markdown(df) -> str:
    cols = ["head", "batch", "samples_per_s", "ms_step", *[f"ms_{p}" for p in PARTS], "saved_mb", "peak_rss_mb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * 2 + "---:|" * (len(cols) - 2)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) if c in ("head", "batch") else f"{r[c]:.4g}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for train.csv/.png")
    ap.add_argument("--batches", nargs="+", type=int, help="batch sizes (default 8 16 32; --quick: 2 4)")
    ap.add_argument("--reps", type=int, help="timed steps per (head, batch) after a warm-up (default 5; --quick: 2)")
    ap.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    ap.add_argument("--quick", action="store_true", help="a smoke run: synthetic examples, no Mini build")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.batches = sorted(args.batches or ([2, 4] if args.quick else [8, 16, 32]))
    args.reps = args.reps or (2 if args.quick else 5)
    if min(args.batches) < 1 or args.reps < 1: ap.error("--batches and --reps must be >= 1")
    import pandas as pd
    torch.set_num_threads(1); torch.manual_seed(args.seed); args.out.mkdir(parents=True, exist_ok=True)
    n = max(args.batches) * 4
    tok, cfg, examples, source = (quick_inputs if args.quick else mini_inputs)(n, args.seed)
    rows = []
    for b in args.batches:
        for head in args.heads:
            rows.append(measure(tok, cfg, examples, head, b, args.reps) | dict(examples=source))
            r = rows[-1]; print(f"{head} batch {b}: {r['samples_per_s']:.3g} samples/s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    with atomic_write(args.out / "train.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
    with atomic_write(args.out / "train.png") as f: plot(df, f)
    print(f"\nOne stage-2 step of the mini preset on CPU, 1 thread, median of {args.reps} steps after a warm-up; "
          f"examples: {source}.\n")
    print(markdown(df))


if __name__ == "__main__":
    main()

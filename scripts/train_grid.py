"""Train GeMKR-Mini four ways and score them: span or first-sentence clues, with or without stage 1.

    OMP_NUM_THREADS=1 python scripts/train_grid.py [--limit N] [--out bench/results]

Each run is `gemkr.train.train_mini(MiniPreset(...))` (cached: a finished run is read back, not retrained);
the runs differ only in `clue.kind` and `pretrain` (None = no KB pretraining). Scores: gold R@1 and R@5
(percent) through constrained retrieval on Mini's `test`, `test_heldout` and `test_style` (the first `--limit`
queries of each, default all). Writes `<out>/train_grid.csv` (one row per run and split, with the training
times as measured when each run trained) and prints a markdown table.
"""
from __future__ import annotations
import argparse, dataclasses, os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
import torch
from gemkr.core import atomic_write

RUNS = [("first_sentence", True), ("first_sentence", False), ("span", True), ("span", False)]


def preset(kind: str, stage1: bool):
    from gemkr.train import MiniPreset
    p = MiniPreset()
    return dataclasses.replace(p, clue=dataclasses.replace(p.clue, kind=kind), pretrain=p.pretrain if stage1 else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "bench" / "results")
    ap.add_argument("--limit", type=int, default=None, help="queries per test split (default: all)")
    ap.add_argument("--runs", nargs="+", default=[f"{k}:{int(s)}" for k, s in RUNS],
                    help="kind:stage1 pairs, e.g. span:1 first_sentence:0")
    args = ap.parse_args(argv)
    import pandas as pd
    from gemkr.mini import TEST_SPLITS, build_mini
    from gemkr.train import mini_results, train_mini
    torch.set_num_threads(1); args.out.mkdir(parents=True, exist_ok=True)
    mini, rows = build_mini(), []
    for spec in args.runs:
        kind, s1 = spec.split(":"); stage1 = bool(int(s1))
        t = time.perf_counter(); run = train_mini(preset(kind, stage1), mini)
        print(f"{kind}, stage 1 {stage1}: {'read from the cache' if run.reused else 'trained'} in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        res = mini_results(run.model, run.kb, mini, TEST_SPLITS, args.limit)
        for split, r in res.iterrows():
            rows.append(dict(clue=kind, stage1=stage1, split=split, n=int(r["n"]), R1=round(r["R@1"], 2),
                             R5=round(r["R@5"], 2),
                             stage1_s=run.stage1.seconds if run.stage1 else 0.0, stage2_s=run.stage2.seconds,
                             stage2_steps=run.stage2.steps, train_targets=len(run.targets.samples)))
        print(res.round(1).to_string(), file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    with atomic_write(args.out / "train_grid.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
    wide = df.pivot_table(index=["clue", "stage1"], columns="split", values=["R1", "R5"]).round(1)
    print(wide.to_string())


if __name__ == "__main__":
    main()

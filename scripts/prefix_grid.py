"""Which regions GeMKR-Mini's LLM sees: the prefix slots passed as visual tokens, and the prefix's init scale.

    OMP_NUM_THREADS=1 python scripts/prefix_grid.py [--steps S] [--limit N] [--out bench/results]

Each run is `gemkr.train.train_mini` with the `mini` preset of `gemkr run` (no KB pretraining) on ground-truth
boxes (`boxes="gold"`, as when the grid was measured), changed in two fields of `PrefixConfig` only: `visual_slots` (2 as released: the CLS and prefix slots 0 and 1 reach the LLM;
10: every slot) and `init_std` (1.0 as released; 0.02), and trained for `--steps` instruction-tuning steps
(default 500, a third of the preset's, so that the grid takes minutes). Runs are cached: a finished one is read back.
Scores: gold R@1 and R@5 (percent) through constrained retrieval on the first `--limit` queries of Mini's
`test` split (default 400), overall and by the number of pictures in the scene. Writes
`<out>/prefix_grid.csv` (one row per run and number of pictures, `all` included) and prints a table.
"""
from __future__ import annotations
import argparse, dataclasses, os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
import torch
from gemkr.core import atomic_write

RUNS = [(2, 1.0), (2, 0.02), (10, 1.0), (10, 0.02)]


def preset(visual_slots: int, init_std: float, steps: int):
    from gemkr.ablations import with_field
    from gemkr.cli import mini_preset
    p = mini_preset().train
    for name, value in (("model.prefix.visual_slots", visual_slots), ("model.prefix.init_std", init_std),
                        ("tune.steps", steps), ("tune.autocast", None), ("boxes", "gold"),   # float32, as measured
                        ("model.selector", None)):                                           # before chapter 07a
        p = with_field(p, name, value)
    return p


def parse_run(spec: str) -> tuple[int, float]:
    "`'visual_slots:init_std'` -> `(visual_slots, init_std)`; anything else is an error naming the spec."
    try:
        k, s = spec.split(":"); return int(k), float(s)
    except ValueError:
        raise ValueError(f"--runs: {spec!r} is not visual_slots:init_std (e.g. 10:0.02)") from None


def scores(run, bench) -> list[dict]:
    "Gold R@1 / R@5 (percent) of a trained run on `bench`, overall and by number of pictures."
    from gemkr.metrics import per_query_scores
    from gemkr.model import GeMKRRetriever
    from gemkr.retrieval import run_retriever
    res = run_retriever(GeMKRRetriever(run.model, run.kb), bench, batch_size=16)
    per = per_query_scores(bench, res.rankings, ks=(1, 5))
    pictures = per.assign(pictures=[str(len(q.scene.boxes)) for q in bench.queries])
    groups = [("all", per)] + [(k, g) for k, g in pictures.groupby("pictures", sort=False)]
    return [dict(pictures=k, n=len(g), R1=round(100 * g["R@1"].mean(), 2), R5=round(100 * g["R@5"].mean(), 2))
            for k, g in groups]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "bench" / "results")
    ap.add_argument("--limit", type=int, default=400, help="test queries scored (default 400)")
    ap.add_argument("--steps", type=int, default=500, help="instruction-tuning steps per run (default 500)")
    ap.add_argument("--runs", nargs="+", default=[f"{k}:{s}" for k, s in RUNS],
                    help="visual_slots:init_std pairs, e.g. 2:1.0 10:0.02")
    args = ap.parse_args(argv)
    runs = [parse_run(spec) for spec in args.runs]                   # bad specs fail before any work
    import pandas as pd
    from gemkr.mini import build_mini
    from gemkr.train import train_mini
    torch.set_num_threads(1); args.out.mkdir(parents=True, exist_ok=True)
    mini, rows = build_mini(), []
    test = mini.split("test"); test = dataclasses.replace(test, queries=test.queries[:args.limit])
    for k, s in runs:
        t = time.perf_counter(); run = train_mini(preset(k, s, args.steps), mini)
        print(f"visual_slots={k}, init_std={s}: {'read from the cache' if run.reused else 'trained'} in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        for r in scores(run, test):
            rows.append(dict(visual_slots=k, init_std=s, **r, stage2_s=round(run.stage2.seconds, 1),
                             stage2_steps=run.stage2.steps, val_loss=round(run.stage2.evals[-1]["val_loss"], 4)))
        print(pd.DataFrame(rows[-5:]).to_string(index=False), file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    with atomic_write(args.out / "prefix_grid.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
    print(df.pivot_table(index=["visual_slots", "init_std"], columns="pictures", values="R1").round(1).to_string())


if __name__ == "__main__":
    main()

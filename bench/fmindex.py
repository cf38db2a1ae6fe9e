"""Benchmark `gemkr.fmindex.FMIndex` on synthetic Zipfian corpora of growing size (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/fmindex.py --sizes 1e6 1e7 5e7 1e8

For each size a fresh process (so peak RSS is that size's own) generates a corpus, builds, saves and loads the
index, times the query API and simulates the index cost of GeMKR's constrained beam search. One CSV row per
(size, metric) goes to `<out>/fmindex.csv`, a figure to `<out>/fmindex.png`, a markdown table to stdout.
Targets at 1e8 tokens (the issue): <= 6 B/token on disk, build <= 120 s, <= 20 ms of index time per query.
"""
from __future__ import annotations
import argparse, concurrent.futures as cf, multiprocessing as mp, os, resource, shutil, signal, sys, tempfile, time
from pathlib import Path
import numpy as np
from gemkr.core import atomic_write
from gemkr.testing import synthetic_corpus

VOCAB, N_PHRASES, PHRASE_FRAC = 32_000, 200_000, 0.47   # vocabulary, phrase bank, share of tokens inside phrases
BEAMS, STEPS, N_QUERIES, WARMUP = 10, 9, 30, 10         # constrained decoding: 10 beams x 9 steps, 30 queries
NOISE = 0.5                                             # std of the "LM" noise added to log(count)
CAP_S = 10.0                                            # one timed call running longer is stopped

# ---------------------------------------------------------------------------------------------- corpus
def make_corpus(n_tokens: int, seed: int) -> list[np.ndarray]:
    """`n_tokens` token ids as documents of 50-150 tokens (`gemkr.testing.synthetic_corpus`): Zipf(1) tokens over the
    32k ids mixed with ~47% of tokens copied from a bank of 200k phrases (2-8 tokens, reused with Zipf frequencies),
    so deep prefixes repeat and branch."""
    return synthetic_corpus(n_tokens, VOCAB, seed=seed, n_phrases=N_PHRASES, phrase_frac=PHRASE_FRAC)

def sample_patterns(docs, m: int, k: int, rng) -> list[np.ndarray]:
    "`k` patterns of `m` tokens starting at positions drawn uniformly over the corpus (inside one document)."
    lens = np.array([len(d) for d in docs]); ends = np.cumsum(lens); out = []
    while len(out) < k:
        pos = rng.integers(0, ends[-1], 4 * k); d = np.searchsorted(ends, pos, side="right")
        off = pos - (ends[d] - lens[d])
        out += [docs[i][o:o + m] for i, o in zip(d, off) if o + m <= lens[i]]
    return out[:k]

# ---------------------------------------------------------------------------------------------- timing
class CallTimeout(Exception): pass

def _alarm(*_): raise CallTimeout

def time_calls(fn, args, before=None, budget_s: float = 60.0, cap_s: float = CAP_S) -> np.ndarray:
    """Microseconds of each call `fn(a)`, each timed once; `before()` runs untimed first (e.g. clear caches).
    A call still running after `cap_s` is stopped (SIGALRM) and counted as `cap_s`, so the percentiles are then
    lower bounds. Stops early once `budget_s` is spent: the arguments are in random order, so the subset is unbiased."""
    out, spent = [], 0.0
    signal.signal(signal.SIGALRM, _alarm)
    for a in args:
        if before: before()
        signal.setitimer(signal.ITIMER_REAL, cap_s)
        t0 = time.perf_counter_ns()
        try: fn(a); out.append((time.perf_counter_ns() - t0) / 1e3)
        except CallTimeout: out.append(cap_s * 1e6)
        finally: signal.setitimer(signal.ITIMER_REAL, 0)
        spent += out[-1] / 1e6
        if spent > budget_s and len(out) >= 5: break
    return np.array(out)

def beam_search(idx, seed: int, batched: bool) -> float:
    """Index seconds of one simulated constrained decode. The 'LM' follows the corpus: the logit of an allowed
    token is log(count) + N(0, NOISE^2) noise, log-softmaxed over the beam's allowed tokens; the cumulative score
    keeps the BEAMS best (beam, token) pairs, as in ordinary beam search. Only index calls are timed."""
    rng, beams, spent = np.random.default_rng(seed), [((), 0.0)], 0.0
    for _ in range(STEPS):
        t0 = time.perf_counter()
        if batched:      # GeMKR: one batched call per step, memoised prefix states and cached wide intervals
            conts = idx.continuations_many(idx.states([p for p, _ in beams]))
        else:            # SEAL-style prefix_allowed_tokens_fn: each beam's prefix searched again from the root
            conts = [idx.continuations(idx.state(p)) for p, _ in beams]
        spent += time.perf_counter() - t0
        cand = []        # (score, beam, token) for every allowed continuation of every beam
        for b, ((prefix, score), (toks, counts)) in enumerate(zip(beams, conts)):
            if len(toks) == 0: continue
            logit = np.log(counts) + rng.normal(0, NOISE, len(toks))
            logp = logit - np.logaddexp.reduce(logit)
            top = np.argsort(-logp)[:BEAMS]                 # only a beam's BEAMS best can survive
            cand += [(score + logp[i], b, int(toks[i])) for i in top]
        if not cand: break
        cand.sort(reverse=True)
        beams = [(beams[b][0] + (t,), s) for s, b, t in cand[:BEAMS]]
    return spent

# ---------------------------------------------------------------------------------------------- one size
def bench_size(n_tokens: int, n_q: int, seed: int, budget_s: float) -> list[dict]:
    "Every metric of one corpus size (run in a fresh process)."
    from gemkr.fmindex import FMIndex
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # so `finally` removes the index files when killed
    rows = []
    def row(metric, values, unit, **extra):
        v = np.atleast_1d(np.asarray(values, float))
        if unit == "us" and (capped := int((v >= CAP_S * 1e6).sum())):    # calls stopped by time_calls
            extra.update(capped=capped, note=f"{capped} of {v.size} calls stopped at {CAP_S:g} s: lower bounds")
        rows.append(dict(size=n_tokens, metric=metric, median=float(np.median(v)),
                         p95=float(np.percentile(v, 95)) if v.size > 1 else np.nan, unit=unit, n=v.size, **extra))
    t0 = time.perf_counter(); docs = make_corpus(n_tokens, seed); row("corpus_gen_s", time.perf_counter() - t0, "s")
    row("corpus_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB", note="peak before build")
    t0 = time.perf_counter(); built = FMIndex.build(docs, vocab_size=VOCAB); row("build_s", time.perf_counter() - t0, "s")
    row("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB", note="peak of the process")
    row("index_bytes_per_token_ram", built.nbytes / len(built), "B/token")
    tmp = Path(tempfile.mkdtemp(prefix="gemkr-bench-"))
    try:
        path = tmp / "bench.fmi"
        t0 = time.perf_counter(); built.save(path); row("save_s", time.perf_counter() - t0, "s")
        row("bytes_per_token_disk", path.stat().st_size / len(built), "B/token")
        del built
        for verify in (True, False):
            t0 = time.perf_counter(); idx = FMIndex.load(path, mmap=True, verify=verify)
            row(f"load_s_verify_{verify}", time.perf_counter() - t0, "s", note="mmap, warm page cache")
        # queries run on the memory-mapped index, as a serving process would use it
        rng = np.random.default_rng(seed + 1)
        row("count_8tok", time_calls(idx.count, sample_patterns(docs, 8, n_q, rng), idx.clear_caches, budget_s), "us")
        for d in (0, 1, 2, 4, 8):
            pats = sample_patterns(docs, d, n_q, rng) if d else [[]] * n_q
            row(f"next_tokens_d{d}", time_calls(idx.next_tokens, pats, idx.clear_caches, budget_s), "us",
                depth=d, note="precomputed root" if d == 0 else "caches cleared")
            if d: row(f"next_tokens_d{d}_cached", time_calls(idx.next_tokens, pats, budget_s=budget_s), "us", depth=d,
                      note="second pass, warm interval cache")
        row("doc_ids_9tok", time_calls(idx.doc_ids, sample_patterns(docs, 9, n_q, rng), idx.clear_caches, budget_s), "us")
        # constrained decoding: a serving process keeps its caches across queries (report the last 20);
        # "cold" clears them before each query; the per-beam path is SEAL's prefix_allowed_tokens_fn
        def decode_ms(batched, clear_each):
            idx.clear_caches(); out = []
            for q in range(N_QUERIES):
                if clear_each: idx.clear_caches()
                out.append(1e3 * beam_search(idx, seed * 1000 + q, batched))
            return np.array(out)
        ms = decode_ms(batched=True, clear_each=False)
        row("query_batched", ms[WARMUP:], "ms", note=f"{BEAMS} beams x {STEPS} steps, caches kept across queries")
        row("query_batched_total", ms.sum(), "ms", note=f"all {N_QUERIES} queries, from empty caches")
        row("query_batched_cold", decode_ms(True, True)[WARMUP:], "ms", note="caches cleared before each query")
        # a serving process that calls idx.warm() once after loading: every query, the first ones included
        idx.clear_caches(); t0 = time.perf_counter(); n_warm = idx.warm(); row("warm_s", time.perf_counter() - t0, "s", note=f"{n_warm} prefixes")
        row("query_batched_after_warm", np.array([1e3 * beam_search(idx, seed * 1000 + q, True) for q in range(N_QUERIES)]), "ms",
            note="idx.warm() once, then all queries (caches kept)")
        row("query_per_beam_uncached", decode_ms(False, True)[WARMUP:], "ms",
            note="state(prefix) + continuations per beam per step, caches cleared before each query")
        del idx
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows

# ---------------------------------------------------------------------------------------------- reporting
def size_label(n) -> str: return f"{n:.0e}".replace("e+0", "e")    # 10000000 -> "1e7"

def plot(df, f):
    "The figure, written as PNG to the binary file `f`."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt, seaborn as sns
    df = df.assign(size=df["size"].map(size_label))
    fig, ax = plt.subplots(1, 4, figsize=(19, 4.2))
    lat = df[df.metric.str.fullmatch(r"next_tokens_d\d")].astype({"depth": int})
    sns.pointplot(lat, x="depth", y="median", hue="size", ax=ax[0], palette="viridis")
    ax[0].set(yscale="log", ylabel="µs (median, caches cleared)", title="next_tokens latency by prefix depth")
    q = df[df.metric.isin(["query_batched", "query_batched_after_warm", "query_batched_cold", "query_per_beam_uncached"])]
    sns.barplot(q, x="size", y="median", hue="metric", ax=ax[1])
    ax[1].axhline(20, ls="--", c="k", lw=1); ax[1].set(yscale="log", ylabel="ms per query (median)",
                                                      title=f"index cost, {BEAMS} beams x {STEPS} steps (target 20)")
    ax[1].legend(fontsize=8, loc="upper left")
    for a, m, target, title in ((ax[2], "build_s", 120, "build time (s)"), (ax[3], "bytes_per_token_disk", 6, "bytes/token on disk")):
        sns.barplot(df[df.metric == m], x="size", y="median", ax=a, color="C0")
        a.axhline(target, ls="--", c="k", lw=1); a.set(ylabel=title, title=f"{title}, target {target} at 1e8")
    ax[2].set_yscale("log")
    for a in ax[1:]: a.tick_params(axis="x", rotation=30)
    fig.tight_layout(); fig.savefig(f, format="png", dpi=110); plt.close(fig)

def markdown(df) -> str:
    "Metrics down, sizes across: `median` (or `median / p95` for latencies) with the unit."
    sizes = sorted(df["size"].unique())
    cell = lambda r: (f"{r['median']:.3g}" + ("" if np.isnan(r["p95"]) else f" / {r['p95']:.3g}")
                      + (f" ({r['capped']:.0f} capped)" if r.get("capped", 0) > 0 else ""))
    lines = ["| metric | unit | " + " | ".join(map(size_label, sizes)) + " |", "|---|---|" + "---:|" * len(sizes)]
    for m in dict.fromkeys(df.metric):
        sub = df[df.metric == m].set_index("size")
        lines.append(f"| {m} | {sub.unit.iloc[0]} | " + " | ".join(cell(sub.loc[s]) if s in sub.index else "" for s in sizes) + " |")
    return "\n".join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7], help="corpus sizes in tokens")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for fmindex.csv/.png")
    ap.add_argument("--queries", type=int, default=300, help="patterns per latency metric")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds at most per latency metric (then fewer queries)")
    args = ap.parse_args(argv)
    import pandas as pd
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        print(f"== {int(size):,} tokens", file=sys.stderr, flush=True)
        # a fresh process per size: its peak RSS is this size's alone, and its memory is returned afterwards
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            rows += ex.submit(bench_size, int(size), args.queries, args.seed, args.budget).result()
        df = pd.DataFrame(rows)     # written after every size, so a crash at a large size keeps the others
        with atomic_write(args.out / "fmindex.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
        with atomic_write(args.out / "fmindex.png") as f: plot(df, f)
    print(markdown(df))

if __name__ == "__main__":
    main()

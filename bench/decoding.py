"""Benchmark FM-index-constrained clue decoding with a tiny random LLaMA (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/decoding.py --tokens 1e7 --queries 20

Per query (a ~40-token `inputs_embeds` prompt, 10 beams, <= 9 clue tokens + EOS) it times four paths:
  batched    model.generate + the kit's FMIndexLogitsProcessor (one batched index call per step)
  per_beam   model.generate + fm_prefix_allowed_tokens_fn (one index call per beam per step, as official GeMKR)
  diverse    the kit's diverse_beam_search, full GeMKR preset (10 groups), batched processor
  free       unconstrained model.generate (model-only baseline)
model ms = total - index ms. One CSV row per (path, metric) goes to `<out>/decoding.csv`, a bar plot of model vs
index ms to `<out>/decoding.png`, a markdown table to stdout. Targets (the issue): batched index <= 10% of model
time, and per-beam index time >= 5x the batched one.
"""
from __future__ import annotations
import argparse, os, sys, tempfile, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
from unittest import mock
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList
from transformers.generation import utils as gen_utils
from transformers.utils import logging as hf_logging
import gemkr.decoding as dec
from gemkr.fmindex import FMIndex
PrefixConstrained = gen_utils.PrefixConstrainedLogitsProcessor      # what generate builds for prefix_allowed_tokens_fn

BOS, EOS, PAD, VOCAB, FIRST_ID = 1, 2, 0, 8000, 3     # LLaMA specials; corpus tokens are ids 3..7999
BEAMS, MAX_CLUE, PROMPT_LEN, HIDDEN = 10, 9, 40, 256

# ---------------------------------------------------------------------------------------------- corpus
def zipf_sampler(k: int, rng, s: float = 1.0):
    "Vectorised sampler of ranks 0..k-1 with P(r) proportional to 1/(r+1)^s."
    cdf = np.cumsum(1.0 / np.arange(1, k + 1) ** s); cdf /= cdf[-1]
    return lambda n: np.minimum(np.searchsorted(cdf, rng.random(n)), k - 1)

def make_docs(n_tokens: int, seed: int, n_phrases: int = 20_000, phrase_frac: float = 0.5) -> list[np.ndarray]:
    """~`n_tokens` content tokens as documents `[BOS] + 50..150 tokens + [EOS]`. Tokens are Zipf(1) over ids 3..7999;
    about `phrase_frac` of them are copied from a bank of 2-8-token phrases reused with Zipf frequencies, so clue
    prefixes repeat and branch as in real text."""
    rng = np.random.default_rng(seed)
    perm = (rng.permutation(VOCAB - FIRST_ID) + FIRST_ID).astype(np.int64)    # frequency rank -> token id
    token = lambda n, z=zipf_sampler(VOCAB - FIRST_ID, rng): perm[z(n)]
    plen = rng.integers(2, 9, n_phrases); pstart = np.concatenate([[0], np.cumsum(plen)[:-1]])
    bank, phrase = token(int(plen.sum())), zipf_sampler(n_phrases, rng)
    # a run of segments, each one iid token (P 1-q) or one whole phrase (P q); q is set so phrases hold phrase_frac
    w = 1.0 / np.arange(1, n_phrases + 1); mean_len = float((w * plen).sum() / w.sum())
    q = phrase_frac / (mean_len * (1 - phrase_frac) + phrase_frac)
    n_seg = int(n_tokens / (q * mean_len + 1 - q) * 1.1) + 16
    pid = np.where(rng.random(n_seg) < q, phrase(n_seg), -1)
    seg_len = np.where(pid >= 0, plen[np.maximum(pid, 0)], 1); seg_end = np.cumsum(seg_len)
    seg = np.repeat(np.arange(n_seg), seg_len)[:n_tokens]                    # segment of each token
    within = np.arange(n_tokens) - (seg_end - seg_len)[seg]                   # offset inside its segment
    p = pid[seg]
    content = np.where(p >= 0, bank[pstart[np.maximum(p, 0)] + within], token(n_tokens))
    # frame: document i occupies lengths[i] + 2 slots of one flat array, BOS first and EOS last
    lengths = rng.integers(50, 151, n_tokens // 50 + 1)
    lengths = lengths[:np.searchsorted(np.cumsum(lengths), n_tokens) + 1]; lengths[-1] -= lengths.sum() - n_tokens
    ends = np.cumsum(lengths + 2); starts = ends - lengths - 2
    flat = np.empty(int(ends[-1]), np.int64); flat[starts], flat[ends - 1] = BOS, EOS
    inner = np.ones(len(flat), bool); inner[starts] = inner[ends - 1] = False; flat[inner] = content
    return np.split(flat, ends[:-1])                                           # views, no copies

# ---------------------------------------------------------------------------------------------- timing helpers
class Timed(LogitsProcessor):
    "Wraps a logits processor and accumulates the seconds spent in it (index lookups + masking)."
    def __init__(self, inner): self.inner, self.seconds = inner, 0.0
    def __call__(self, input_ids, scores):
        t0 = time.perf_counter(); out = self.inner(input_ids, scores); self.seconds += time.perf_counter() - t0
        return out

def clues_of(seqs: torch.Tensor) -> list[list[int]]:
    "Generated ids -> clue tokens: cut at the first EOS, drop padding."
    out = []
    for s in seqs.reshape(-1, seqs.shape[-1]).tolist():
        s = s[:s.index(EOS)] if EOS in s else s
        out.append([t for t in s if t != PAD])
    return out

def own_caches(idx: FMIndex) -> FMIndex:
    "The same index arrays (no copy) in a new FMIndex with its own caches, so paths do not warm each other's caches."
    arrays = {k: getattr(idx, k) for k in ("bwt", "C", "occ", "sa_rows", "sa_pos", "doc_starts", "doc_lengths")}
    return FMIndex(arrays, idx.meta, idx.config)

def make_paths(model, idx: FMIndex) -> dict:
    """Each path: a function prompt -> (total s, index s, constraint s, clues). The index/constraint counters are
    read as deltas around one call, so processors are built once and reused across queries (caches stay warm, as
    in a serving process); each constrained path has its own index caches."""
    gen = dict(num_beams=BEAMS, num_return_sequences=BEAMS, max_new_tokens=MAX_CLUE + 1, length_penalty=1.5,
               eos_token_id=EOS, pad_token_id=PAD, do_sample=False)
    # inputs_embeds only: generate's input_ids hold the generated tokens alone, so prompt_length=0
    proc = dec.FMIndexLogitsProcessor(own_caches(idx), EOS, PAD, max_clue_len=MAX_CLUE, prompt_length=0)
    tproc = Timed(proc)
    dproc = dec.FMIndexLogitsProcessor(own_caches(idx), EOS, PAD, max_clue_len=MAX_CLUE, prompt_length=0)
    tdproc = Timed(dproc)
    fn = dec.fm_prefix_allowed_tokens_fn(own_caches(idx), EOS, PAD, MAX_CLUE, prompt_length=0)
    fn_s = [0.0]
    def timed_fn(batch_id, ids):                       # one call per beam per step
        t0 = time.perf_counter(); r = fn(batch_id, ids); fn_s[0] += time.perf_counter() - t0
        return r
    prefix_procs = []                                  # generate builds its own PrefixConstrainedLogitsProcessor:
    def timed_prefix(*a, **k):                         # wrap it to time the whole constraint (index + masking)
        prefix_procs.append(Timed(PrefixConstrained(*a, **k)))
        return prefix_procs[-1]

    def run(call, index_s, constraint_s):
        i0, c0 = index_s(), constraint_s()
        t0 = time.perf_counter(); seqs = call(); total = time.perf_counter() - t0
        return total, index_s() - i0, constraint_s() - c0, clues_of(seqs)

    @torch.no_grad()
    def batched(x): return run(lambda: model.generate(inputs_embeds=x, logits_processor=LogitsProcessorList([tproc]), **gen),
                               lambda: proc.index_seconds, lambda: tproc.seconds)
    @torch.no_grad()
    def per_beam(x):
        def call():
            with mock.patch.object(gen_utils, "PrefixConstrainedLogitsProcessor", timed_prefix):
                return model.generate(inputs_embeds=x, prefix_allowed_tokens_fn=timed_fn, **gen)
        return run(call, lambda: fn_s[0], lambda: sum(p.seconds for p in prefix_procs))
    def diverse(x): return run(lambda: dec.diverse_beam_search(model, inputs_embeds=x, cfg=dec.DecodingConfig(),
                                                               logits_processor=tdproc).sequences,
                               lambda: dproc.index_seconds, lambda: tdproc.seconds)
    @torch.no_grad()
    def free(x): return run(lambda: model.generate(inputs_embeds=x, **gen), lambda: 0.0, lambda: 0.0)
    return dict(batched=batched, per_beam=per_beam, diverse=diverse, free=free)

# ---------------------------------------------------------------------------------------------- reporting
def write_atomic(path: Path, write):
    "Call `write(tmp)` on a temp file beside `path`, then rename it onto `path`."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix); os.close(fd)
    try: write(tmp); os.chmod(tmp, 0o644); os.replace(tmp, path)
    except BaseException: os.unlink(tmp); raise

def plot(per_query, path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt, seaborn as sns
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.barplot(per_query, x="path", y="ms", hue="component", estimator=np.median, errorbar=("pi", 90), ax=ax)
    ax.set(yscale="log", ylabel="ms per query (median, 5-95% bars)", xlabel="",
           title=f"model vs FM-index time per query ({BEAMS} beams, <= {MAX_CLUE} clue tokens)")
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=float, default=1e7, help="corpus content tokens")
    ap.add_argument("--queries", type=int, default=20, help="timed queries per path")
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for decoding.csv/.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import pandas as pd
    torch.set_num_threads(1); hf_logging.set_verbosity_error(); args.out.mkdir(parents=True, exist_ok=True)
    rows, load0 = [], os.getloadavg()
    def row(path, metric, values, unit, note=""):
        v = np.atleast_1d(np.asarray(values, float))
        rows.append(dict(path=path, metric=metric, median=float(np.median(v)),
                         p95=float(np.percentile(v, 95)) if v.size > 1 else np.nan, unit=unit, n=v.size, note=note))

    t0 = time.perf_counter(); docs = make_docs(int(args.tokens), args.seed); gen_s = time.perf_counter() - t0
    t0 = time.perf_counter(); idx = FMIndex.build(docs, vocab_size=VOCAB); build_s = time.perf_counter() - t0
    row("index", "corpus_gen_s", gen_s, "s"); row("index", "build_s", build_s, "s", note=repr(idx))
    print(f"corpus {gen_s:.1f} s, build {build_s:.1f} s: {idx}", file=sys.stderr)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=688, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=4, bos_token_id=BOS, eos_token_id=EOS,
                                         pad_token_id=PAD)).float().eval()
    g = torch.Generator().manual_seed(args.seed + 1)     # prompts: random "visual + question" embeddings
    prompts = [torch.randn(1, PROMPT_LEN, HIDDEN, generator=g) * 0.02 for _ in range(args.queries + 1)]
    paths = make_paths(model, idx); names = list(paths)
    for fn in paths.values(): fn(prompts[-1])             # warm-up on a prompt that is not timed
    results = {name: [] for name in names}
    for q, x in enumerate(prompts[:-1]):                  # interleaved, order rotated: drift and load hit all paths
        for name in names[q % len(names):] + names[:q % len(names)]: results[name].append(paths[name](x))
    per_query = []
    for name, res in results.items():
        total, index, constraint = (1e3 * np.array([r[i] for r in res]) for i in range(3))
        model_ms = total - index
        clues = [c for r in res for c in r[3]]
        valid = [bool(c) and idx.count(c) > 0 for c in clues]
        for m, v in (("total_ms", total), ("model_ms", model_ms), ("index_ms", index), ("constraint_ms", constraint),
                     ("index_pct_of_model", 100 * index / model_ms)):
            row(name, m, v, "%" if m.endswith("pct_of_model") else "ms",
                note="index lookups + masking" if m == "constraint_ms" else "")
        row(name, "valid_clue_frac", np.mean(valid), "frac", note=f"{sum(valid)}/{len(valid)} clues; {sum(not c for c in clues)} empty")
        row(name, "clue_len", [len(c) for c in clues], "tokens")
        per_query += [dict(path=name, component=k, ms=x) for k, a in (("model", model_ms), ("index", index)) for x in a]
        print(f"{name}: total {np.median(total):.1f} ms, index {np.median(index):.2f} ms, valid {np.mean(valid):.3f}",
              file=sys.stderr, flush=True)
    row("machine", "loadavg_1min_start", load0[0], "load"); row("machine", "loadavg_1min_end", os.getloadavg()[0], "load")

    df = pd.DataFrame(rows); med = df.set_index(["path", "metric"])["median"]
    share = med["batched", "index_ms"] / med["batched", "model_ms"]
    speedup = med["per_beam", "index_ms"] / med["batched", "index_ms"]
    row("targets", "batched_index_over_model", share, "ratio", note=f"ratio of medians, target <= 0.10: {'met' if share <= 0.10 else 'MISSED'}")
    row("targets", "per_beam_over_batched_index", speedup, "x", note=f"target >= 5: {'met' if speedup >= 5 else 'MISSED'}")
    df = pd.DataFrame(rows)
    write_atomic(args.out / "decoding.csv", lambda p: df.to_csv(p, index=False))
    write_atomic(args.out / "decoding.png", lambda p: plot(pd.DataFrame(per_query), Path(p)))

    med, p95 = df.set_index(["path", "metric"])["median"], df.set_index(["path", "metric"])["p95"]
    cell = lambda path, m, f="{:.2f}": f.format(med[path, m]) + " / " + f.format(p95[path, m])
    print(f"\nIndex: {idx}, built in {build_s:.1f} s. {args.queries} queries, median / p95.\n")
    print("| path | total ms | model ms | index ms | constraint ms | index % of model | valid clues |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in ("batched", "per_beam", "diverse", "free"):
        print(f"| {p} | {cell(p, 'total_ms')} | {cell(p, 'model_ms')} | {cell(p, 'index_ms')} | {cell(p, 'constraint_ms')} | "
              f"{cell(p, 'index_pct_of_model', '{:.1f}')} | {med[p, 'valid_clue_frac']:.3f} |")
    print(f"\nTarget batched index <= 10% of model (ratio of medians): {100 * share:.1f}% -> {'met' if share <= 0.10 else 'MISSED'}")
    print(f"Target per-beam / batched index >= 5x (ratio of medians): {speedup:.1f}x -> {'met' if speedup >= 5 else 'MISSED'}")
    print(f"(Whole constraint, index + masking, per-beam / batched: "
          f"{med['per_beam', 'constraint_ms'] / med['batched', 'constraint_ms']:.1f}x)")
    print(f"Load average (1 min): {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")

if __name__ == "__main__":
    main()

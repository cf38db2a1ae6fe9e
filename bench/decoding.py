"""Benchmark FM-index-constrained clue decoding with a tiny LLaMA (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/decoding.py --tokens 1e7 --queries 20 --lm random trained

Per query (a 40-token `inputs_embeds` prompt, 10 beams, <= 9 clue tokens + EOS) it times four paths:
  batched    model.generate + the kit's FMIndexLogitsProcessor (one batched index call per step)
  per_beam   model.generate + fm_prefix_allowed_tokens_fn (one index call per beam per step, as official GeMKR)
  diverse    the kit's diverse_beam_search, full GeMKR preset (10 groups), batched processor
  free       unconstrained model.generate (model-only baseline)
Each query's time is split into the model's forward passes (timed by hooks), the FM-index constraint (lookups
alone, and lookups + masking, the whole cost of the constraint) and generate's own bookkeeping (the rest).
Two language models (`--lm`):
  random     the issue's tiny random LLaMA (4 x 256, vocab 8k) on random prompt embeddings. Its clues reach a prefix
             that occurs once within one or two tokens, so most steps extend single-row intervals.
  trained    the same LLaMA trained for `--train-steps` steps on the benchmark corpus (cached under
             data/cache/bench/), prompted with the embeddings of a corpus window: its clues are frequent KB phrases
             that stay in wide intervals for several steps, as a KB-tuned GeMKR model's do.
Then the index calls of the batched run are replayed with the model out of the loop (fresh caches, each query's best
of `--replay-reps`), for both APIs, and the BWT scans (rank and checkpoint-row calls) per query are counted. One CSV
row per (lm, path, metric) goes to `<out>/decoding.csv`, a bar plot of model vs index ms to `<out>/decoding.png`,
markdown tables to stdout. Targets (the issue): batched index <= 10% of model time, and per-beam index time >= 5x the
batched one; each is reported with the index counted as the whole constraint and as the lookups alone.
"""
from __future__ import annotations
import argparse, os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
from unittest import mock
import numpy as np
import torch
from transformers import LlamaForCausalLM, LogitsProcessor, LogitsProcessorList
from transformers.generation import utils as gen_utils
from transformers.utils import logging as hf_logging
from tqdm.auto import tqdm
import gemkr.decoding as dec
from gemkr.core import atomic_write, cache_dir, cached_folder, current_umask, fingerprint
from gemkr.fmindex import FMIndex, _ARRAYS
from gemkr.testing import synthetic_corpus, tiny_llama
PrefixConstrained = gen_utils.PrefixConstrainedLogitsProcessor      # what generate builds for prefix_allowed_tokens_fn

BOS, EOS, PAD, VOCAB, FIRST_ID = 1, 2, 0, 8000, 3     # LLaMA specials; corpus tokens are ids 3..7999
BEAMS, MAX_CLUE, PROMPT_LEN, HIDDEN = 10, 9, 40, 256
GEN = dict(num_beams=BEAMS, num_return_sequences=BEAMS, max_new_tokens=MAX_CLUE + 1, length_penalty=1.5,   # generate()
           eos_token_id=EOS, pad_token_id=PAD, do_sample=False)

# ---------------------------------------------------------------------------------------------- corpus
def make_docs(n_tokens: int, seed: int) -> list[np.ndarray]:
    """~`n_tokens` content tokens as documents `[BOS] + 50..150 tokens + [EOS]` (`gemkr.testing.synthetic_corpus`):
    Zipf(1) tokens over ids 3..7999, half of them copied from a bank of 20k 2-8-token phrases reused with Zipf
    frequencies, so clue prefixes repeat and branch as in real text."""
    return synthetic_corpus(n_tokens, VOCAB, seed=seed, first_id=FIRST_ID, n_phrases=20_000, phrase_frac=0.5, bos=BOS, eos=EOS)

# ---------------------------------------------------------------------------------------------- timing helpers
class Timed(LogitsProcessor):
    "Wraps a logits processor and accumulates the seconds spent in it (index lookups + masking)."
    def __init__(self, inner): self.inner, self.seconds = inner, 0.0
    def __call__(self, input_ids, scores):
        t0 = time.perf_counter(); out = self.inner(input_ids, scores); self.seconds += time.perf_counter() - t0
        return out

class ModelTimer:
    "Accumulates the seconds spent in the model's forward passes (hooks on the top-level module)."
    def __init__(self, model):
        self.seconds, self._t0 = 0.0, 0.0
        model.register_forward_pre_hook(lambda m, a: setattr(self, "_t0", time.perf_counter()))
        model.register_forward_hook(lambda m, a, o: setattr(self, "seconds", self.seconds + time.perf_counter() - self._t0))

def clues_of(seqs: torch.Tensor) -> list[list[int]]:
    "Generated ids -> clue tokens: cut at the first EOS, drop padding."
    out = []
    for s in seqs.reshape(-1, seqs.shape[-1]).tolist():
        s = s[:s.index(EOS)] if EOS in s else s
        out.append([t for t in s if t != PAD])
    return out

def own_caches(idx: FMIndex) -> FMIndex:
    "The same index arrays (no copy) in a new FMIndex with its own caches, so paths do not warm each other's caches."
    return FMIndex({k: getattr(idx, k) for k in _ARRAYS}, idx.meta, idx.config)

def processor(idx: FMIndex) -> dec.FMIndexLogitsProcessor:
    "The batched constraint on a copy of `idx` with its own caches (inputs_embeds only: generate's ids are all clue)."
    return dec.FMIndexLogitsProcessor(own_caches(idx), EOS, PAD, max_clue_len=MAX_CLUE, prompt_length=0)

def make_paths(model, idx: FMIndex) -> dict:
    """Each path: a function prompt -> (total s, model s, lookup s, constraint s, clues): the whole query, the model's
    forward passes, the FM-index lookups, and the whole constraint (lookups + masking). The counters are read as
    deltas around one call, so processors are built once and reused across queries (caches stay warm, as in a
    serving process); each constrained path has its own index caches."""
    proc, dproc = processor(idx), processor(idx)
    tproc, tdproc = Timed(proc), Timed(dproc)
    fn = dec.fm_prefix_allowed_tokens_fn(own_caches(idx), EOS, PAD, MAX_CLUE, prompt_length=0, vocab_size=VOCAB)
    fn_s = [0.0]
    def timed_fn(batch_id, ids):                       # one call per beam per step
        t0 = time.perf_counter(); r = fn(batch_id, ids); fn_s[0] += time.perf_counter() - t0
        return r
    prefix_procs = []                                  # generate builds its own PrefixConstrainedLogitsProcessor:
    def timed_prefix(*a, **k):                         # wrap it to time the whole constraint (index + masking)
        prefix_procs.append(Timed(PrefixConstrained(*a, **k)))
        return prefix_procs[-1]

    timer = ModelTimer(model)
    def run(call, index_s, constraint_s):
        i0, c0, m0 = index_s(), constraint_s(), timer.seconds
        t0 = time.perf_counter(); seqs = call(); total = time.perf_counter() - t0
        return total, timer.seconds - m0, index_s() - i0, constraint_s() - c0, clues_of(seqs)

    @torch.no_grad()
    def batched(x): return run(lambda: model.generate(inputs_embeds=x, logits_processor=LogitsProcessorList([tproc]), **GEN),
                               lambda: proc.index_seconds, lambda: tproc.seconds)
    @torch.no_grad()
    def per_beam(x):
        def call():
            with mock.patch.object(gen_utils, "PrefixConstrainedLogitsProcessor", timed_prefix):
                return model.generate(inputs_embeds=x, prefix_allowed_tokens_fn=timed_fn, **GEN)
        return run(call, lambda: fn_s[0], lambda: sum(p.seconds for p in prefix_procs))
    def diverse(x): return run(lambda: dec.diverse_beam_search(model, inputs_embeds=x, cfg=dec.DecodingConfig(),
                                                               logits_processor=tdproc).sequences,
                               lambda: dproc.index_seconds, lambda: tdproc.seconds)
    @torch.no_grad()
    def free(x): return run(lambda: model.generate(inputs_embeds=x, **GEN), lambda: 0.0, lambda: 0.0)
    return dict(batched=batched, per_beam=per_beam, diverse=diverse, free=free)

# ---------------------------------------------------------------------------------------------- language models
LLAMA = dict(hidden=HIDDEN, layers=4, heads=4, intermediate=688)    # gemkr.testing.tiny_llama: 4 x 256, vocab 8k

def train_lm(model, flat: np.ndarray, steps: int, seed: int, batch: int = 32, seq: int = 64, lr: float = 3e-3) -> list[float]:
    "Next-token training on random corpus windows (AdamW); returns the losses."
    rng, opt, losses = np.random.default_rng(seed), torch.optim.AdamW(model.parameters(), lr=lr), []
    model.train()
    for _ in tqdm(range(steps), desc="train tiny LLaMA", disable=None):
        x = torch.from_numpy(flat[rng.integers(0, len(flat) - seq, batch)[:, None] + np.arange(seq)])
        loss = model(input_ids=x, labels=x).loss
        loss.backward(); opt.step(); opt.zero_grad(); losses.append(loss.item())
    return losses

def make_lm(kind: str, docs, n_queries: int, seed: int, train_steps: int, tokens: int):
    """The model and `n_queries` prompts (1 x 40 x 256 embeddings) of one `--lm` kind (see the module docstring).
    The trained model is cached under $GEMKR_CACHE/bench/, keyed by everything that determines it."""
    model = tiny_llama(VOCAB, seed=seed, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, **LLAMA)
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "random":
        return model, [torch.randn(1, PROMPT_LEN, HIDDEN, generator=g) * 0.02 for _ in range(n_queries)], None
    flat, losses = np.concatenate(docs), []
    key = fingerprint(flat, model.config.to_dict(), dict(seed=seed, steps=train_steps))
    def train(tmp: Path):                              # runs only when no intact cached model has this key
        losses.extend(train_lm(model, flat, train_steps, seed)); model.save_pretrained(tmp)
        for p in tmp.iterdir(): p.chmod(0o666 & ~current_umask())   # safetensors writes 0600: the usual permissions
    path, reused = cached_folder(cache_dir("bench") / f"lm-trained-{tokens:.0e}-seed{seed}-steps{train_steps}", key, train)
    if reused: model = LlamaForCausalLM.from_pretrained(path).float()
    model.eval()
    starts = np.random.default_rng(seed + 1).integers(0, len(flat) - PROMPT_LEN, n_queries)
    with torch.no_grad():
        emb = model.get_input_embeddings()
        prompts = [emb(torch.from_numpy(flat[s:s + PROMPT_LEN])[None]).detach() for s in starts]
    return model, prompts, losses or None

# ---------------------------------------------------------------------------------------------- model out of the loop
class Recorder(LogitsProcessor):
    "Keeps a copy of the generated ids at every step (the questions the index is asked), changes nothing."
    def __init__(self): self.steps = []
    def __call__(self, input_ids, scores): self.steps.append(input_ids.clone()); return scores

def record(model, idx: FMIndex, prompts) -> list[list[torch.Tensor]]:
    "The generated ids of every step of the batched constrained run, per query."
    proc, out = processor(idx), []
    with torch.no_grad():
        for x in prompts:
            rec = Recorder(); model.generate(inputs_embeds=x, logits_processor=LogitsProcessorList([rec, proc]), **GEN)
            out.append(rec.steps)
    return out

def replay_once(idx: FMIndex, steps_per_query, path: str, count: bool = False) -> np.ndarray:
    """Ask a fresh-cached copy of the index every recorded step again, through one API; per query, the seconds (or,
    with `count`, the BWT scans: `_rank` and `_occ_row` calls). The same sequences come out of both constrained paths,
    so the batched run's recording stands for both."""
    I, n = own_caches(idx), [0]
    if count:                                           # instance attributes shadow the methods: this copy only
        for name in ("_rank", "_occ_row"):
            f = getattr(I, name)
            setattr(I, name, lambda *a, f=f: (n.__setitem__(0, n[0] + 1), f(*a))[1])
    proc = dec.FMIndexLogitsProcessor(I, EOS, PAD, max_clue_len=MAX_CLUE, prompt_length=0)
    fn = dec.fm_prefix_allowed_tokens_fn(I, EOS, PAD, MAX_CLUE, prompt_length=0, vocab_size=VOCAB)
    out = []
    for steps in steps_per_query:
        n[0] = 0; t0 = time.perf_counter()
        for ids in steps:
            if path == "batched": proc.allowed(ids)
            else:
                for row in ids: fn(0, row)
        out.append(n[0] if count else time.perf_counter() - t0)
    return np.array(out, float)

# ---------------------------------------------------------------------------------------------- reporting
def plot(per_query, f):
    "The bar plot, written as PNG to the binary file `f`."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt, seaborn as sns
    lms = list(dict.fromkeys(per_query["lm"]))
    fig, axes = plt.subplots(1, len(lms), figsize=(6.5 * len(lms), 4.4), sharey=True, squeeze=False)
    for ax, lm in zip(axes[0], lms):
        sns.barplot(per_query[per_query["lm"] == lm], x="path", y="ms", hue="component", estimator=np.median,
                    errorbar=("pi", 90), ax=ax)
        ax.set(yscale="log", ylabel="ms per query (median, 5-95% bars)", xlabel="", title=f"{lm} LLaMA")
        handles, labels = ax.get_legend_handles_labels(); ax.get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"model vs FM-index time per query ({BEAMS} beams, <= {MAX_CLUE} clue tokens)")
    fig.tight_layout(rect=(0, 0.07, 1, 1)); fig.savefig(f, format="png", dpi=110); plt.close(fig)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=float, default=1e7, help="corpus content tokens")
    ap.add_argument("--queries", type=int, default=20, help="timed queries per path")
    ap.add_argument("--lm", nargs="+", choices=["random", "trained"], default=["random", "trained"], help="language models")
    ap.add_argument("--train-steps", type=int, default=200, help="training steps of the `trained` LM")
    ap.add_argument("--replay-reps", type=int, default=5, help="replays per API (model out of the loop); best of them per query")
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for decoding.csv/.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import pandas as pd
    torch.set_num_threads(1); hf_logging.set_verbosity_error(); args.out.mkdir(parents=True, exist_ok=True)
    rows, per_query, load0 = [], [], os.getloadavg()
    def row(lm, path, metric, values, unit, note=""):
        v = np.atleast_1d(np.asarray(values, float))
        rows.append(dict(lm=lm, path=path, metric=metric, median=float(np.median(v)),
                         p95=float(np.percentile(v, 95)) if v.size > 1 else np.nan, unit=unit, n=v.size, note=note))

    t0 = time.perf_counter(); docs = make_docs(int(args.tokens), args.seed); gen_s = time.perf_counter() - t0
    t0 = time.perf_counter(); idx = FMIndex.build(docs, vocab_size=VOCAB); build_s = time.perf_counter() - t0
    row("-", "index", "corpus_gen_s", gen_s, "s"); row("-", "index", "build_s", build_s, "s", note=repr(idx))
    print(f"corpus {gen_s:.1f} s, build {build_s:.1f} s: {idx}", file=sys.stderr)
    for lm in args.lm:
        model, prompts, losses = make_lm(lm, docs, args.queries + 1, args.seed, args.train_steps, args.tokens)
        if losses: row(lm, "lm", "train_loss_first_last", [np.mean(losses[:20]), np.mean(losses[-20:])], "nats",
                       note=f"{len(losses)} steps; median of the first and last 20-step means")
        paths = make_paths(model, idx); names = list(paths)
        for fn in paths.values(): fn(prompts[-1])             # warm-up on a prompt that is not timed
        results = {name: [] for name in names}
        for q, x in enumerate(prompts[:-1]):                  # interleaved, order rotated: drift and load hit all paths
            for name in names[q % len(names):] + names[:q % len(names)]: results[name].append(paths[name](x))
        for name, res in results.items():
            total, model_ms, lookup, constraint = (1e3 * np.array([r[i] for r in res]) for i in range(4))
            clues = [c for r in res for c in r[4]]
            valid = [bool(c) and idx.count(c) > 0 for c in clues]
            for m, v, note in (("total_ms", total, ""), ("model_ms", model_ms, "the model's forward passes"),
                               ("lookup_ms", lookup, "FM-index lookups"), ("constraint_ms", constraint, "FM-index lookups + masking"),
                               ("other_ms", total - model_ms - constraint, "generate's own beam bookkeeping"),
                               ("lookup_pct_of_model", 100 * lookup / model_ms, ""), ("constraint_pct_of_model", 100 * constraint / model_ms, "")):
                row(lm, name, m, v, "%" if m.endswith("pct_of_model") else "ms", note=note)
            row(lm, name, "valid_clue_frac", np.mean(valid), "frac", note=f"{sum(valid)}/{len(valid)} clues; {sum(not c for c in clues)} empty")
            row(lm, name, "clue_len", [len(c) for c in clues], "tokens")
            if name != "free": row(lm, name, "clue_occurrences", [idx.count(c) if c else 0 for c in clues], "count")
            per_query += [dict(lm=lm, path=name, component=k, ms=x) for k, a in
                          (("model", model_ms), ("index: lookups", lookup), ("index: lookups + mask", constraint)) for x in a]
            print(f"{lm} {name}: total {np.median(total):.1f} ms, lookups {np.median(lookup):.2f} ms, constraint {np.median(constraint):.2f} ms, valid {np.mean(valid):.3f}",
                  file=sys.stderr, flush=True)
        # the same index calls with the model out of the loop (no cache pollution from the forward passes)
        rec = record(model, idx, prompts[:-1])
        reps = {p: [] for p in ("batched", "per_beam")}
        for _ in range(args.replay_reps):
            for p in reps: reps[p].append(replay_once(idx, rec, p))
        for p, r in reps.items():
            best = 1e3 * np.min(r, axis=0)
            row(lm, p, "replay_lookup_ms", best, "ms", note=f"model out of the loop; best of {args.replay_reps} per query")
            row(lm, p, "bwt_scans", replay_once(idx, rec, p, count=True), "count", note="_rank + _occ_row calls per query")
            per_query += [dict(lm=lm, path=p, component="index: lookups, replayed", ms=x) for x in best]
        del model
    row("-", "machine", "loadavg_1min_start", load0[0], "load"); row("-", "machine", "loadavg_1min_end", os.getloadavg()[0], "load")

    med = pd.DataFrame(rows).set_index(["lm", "path", "metric"])["median"]
    for lm in args.lm:
        for m, what in (("constraint_ms", "lookups + masking"), ("lookup_ms", "lookups only")):
            share = med[lm, "batched", m] / med[lm, "batched", "model_ms"]
            speedup = med[lm, "per_beam", m] / med[lm, "batched", m]
            row(lm, "targets", f"batched_{m}_over_model", share, "ratio", note=f"index = {what}; ratio of medians, target <= 0.10: {'met' if share <= 0.10 else 'MISSED'}")
            row(lm, "targets", f"per_beam_over_batched_{m}", speedup, "x", note=f"index = {what}; ratio of medians, target >= 5: {'met' if speedup >= 5 else 'MISSED'}")
        for m, note in (("replay_lookup_ms", "lookups, model out of the loop"), ("bwt_scans", "BWT scans per query")):
            row(lm, "ratios", f"per_beam_over_batched_{m}", med[lm, "per_beam", m] / med[lm, "batched", m], "x", note=note)
    df = pd.DataFrame(rows)
    with atomic_write(args.out / "decoding.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
    with atomic_write(args.out / "decoding.png") as f: plot(pd.DataFrame(per_query), f)

    t = df.set_index(["lm", "path", "metric"])
    med, p95 = t["median"], t["p95"]
    cell = lambda lm, path, m, f="{:.2f}": f.format(med[lm, path, m]) + " / " + f.format(p95[lm, path, m])
    print(f"\nIndex: {idx}, built in {build_s:.1f} s. {args.queries} queries per path, median / p95 ms.")
    for lm in args.lm:
        print(f"\n{lm} LLaMA\n")
        print("| path | total | model | index: lookups | index: lookups + mask | other | index (lookups + mask) % of model | lookups, replayed | BWT scans | clue occurrences |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in ("batched", "per_beam", "diverse", "free"):
            extra = (f"{cell(lm, p, 'replay_lookup_ms')} | {med[lm, p, 'bwt_scans']:.0f}" if p in ("batched", "per_beam") else "- | -")
            occ = f"{med[lm, p, 'clue_occurrences']:.0f}" if p != "free" else "-"
            print(f"| {p} | {cell(lm, p, 'total_ms')} | {cell(lm, p, 'model_ms')} | {cell(lm, p, 'lookup_ms')} | {cell(lm, p, 'constraint_ms')} | "
                  f"{cell(lm, p, 'other_ms')} | {cell(lm, p, 'constraint_pct_of_model', '{:.1f}')} | {extra} | {occ} |")
        print()
        for m in ("constraint_ms", "lookup_ms"):
            for key, label in ((f"batched_{m}_over_model", "batched index / model"), (f"per_beam_over_batched_{m}", "per-beam / batched index")):
                r = t.loc[(lm, "targets", key)]
                print(f"- {label}: {r['median']:.3g} ({r['note']})")
        for key, label in (("per_beam_over_batched_replay_lookup_ms", "per-beam / batched lookups, model out of the loop"),
                           ("per_beam_over_batched_bwt_scans", "per-beam / batched BWT scans")):
            print(f"- {label}: {t.loc[(lm, 'ratios', key)]['median']:.3g}")
    print(f"\nLoad average (1 min): {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")

if __name__ == "__main__":
    main()

"""One short command that checks a GPU machine with the kit (a smoke check, not a benchmark).

    python bench/gpu_smoke.py                  # on one GPU, under 10 minutes
    python bench/gpu_smoke.py --cpu-dry-run    # the same code at tiny shapes on a CPU (what the tests run)

1. The chain: `gemkr run --preset tiny` (data -> index -> train -> evaluate on a Mini slice), with its per-stage
   times. Mini is built on first use (about a minute).
2. The `a6000-7b` preset's GeMKR config with random weights: a LLaMA with LLaMA-7B's config (32 layers of width
   4096, vocabulary 32,000), built directly on the GPU in the preset's dtype (bf16; nothing downloads), behind the
   GeMKR front-end (a random CLIP ViT-L/14 with the object-aware prefix in its last 20 blocks, 10 regions, LoRA r=8
   on q/v). On `--queries` Mini test questions (ground-truth boxes, first-sentence clue targets): one forward pass
   (loss), one LoRA backward pass (gradients reach the adapters and the prefix), and constrained retrieval with the
   GeMKR decoding preset under Mini's FM-index (every clue is checked to occur in the knowledge base).
Prints each step's wall time and the peak GPU memory (`torch.cuda.max_memory_allocated`; on CPU the peak RSS);
with `--out DIR`, also `DIR/gpu_smoke.json`. `--cpu-dry-run` uses a 2-layer LLaMA of width 64 and the tiny CLIP.
"""
from __future__ import annotations
import argparse, dataclasses, json, os, resource, sys, tempfile, time
from pathlib import Path
import torch

LLAMA_TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2)


def timed(name: str, times: dict):
    "A context manager that records the wall time of a step (synchronising CUDA) and prints it."
    class _T:
        def __enter__(self): self.t = time.perf_counter()
        def __exit__(self, *exc):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            times[name] = time.perf_counter() - self.t
            if exc[0] is None: print(f"  {name:<28} {times[name]:8.2f} s", flush=True)
    return _T()


def peak_memory_gb(device: str) -> float:
    "Peak GPU memory allocated by torch (GB), or this process's peak RSS on CPU."
    if device.startswith("cuda"): return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def random_llama(shape: dict, tok, device: str, dtype: torch.dtype):
    "A randomly initialised `LlamaForCausalLM` of `shape`, built directly on `device` in `dtype`."
    from transformers import LlamaConfig, LlamaForCausalLM
    from gemkr.model import check_tokenizer
    bos, eos, pad = check_tokenizer(tok)
    cfg = LlamaConfig(**shape, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, max_position_embeddings=2048)
    old = torch.get_default_dtype()
    torch.manual_seed(0); torch.set_default_dtype(dtype)
    try:
        with torch.device(device): return LlamaForCausalLM(cfg).eval()
    finally: torch.set_default_dtype(old)


def gemkr_config(dry: bool):
    """The `a6000-7b` preset's GeMKR config with a random CLIP and LLM (`llm_path` then only names the LLM);
    with `dry`, the tiny CLIP and a prefix of width 64 in its last 2 blocks."""
    from gemkr.cli import get_preset
    from gemkr.vision import CLIPConfig
    cfg = get_preset("a6000-7b").train.model
    cfg = dataclasses.replace(cfg, clip=dataclasses.replace(cfg.clip, checkpoint=None), llm_path="random-llama-7b")
    if not dry: return cfg
    return dataclasses.replace(cfg, clip=CLIPConfig(), prefix=dataclasses.replace(cfg.prefix, n_layers=2, llm_dim=64),
                               llm_path="random-llama-tiny")


def big_model_check(n_queries: int, device: str, dry: bool, cache: Path) -> dict:
    "Forward, one LoRA backward and constrained retrieval of a 7B-shaped random GeMKR on `n_queries` Mini queries."
    from gemkr.clues import ClueConfig, clue_targets, mini_kb, mini_tokenizer
    from gemkr.mini import build_mini
    from gemkr.model import LLAMA_7B, QueryInputs, build_gemkr, stack_examples
    from gemkr.cli import get_preset
    times, dtype = {}, getattr(torch, get_preset("a6000-7b").dtype)              # bfloat16
    mini = build_mini(); tok = mini_tokenizer(mini, 1000); kb = mini_kb(mini, tok)
    cfg = gemkr_config(dry)
    with timed("random LLaMA on " + device, times):
        llm = random_llama(LLAMA_TINY if dry else LLAMA_7B, tok, device, dtype)
    with timed("GeMKR front-end + LoRA", times): model = build_gemkr(cfg, tok, llm=llm)
    qs = mini.split("test").queries[:n_queries]
    targets = clue_targets(qs, kb, ClueConfig(kind="first_sentence", max_len=cfg.max_clue_len)).by_qid()
    with timed("regions (CPU)", times): exs = QueryInputs(model.vision, cfg.n_regions, "gold", cache=cache)(qs)
    exs = [dataclasses.replace(e, clue=targets[e.qid][0].tokens) for e in exs if e.qid in targets]
    if not exs: raise SystemExit("gpu_smoke: no clue target for the chosen queries")
    model.vision.to(device)
    with timed("forward (loss)", times), torch.no_grad(): loss = model.loss(**model.prepare(exs)).item()
    model.train()
    with timed("forward + LoRA backward", times): model.loss(**model.prepare(exs)).backward()
    model.eval()
    grads = {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()
             if p.requires_grad}
    lora_ok = any(v for n, v in grads.items() if "lora_" in n) and any(v for n, v in grads.items() if "prefix" in n)
    dcfg = kb.decoding_config(max_clue_len=cfg.max_clue_len)
    with timed(f"retrieve ({len(exs)} queries)", times):
        res = model.retrieve(*stack_examples(exs), [e.question for e in exs], kb, dcfg)
    clues = [c for r in res for c in r.clues]
    valid = all(kb.index.count(list(c.tokens)) > 0 for c in clues)
    n_params = sum(p.numel() for p in model.parameters())
    return dict(times=times, loss=loss, gradients_reach_lora_and_prefix=lora_ok, clues=len(clues),
                clues_in_kb=valid, params_b=n_params / 1e9, peak_gb=peak_memory_gb(device),
                first_clues=[c.text for c in res[0].clues[:3]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny shapes on the CPU (no GPU needed)")
    ap.add_argument("--queries", type=int, default=4, help="Mini test queries for the 7B-shaped model")
    ap.add_argument("--skip-chain", action="store_true", help="skip part 1 (the tiny chain)")
    ap.add_argument("--out", default=None, help="folder for gpu_smoke.json (default: print only)")
    args = ap.parse_args(argv)
    device = "cpu" if args.cpu_dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device; use --cpu-dry-run on a machine without a GPU", file=sys.stderr); return 2
    t0, report = time.perf_counter(), dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu")
    from gemkr.core import atomic_write, cache_dir
    if not args.skip_chain:
        from gemkr.cli import get_preset, run_chain
        print("1. the chain (preset tiny):", flush=True)
        res = run_chain(get_preset("tiny"), cache_dir("runs", "gpu-smoke"))
        report["chain"] = {k: dict(seconds=r.seconds, cached=r.cached) for k, r in res.items()}
    print(f"2. GeMKR of {'tiny' if args.cpu_dry_run else 'LLaMA-7B'} shape, random, bf16, on {device}:", flush=True)
    with tempfile.TemporaryDirectory() as d: report["model"] = big_model_check(args.queries, device, args.cpu_dry_run,
                                                                                Path(d))
    m = report["model"]
    print(f"  parameters {m['params_b']:.3f} B, loss {m['loss']:.3f}, {m['clues']} clues (all in the KB: "
          f"{m['clues_in_kb']}), gradients reach LoRA and prefix: {m['gradients_reach_lora_and_prefix']}")
    print(f"  peak {'GPU memory allocated' if device == 'cuda' else 'RSS'}: {m['peak_gb']:.2f} GB")
    report["seconds"] = time.perf_counter() - t0
    print(f"total {report['seconds']:.0f} s")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(args.out) / "gpu_smoke.json", "w") as f: json.dump(report, f, indent=1)
    ok = m["clues_in_kb"] and m["gradients_reach_lora_and_prefix"] and m["clues"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

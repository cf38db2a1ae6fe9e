"""The console scripts: `gemkr_demo` (FM-index demo, with a temporary GEMKR_CACHE) and `gemkr` (gemkr.cli: presets, stages, errors)."""
import json, subprocess, sys, os
from pathlib import Path


def _write_kb(root: Path) -> Path:
    kb = root / "kb" / "tiny.jsonl"; kb.parent.mkdir(parents=True)
    rows = [{"id": "a#0", "title": "A", "text": "The moon orbits the earth."},
            {"id": "b#0", "title": "B", "text": "The earth orbits the sun, and the moon follows."}]
    kb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return kb


def _demo(data: Path, *args, kb: bool = True):
    env = {**os.environ, "GEMKR_CACHE": str(data / "cache"), "GEMKR_PROGRESS": "0"}
    exe = Path(sys.executable).parent / "gemkr_demo"      # the console script, as a user runs it
    kb_args = ["--kb", str(data / "kb" / "tiny.jsonl")] if kb else []
    return subprocess.run([str(exe), *kb_args, *args], env=env, capture_output=True, text=True, timeout=120)


def test_demo_builds_then_reuses_index(tmp_path):
    _write_kb(tmp_path)
    first = _demo(tmp_path, "--query", "the moon", "the earth orbits")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("built FMIndex(2 docs")
    assert "'the moon': 2 occurrences in 2 passages" in first.stdout
    assert "'the earth orbits': 1 occurrences in 1 passages" in first.stdout
    assert "passages:    b#0" in first.stdout
    second = _demo(tmp_path, "--query", "the moon")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("loaded FMIndex(2 docs")          # unchanged corpus and config: reused
    cache = tmp_path / "cache" / "fmindex"
    assert (cache / "tiny.fmi").exists() and (cache / "tiny.fmi.config.json").exists()
    assert not list(cache.glob("*.sha256")) and not list(cache.glob("*.tmp"))   # the fingerprint is in the header


def test_demo_rebuilds_when_the_kb_changes(tmp_path):
    kb = _write_kb(tmp_path)
    assert _demo(tmp_path, "--query", "the moon").returncode == 0
    kb.write_text(kb.read_text().replace("The moon orbits", "The moon circles"))
    r = _demo(tmp_path, "--query", "the moon")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("built FMIndex(2 docs")
    assert "'the moon': 2 occurrences in 2 passages" in r.stdout and "circles (1)" in r.stdout


def test_demo_names_a_malformed_line(tmp_path):
    kb = _write_kb(tmp_path)
    kb.write_text(kb.read_text() + '{"id": "c#0"}\n')
    r = _demo(tmp_path)
    assert r.returncode != 0
    assert "tiny.jsonl, line 3: missing field(s) ['text']" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_demo_refuses_an_empty_query_before_any_output(tmp_path):
    _write_kb(tmp_path)
    for bad in ("", "   "):
        r = _demo(tmp_path, "--query", "the moon", bad)
        assert r.returncode != 0
        assert r.stdout == ""                                          # not half the answers, then a failure
        assert f"--query {bad!r} holds no word to look up" in r.stderr
        assert "Traceback" not in r.stderr


def test_demo_defaults_to_mini_passages(tmp_path):
    r = _demo(tmp_path, "--query", "the speed of light", kb=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("built FMIndex(12,372 docs")            # GeMKR-Mini's knowledge base, all of it
    from gemkr.core import assets_dir, read_jsonl                     # the answer, by brute force over the same file
    from gemkr.fmindex import WordTokenizer, encode_kb, naive_count, naive_doc_ids
    passages = read_jsonl(assets_dir("mini", "passages.jsonl"))
    tok = WordTokenizer.train(p["text"] for p in passages)
    kb, q = encode_kb(tok, (p["text"] for p in passages)), tok.encode("the speed of light")
    docs = naive_doc_ids(kb, q)
    assert f"'the speed of light': {naive_count(kb, q)} occurrences in {len(docs)} passages" in r.stdout
    assert "passages:    " + ", ".join(passages[d]["id"] for d in docs[:5]) in r.stdout
    assert (tmp_path / "cache" / "fmindex" / "passages.fmi").exists()


# ---- the `gemkr` command (gemkr.cli): help, user errors, presets, the chain end to end at tiny size ----

def _gemkr(tmp_path, *args, env=None, timeout=300):
    "Run the `gemkr` console script the way pip's wrapper does (a `__main__` calling `gemkr.cli.main`)."
    script = tmp_path / "gemkr_cli.py"
    script.write_text("import sys\nfrom gemkr.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "GEMKR_PROGRESS": "0", **(env or {})}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=timeout)


def test_gemkr_help_of_every_command(tmp_path):
    from gemkr.cli import COMMANDS
    top = _gemkr(tmp_path, "--help")
    assert top.returncode == 0 and all(c in top.stdout for c in COMMANDS)
    for c, text in COMMANDS.items():
        r = _gemkr(tmp_path, c, "--help")
        assert r.returncode == 0, r.stderr
        assert f"usage: gemkr {c}" in r.stdout and "--preset" in r.stdout and "--out" in r.stdout
        assert " ".join(text.split()[:4]) in " ".join(r.stdout.split())      # says what it does (and writes)
    assert "--image" in _gemkr(tmp_path, "retrieve", "--help").stdout


def _one_error_line(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles: assert n in lines[0], lines[0]


def test_gemkr_unknown_preset(tmp_path):
    for cmd in ("run", "data", "train"):
        r = _gemkr(tmp_path, cmd, "--preset", "a100", "--out", str(tmp_path / "out"))
        _one_error_line(r, f"gemkr {cmd}: error: unknown preset 'a100'", "mini, a6000-7b, tiny")
    assert not (tmp_path / "out").exists()


def _main(*argv):
    "`gemkr.cli.main` in this process: (exit code, stdout, stderr)."
    import contextlib, io
    from gemkr.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


class _R:
    def __init__(self, rc, out, err): self.returncode, self.stdout, self.stderr = rc, out, err


def test_gemkr_retrieve_missing_image(tmp_path):
    r = _gemkr(tmp_path, "retrieve", "--preset", "tiny", "--image", str(tmp_path / "none.jpg"), "--question", "Who?")
    _one_error_line(r, "gemkr retrieve: error: ", "none.jpg: no such image file")


def test_gemkr_retrieve_unreadable_image_and_no_model(tmp_path):
    bad = tmp_path / "photo.png"; bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _one_error_line(_R(*_main("retrieve", "--preset", "tiny", "--image", str(bad), "--question", "Who?")),
                    "photo.png: unreadable image")
    img = tmp_path / "ok.png"
    from PIL import Image; Image.new("RGB", (40, 30), "red").save(img)
    r = _R(*_main("retrieve", "--preset", "tiny", "--image", str(img), "--question", "Who?",
                  "--out", str(tmp_path / "empty")))
    _one_error_line(r, "no trained GeMKR of preset 'tiny'", "gemkr train --preset tiny")
    r = _R(*_main("retrieve", "--preset", "tiny", "--image", str(img), "--question", "Who?",
                  "--checkpoint", str(tmp_path / "nockpt")))
    _one_error_line(r, "nockpt: not a GeMKR checkpoint folder")


def test_gemkr_data_check_missing_benchmark(tmp_path):
    _one_error_line(_R(*_main("data", "--check", str(tmp_path))), "okvqa_train_corpus.csv: no such")
    _one_error_line(_R(*_main("data", "--check", str(tmp_path / "nowhere"))), "nowhere: no such folder")
    _one_error_line(_R(*_main("run", "--preset", "tiny", "--limit", "0")), "--limit must be")


def test_gpu_smoke_cpu_dry_run(tmp_path):
    "bench/gpu_smoke.py's code at tiny shapes on the CPU: the chain, forward, LoRA backward, constrained retrieval."
    bench = Path(__file__).parents[1] / "bench" / "gpu_smoke.py"
    env = {**os.environ, "GEMKR_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(bench), "--cpu-dry-run", "--out", str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert set(rep["chain"]) == {"data", "index", "train", "evaluate"}
    m = rep["model"]
    assert m["clues"] > 0 and m["clues_in_kb"] and m["gradients_reach_lora_and_prefix"] and m["peak_gb"] > 0
    for step in ("forward (loss)", "forward + LoRA backward"): assert m["times"][step] > 0
    assert "peak RSS" in r.stdout and "retrieve (4 queries)" in r.stdout


def test_check_preset_lists_everything_missing(monkeypatch, tmp_path):
    from gemkr.cli import PresetError, check_preset, get_preset
    for v in ("GEMKR_LLAMA_7B", "GEMKR_CLIP_CKPT", "GEMKR_YOLO_WEIGHTS"): monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("GEMKR_BENCHMARKS", str(tmp_path / "bench"))
    import pytest
    with pytest.raises(PresetError) as e: check_preset(get_preset("a6000-7b"))
    msg = str(e.value)
    for want in ("GEMKR_LLAMA_7B", "GEMKR_CLIP_CKPT", "GEMKR_YOLO_WEIGHTS", "okvqa_train_corpus.csv",
                 "retriever_test.json", "val2014"):
        assert want in msg, want
    # give it some of them: only the rest is listed
    llama = tmp_path / "llama"; llama.mkdir(); (llama / "config.json").write_text("{}")
    monkeypatch.setenv("GEMKR_LLAMA_7B", str(llama))
    with pytest.raises(PresetError) as e: check_preset(get_preset("a6000-7b"))
    assert "GEMKR_LLAMA_7B" not in str(e.value) and "GEMKR_CLIP_CKPT" in str(e.value)
    assert check_preset(get_preset("tiny")).name == "tiny"


def test_gemkr_run_a6000_without_weights_stops_before_any_work(tmp_path):
    env = {"GEMKR_LLAMA_7B": "", "GEMKR_CLIP_CKPT": "", "GEMKR_YOLO_WEIGHTS": "",
           "GEMKR_BENCHMARKS": str(tmp_path / "bench")}
    r = _gemkr(tmp_path, "run", "--preset", "a6000-7b", "--out", str(tmp_path / "out"), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert "preset 'a6000-7b' cannot run; missing:" in r.stderr
    for want in ("GEMKR_LLAMA_7B", "GEMKR_CLIP_CKPT", "GEMKR_YOLO_WEIGHTS", "GEMKR_BENCHMARKS"): assert want in r.stderr
    assert not (tmp_path / "out").exists()


def test_gemkr_run_tiny_end_to_end_then_cached(tmp_path):
    "The chain on a small Mini slice: stages chain, outputs exist, metrics from real retrievals, re-run cached."
    import pandas as pd
    out = tmp_path / "runs"
    first = _gemkr(tmp_path, "run", "--preset", "tiny", "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("data", "index", "train", "evaluate"): assert f"[{stage}] done in" in first.stdout
    assert "no detector in this preset" in first.stdout and "stage times:" in first.stdout
    folders = {p.name.split("-")[0]: p for p in out.iterdir() if p.is_dir() and p.name != "work"}
    assert set(folders) == {"data", "index", "train", "evaluate"}
    for f in folders.values(): assert (f / "MANIFEST.json").is_file() and (f / "preset.json").is_file()
    ev = folders["evaluate"]
    assert {"table.csv", "scores.csv", "clues.json", "figure.png"} <= {p.name for p in ev.iterdir()}
    assert (folders["train"] / "gemkr" / "config.json").is_file() and (folders["index"] / "tokenizer").is_dir()
    assert "GeMKR (tiny)" in first.stdout and "BM25 (question)" in first.stdout
    assert "DEBUG" not in first.stdout + first.stderr                       # no library debug logging

    # GeMKR's scores are those of its own retrievals: every clue occurs in the KB, R@10 recomputed from a fresh run
    from gemkr.clues import mini_kb
    from gemkr.mini import build_mini
    from gemkr.model import GeMKRRetriever, load_gemkr
    from gemkr.cli import get_preset
    import dataclasses
    per, clues = pd.read_csv(ev / "scores.csv"), json.loads((ev / "clues.json").read_text())
    ours = per[per.baseline == "GeMKR (tiny)"]
    assert len(ours) == 2 * 3 * 8 and len(clues) == 3 * 8
    mini, model = build_mini(), load_gemkr(folders["train"] / "gemkr")
    kb = mini_kb(mini, model.tokenizer)
    texts = [p.text for p in mini.passages]
    for qid, cs in list(clues.items())[:4]:
        assert cs and all(any(c in t for t in texts) for c in cs), (qid, cs)
    p = get_preset("tiny")
    cfg = dataclasses.replace(p.decoding, eos_token_id=kb.eos_token_id, pad_token_id=kb.pad_token_id,
                              max_clue_len=model.cfg.max_clue_len)
    bench = mini.split("test"); qs = bench.queries[:8]
    res = GeMKRRetriever(model, kb, cfg=cfg)(qs)
    want = [float(any(d in q.relevant for d, _ in r.docs[:10])) for q, r in zip(qs, res)]
    got = ours[(ours.split == "test") & (ours.relevance == "gold")].set_index("qid").loc[[q.qid for q in qs], "R@10"]
    assert list(got) == want

    # a second run finds every stage; an unfinished stage (no manifest) is rebuilt, the others stay cached
    second = _gemkr(tmp_path, "run", "--preset", "tiny", "--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("] cached in") == 4 and "] done in" not in second.stdout
    t_first = sum(float(x.split()[0]) for x in first.stdout.split("stage times: ")[1].splitlines()[0].split(", ")
                  for x in [x.split(" ", 1)[1]])
    t_second = sum(float(x.split(" ", 1)[1].split()[0]) for x in
                   second.stdout.split("stage times: ")[1].splitlines()[0].split(", "))
    assert t_second < t_first / 5, (t_first, t_second)
    # another limit is another config: a new evaluate folder beside the old one, the stages before it cached
    third = _gemkr(tmp_path, "evaluate", "--preset", "tiny", "--out", str(out), "--limit", "2")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[train] cached" in third.stdout and "[evaluate] done" in third.stdout
    assert len(list(out.glob("evaluate-*"))) == 2 and (ev / "MANIFEST.json").is_file()


FIXTURES = Path(__file__).parent / "fixtures"          # laid out like $GEMKR_BENCHMARKS


def test_gemkr_data_check_on_fixture_benchmark():
    from gemkr.benchmarks import load_gs112k
    rc, out, err = _main("data", "--check", str(FIXTURES))
    assert rc == 0, err
    got, want = json.loads(out), load_gs112k(FIXTURES / "okvqa" / "okvqa_train_corpus.csv",
                                            FIXTURES / "okvqa" / "retriever_test.json", FIXTURES / "coco" / "val2014")
    assert (got["n_passages"], got["n_queries"]) == (len(want.passages), len(want.queries)) and got["n_queries"] > 0
    assert got["with_image"] == sum(q.image is not None and Path(q.image).is_file() for q in want.queries)


def test_a6000_preset_data_and_index_with_local_files(monkeypatch, tmp_path):
    "With every file in place, a6000-7b passes its check, builds data and index (LLaMA's tokenizer) on the fixture."
    from gemkr.clues import train_tokenizer
    from gemkr.retrieval import load_tokenizer, save_tokenizer
    llama = tmp_path / "llama-7b"
    save_tokenizer(train_tokenizer(["the moon orbits the earth", "a picture of a tower"] * 20, vocab_size=300), llama)
    (llama / "config.json").write_text("{}")
    (tmp_path / "clip.pt").write_bytes(b"x"); (tmp_path / "yolo.pt").write_bytes(b"x")
    for var, v in (("GEMKR_LLAMA_7B", llama), ("GEMKR_CLIP_CKPT", tmp_path / "clip.pt"),
                   ("GEMKR_YOLO_WEIGHTS", tmp_path / "yolo.pt"), ("GEMKR_BENCHMARKS", FIXTURES)):
        monkeypatch.setenv(var, str(v))
    out = tmp_path / "runs"
    rc, stdout, err = _main("index", "--preset", "a6000-7b", "--out", str(out))
    assert rc == 0, err
    assert "[data] done" in stdout and "[index] done" in stdout
    (index,) = out.glob("index-*")
    kb = json.loads((index / "kb.json").read_text())
    assert kb["vocab"] == len(load_tokenizer(llama)) and kb["passages"] > 0
    assert json.loads((index / "preset.json").read_text())["train"]["model"]["llm_path"] == str(llama)
    rc, stdout, err = _main("train", "--preset", "a6000-7b", "--out", str(out))
    assert rc == 2 and "[index] cached" in stdout and "training on gs112k is not implemented" in err
    # another tokenizer in the LLaMA folder: the index is rebuilt in a new folder
    save_tokenizer(train_tokenizer(["other words entirely, and more of them"] * 20, vocab_size=280), llama)
    rc, stdout, err = _main("index", "--preset", "a6000-7b", "--out", str(out))
    assert rc == 0 and "[data] cached" in stdout and "[index] done" in stdout and len(list(out.glob("index-*"))) == 2


def test_gemkr_trains_on_the_detector_boxes(tmp_path):
    "boxes='detector': the examples' regions are the detector's crops, its key is in the cache key; none given: an error."
    import dataclasses
    import numpy as np
    import pytest
    import torch
    from gemkr.cli import get_preset, load_benchmark_mini
    from gemkr.model import QueryInputs
    from gemkr.train import train_mini
    p = get_preset("tiny"); mini = load_benchmark_mini(p)
    train = dataclasses.replace(p.train, boxes="detector")
    with pytest.raises(ValueError, match=r"boxes='detector' needs train_mini\(detector="):
        train_mini(train, mini, out_dir=tmp_path / "none")
    seen = []
    def quarter(image):                                   # one box: the top-left quarter of every image
        seen.append(image.size); w, h = image.size
        return np.array([[0, 0, w // 2, h // 2]], float), np.array([0.9])
    run = train_mini(train, mini, out_dir=tmp_path / "det", detector=(quarter, "quarter"))
    assert not run.reused and len(seen) >= train.n_train + train.n_val
    again = train_mini(train, mini, out_dir=tmp_path / "det", detector=(quarter, "quarter"))
    assert again.reused                                    # same detector key: read from the cache
    other = train_mini(train, mini, out_dir=tmp_path / "other", detector=(quarter, "another"))
    assert not other.reused and other.path != run.path     # another detector is another model
    q = mini.split("train").queries[0]
    det = QueryInputs(run.model.vision, run.model.cfg.n_regions, "detector", quarter, "quarter")([q])[0]
    gold = QueryInputs(run.model.vision, run.model.cfg.n_regions, "gold")([q])[0]
    assert det.region_mask.sum() == 1 and gold.region_mask.sum() == len(q.scene.boxes)
    assert not torch.equal(det.regions, gold.regions)


def test_query_inputs_detect_a_chunk_at_once():
    "A detector with `prefetch` (the CLI's memoise_detect) gets each chunk of images in one call, then is read from its memo."
    import numpy as np
    from gemkr.cli import get_preset, load_benchmark_mini, memoise_detect
    from gemkr.model import QueryInputs, build_gemkr
    from gemkr.clues import mini_tokenizer
    p = get_preset("tiny"); mini = load_benchmark_mini(p)
    model = build_gemkr(p.train.model, mini_tokenizer(mini, p.train.vocab_size))
    one, many = [], []
    def quarter(image):
        one.append(1); w, h = image.size
        return np.array([[0, 0, w // 2, h // 2]], float), np.array([0.9])
    def batch(images): many.append(len(images)); return [quarter(im) for im in images]
    memo = memoise_detect(quarter, batch)
    qs = mini.split("val").queries[:10]
    exs = QueryInputs(model.vision, model.cfg.n_regions, "detector", memo, "quarter")(qs, chunk=4)
    assert many == [4, 4, 2] and len(one) == 10 and [e.qid for e in exs] == [q.qid for q in qs]
    assert all(int(e.region_mask.sum()) == 1 for e in exs)

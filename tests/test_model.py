"""The GeMKR model (gemkr.model): bad input, checkpoints (including a save killed with SIGKILL), examples and retrieval."""
import dataclasses, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
from gemkr.core import CacheError
from gemkr.clues import train_tokenizer
from gemkr.data import Passage, Query
from gemkr.mini import build_mini
from gemkr.prefix import PrefixConfig
from gemkr.retrieval import build_kb, encode_text, run_retriever
from gemkr.vision import CLIPConfig, DetectorConfig, ImageEncoder, RegionExtractor, load_detector, load_image, top_regions
from gemkr.testing import hf_word_tokenizer
from gemkr.model import (TEMPLATE, GeMKRConfig, GeMKRExample, GeMKRRetriever, QueryInputs, build_gemkr, build_llm,
                         check_trainable, load_gemkr, loss_full_logits, mini_examples, save_gemkr, split_template,
                         stack_examples, trainable_groups)

TEXTS = ["Paris is the capital and largest city of France.", "Berlin is the capital of Germany.",
         "The Eiffel Tower is a tower in Paris.", "Mount Fuji is the highest mountain of Japan.",
         "What is the capital of the country shown?", "Which city is this tower in?"]
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SMALL = dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
             prefix=PrefixConfig(n_layers=2, llm_dim=64))


@pytest.fixture(scope="module")
def tok():
    return hf_word_tokenizer(TEXTS + [TEMPLATE], specials=SPECIALS)


@pytest.fixture(scope="module")
def model(tok):
    return build_gemkr(GeMKRConfig(**SMALL), tok)


def _example(qid, question, clue=None, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(10, dtype=torch.bool); mask[:n] = True
    S = GeMKRConfig().clip.image_size
    return GeMKRExample(qid, torch.randn(3, S, S, generator=g), torch.randn(10, 128, generator=g) * mask[:, None],
                        mask, question, clue)


def _perturb(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad: p.add_(torch.randn_like(p) * 0.05)
    return model


def _outputs(model, exs):
    with torch.no_grad():
        b = model.prepare(exs)
        logits = model.causal_lm(inputs_embeds=b["inputs_embeds"], attention_mask=b["attention_mask"]).logits
        return model.visual_tokens(*stack_examples(exs)), logits


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("template,count", [("no marker {input}", 0), ("<ImageHere>{input}<ImageHere>", 2)])
def test_template_needs_one_image_marker(template, count):
    with pytest.raises(ValueError, match=f"GeMKRConfig.template must contain <ImageHere> exactly once, found it {count}"):
        GeMKRConfig(template=template)
    with pytest.raises(ValueError, match="{input} exactly once"):
        split_template("<ImageHere> and no question")


def test_clue_longer_than_limit_names_the_query(model, tok):
    long = tuple(encode_text(tok, "Paris is the capital and largest city of France ."))
    assert len(long) == 10
    with pytest.raises(ValueError, match=r"example 'q-7': clue of 10 tokens, more than GeMKRConfig.max_clue_len=9"):
        model.prepare([_example("q-1", TEXTS[4], long[:9]), _example("q-7", TEXTS[4], long)])
    model.prepare([_example("q-1", TEXTS[4], long[:9])])     # 9 tokens: fine


@pytest.mark.parametrize("specials,what", [(("<unk>", "<s>", "</s>"), "no pad token"),
                                           (("<pad>", "<s>", "<unk>"), "no EOS token")])
def test_tokenizer_without_eos_or_pad_is_refused(specials, what):
    with pytest.raises(ValueError, match=what):
        build_gemkr(GeMKRConfig(**SMALL), hf_word_tokenizer(TEXTS, specials=specials))


def test_missing_image_names_the_file(model, tmp_path):
    q = Query("q0", tmp_path / "missing.png", "What is this?", ["x"])
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        QueryInputs(model.vision, cache=tmp_path / "regions")([q])


# --- the model -------------------------------------------------------------------------------------------

def test_trainable_groups(tok, model):
    assert set(check_trainable(model)) == {"lora", "projection", "prefix", "gates"}
    full = build_gemkr(GeMKRConfig(finetune="full", **SMALL), tok)
    assert set(check_trainable(full)) == {"llm", "projection", "prefix", "gates"}
    qkvo = build_gemkr(GeMKRConfig(lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"), **SMALL), tok)
    assert trainable_groups(qkvo)["lora"] == 2 * trainable_groups(model)["lora"]
    model.vision.vit.ln_post.weight.requires_grad_(True)
    try:
        with pytest.raises(AssertionError, match="'vit'"): check_trainable(model)
    finally: model.vision.vit.ln_post.weight.requires_grad_(False)


def test_loss_at_label_positions_equals_full_logits(tok, model):
    clue = tuple(encode_text(tok, "Paris is the capital"))
    exs = [_example("a", TEXTS[4], clue, 2, 0), _example("b", TEXTS[5], clue[:1], 1, 1)]
    _perturb(model)
    batch = model.prepare(exs)
    torch.testing.assert_close(model.loss(**batch), loss_full_logits(model, **batch), atol=1e-5, rtol=0)


def test_left_padded_batch_retrieves_as_alone(tok, model, tmp_path):
    kb = build_kb([Passage(str(i), "", t) for i, t in enumerate(TEXTS[:4])], tok, path=tmp_path / "kb")
    cfg = kb.decoding_config(num_beams=3, num_beam_groups=3, num_return_sequences=3, max_clue_len=3)
    qs = [TEXTS[4], "Which city?", TEXTS[5]]
    ims, regs, masks = stack_examples([_example(str(i), q, n=i + 1, seed=i) for i, q in enumerate(qs)])
    batched = model.retrieve(ims, regs, masks, qs, kb, cfg)
    for i, q in enumerate(qs):
        alone = model.retrieve(ims[i:i + 1], regs[i:i + 1], masks[i:i + 1], [q], kb, cfg)[0]
        assert [c.tokens for c in batched[i].clues] == [c.tokens for c in alone.clues]
        assert [d for d, _ in batched[i].docs] == [d for d, _ in alone.docs]
        assert all(kb.index.count(list(c.tokens)) > 0 for c in alone.clues)


# --- checkpoints -----------------------------------------------------------------------------------------

def test_save_load_identical_outputs(tok, model, tmp_path):
    exs = [_example("a", TEXTS[4], (5, 6), 2, 0), _example("b", TEXTS[5], (7,), 1, 1)]
    _perturb(model, 3)
    loaded = load_gemkr(save_gemkr(model, tmp_path / "ckpt"), GeMKRConfig(**SMALL))
    for a, b in zip(_outputs(model, exs), _outputs(loaded, exs)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_llm_from_a_local_folder(tok, tmp_path):
    llm = build_llm(GeMKRConfig(**SMALL), tok)
    llm.save_pretrained(tmp_path / "llama")
    cfg = GeMKRConfig(llm_path=str(tmp_path / "llama"), **SMALL)
    m = _perturb(build_gemkr(cfg, tok))
    folder = save_gemkr(m, tmp_path / "ckpt")
    assert not (folder / "llm.safetensors").exists() and (folder / "adapter" / "adapter_model.safetensors").exists()
    exs = [_example("a", TEXTS[4], (5,))]
    torch.testing.assert_close(_outputs(m, exs)[1], _outputs(load_gemkr(folder), exs)[1], atol=1e-6, rtol=0)


def test_checkpoint_of_another_config_is_refused(model, tmp_path):
    folder = save_gemkr(model, tmp_path / "ckpt")
    other = GeMKRConfig(**{**SMALL, "lora_r": 4, "prefix": PrefixConfig(n_layers=1, llm_dim=64)})
    with pytest.raises(ValueError, match=r"another config.*lora_r: 8 != 4.*prefix.n_layers: 2 != 1"):
        load_gemkr(folder, other)


@pytest.mark.parametrize("name", ["trained.safetensors", "adapter/adapter_model.safetensors", "llm.safetensors",
                                  "config.json"])
def test_truncated_or_corrupted_checkpoint_names_the_file(model, tmp_path, name):
    folder = save_gemkr(model, tmp_path / "ckpt")
    size = (folder / name).stat().st_size
    with open(folder / name, "r+b") as f: f.truncate(size // 2)
    with pytest.raises(CacheError, match=f"{Path(name).name}: {size // 2} bytes, the manifest says {size}"):
        load_gemkr(folder)
    folder = save_gemkr(model, tmp_path / "ckpt")                       # replaces the damaged one
    with open(folder / name, "r+b") as f: f.seek(size // 3); f.write(b"\x00\xff\x13")
    with pytest.raises(CacheError, match=f"{Path(name).name}: checksum differs"):
        load_gemkr(folder)
    (folder / "MANIFEST.json").unlink()
    with pytest.raises(CacheError, match="no MANIFEST.json"):
        load_gemkr(folder)


CHILD = textwrap.dedent("""
    import sys, time, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    import torch
    from gemkr.testing import hf_word_tokenizer
    from gemkr.prefix import PrefixConfig
    from gemkr.model import TEMPLATE, GeMKRConfig, build_gemkr, save_gemkr, _write_checkpoint
    out = Path(sys.argv[1])
    cfg = GeMKRConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                      prefix=PrefixConfig(n_layers=2, llm_dim=64))
    model = build_gemkr(cfg, hf_word_tokenizer(["Paris is the capital of France.", TEMPLATE],
                                               specials=("<pad>", "<s>", "</s>", "<unk>")))
    save_gemkr(model, out / "ckpt")                                  # a good checkpoint
    def stall(tok, folder):                                          # the second save stops half-way...
        (out / "half-way").write_text("x")
        time.sleep(600)
    _write_checkpoint.__globals__["save_tokenizer"] = stall
    with torch.no_grad(): model.vision.prefix.prefix.add_(1.0)
    save_gemkr(model, out / "ckpt")                                  # ...and is killed there
""")


def test_save_killed_mid_way_leaves_the_good_checkpoint(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "child.py"; script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in sys.path if p]))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "half-way").exists():
            assert proc.poll() is None, "the child died before the second save"
            assert time.monotonic() < deadline, "the child never reached the second save"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill(); proc.wait()
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.")]
    assert len(temps) == 1                                            # the dead save's temp folder...
    good = load_gemkr(tmp_path / "ckpt")                              # ...never replaced the good checkpoint
    first = build_gemkr(GeMKRConfig(**SMALL), hf_word_tokenizer(["Paris is the capital of France.", TEMPLATE],
                                                                specials=SPECIALS))
    assert torch.equal(good.vision.prefix.prefix, first.vision.prefix.prefix)   # the first save's weights
    save_gemkr(good, tmp_path / "ckpt")                               # the next save clears the dead temp
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.")] == []


# --- Mini examples ---------------------------------------------------------------------------------------

def test_mini_examples_with_targets(model, tmp_path):
    mini = build_mini()
    qs = mini.split("val").queries[:3]
    samples = [SimpleNamespace(qid=qs[0].qid, doc=0, tokens=(5, 6)), SimpleNamespace(qid=qs[0].qid, doc=1, tokens=(7,)),
               SimpleNamespace(qid=qs[2].qid, doc=2, tokens=(8, 9, 10)), SimpleNamespace(qid="elsewhere", doc=3, tokens=(5,))]
    exs = mini_examples(mini, "val", model, targets=SimpleNamespace(samples=samples), limit=3, cache=tmp_path)
    assert [(e.qid, e.clue) for e in exs] == [(qs[0].qid, (5, 6)), (qs[0].qid, (7,)), (qs[2].qid, (8, 9, 10))]
    assert exs[0].regions is exs[1].regions                           # one query's inputs, shared
    assert exs[2].region_mask.sum().item() == qs[2].scene.n_pictures
    assert model.loss(**model.prepare(exs)).isfinite()
    plain = mini_examples(mini, "val", model, limit=3, cache=tmp_path)
    assert [e.clue for e in plain] == [None] * 3


def test_retriever_fits_run_retriever(model, tok, tmp_path):
    mini = build_mini()
    bench = mini.split("val").subset([q.qid for q in mini.split("val").queries[:4]])
    kb = build_kb([Passage(str(i), "", t) for i, t in enumerate(TEXTS[:4])], tok, path=tmp_path / "kb")
    cfg = kb.decoding_config(num_beams=2, num_beam_groups=2, num_return_sequences=2, max_clue_len=2)
    r = GeMKRRetriever(model, kb, QueryInputs(model.vision, cache=tmp_path / "regions"), cfg)
    run = run_retriever(r, bench, batch_size=3)
    assert set(run.rankings) == {q.qid for q in bench.queries} and run.config is cfg


def test_bpe_tokenizer_of_the_clues_chapter(tmp_path):
    bpe = train_tokenizer(TEXTS + [TEMPLATE], vocab_size=300, min_frequency=1)
    m = build_gemkr(GeMKRConfig(**SMALL), bpe)
    before, after = m.prompt_ids(TEXTS[4])
    assert before[0] == 1 and bpe.decode(before[1:]) + "<ImageHere>" + bpe.decode(after) == TEMPLATE.replace("{input}", TEXTS[4])
    kb = build_kb([Passage(str(i), "", t) for i, t in enumerate(TEXTS[:4])], bpe, path=tmp_path / "kb")
    clue = tuple(kb.tokens(0)[1:6])
    b = m.prepare([_example("a", TEXTS[4], clue)])
    assert b["labels"][0][b["labels"][0] != -100].tolist() == list(clue) + [2]
    cfg = kb.decoding_config(num_beams=2, num_beam_groups=2, num_return_sequences=2, max_clue_len=4)
    ims, regs, masks = stack_examples([_example("a", TEXTS[4])])
    res = m.retrieve(ims, regs, masks, [TEXTS[4]], kb, cfg)[0]
    assert res.clues and all(kb.index.count(list(c.tokens)) > 0 for c in res.clues)


def test_detector_regions_through_a_region_extractor(model, tmp_path):
    ext = RegionExtractor(ImageEncoder(CLIPConfig()), load_detector(DetectorConfig()), DetectorConfig(conf=0.0), 10,
                          cache=tmp_path / "vision-regions")
    q = build_mini().split("val").queries[0]
    inputs = QueryInputs(model.vision, 3, "detector", ext, cache=tmp_path / "regions")
    ex = inputs([q])[0]
    boxes = top_regions(*ext.detect(load_image(q.image)), 3)[0]
    assert ex.regions.shape == (3, 128) and ex.region_mask.sum().item() == len(boxes) == 3    # conf 0: 3 boxes
    assert len(list((tmp_path / "regions").glob("*.npz"))) == 1
    assert torch.equal(inputs([q])[0].regions, ex.regions)                                 # from the cache
    gold = QueryInputs(model.vision, 3, "gold", cache=tmp_path / "regions")([q])[0]
    assert len(list((tmp_path / "regions").glob("*.npz"))) == 2                            # another key
    assert gold.region_mask.sum().item() == min(3, q.scene.n_pictures)


def _fit(m, exs, steps, lr=1e-2):
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad(); loss = m.loss(**m.prepare(exs)); loss.backward(); opt.step(); losses.append(loss.item())
    return losses


def test_gradients_reach_every_trained_group_and_a_batch_is_learnt(tok):
    clue = tuple(encode_text(tok, "Paris is the capital"))
    exs = [_example("a", TEXTS[4], clue, 2, 0), _example("b", TEXTS[5], clue[2:], 1, 1)]
    m = build_gemkr(GeMKRConfig(**SMALL), tok).train()
    m.loss(**m.prepare(exs)).backward()
    got = {}
    for n, p in m.named_parameters():
        if p.requires_grad:
            k = n.split(".")[1] if n.startswith("vision.") else "lora"
            got[k] = got.get(k, 0) + p.grad.abs().sum().item()
    assert set(got) == {"prefix", "blocks", "projection", "lora"} and all(v > 0 for v in got.values()), got
    torch.manual_seed(0)                                                 # LoRA dropout draws from it
    lora = _fit(m, exs, 30)
    assert lora[-1] < 0.85 * lora[0], lora                               # LoRA on a tiny random LLM: slowly
    full = _fit(build_gemkr(GeMKRConfig(finetune="full", **SMALL), tok).train(), exs, 60)
    assert full[-1] < 0.1, full                                          # the whole LLM: one batch memorised


def test_checkpoint_files_follow_the_umask(model, tmp_path):
    "safetensors writes 0600 and mkdtemp makes 0700 folders: the saved checkpoints get the umask's modes instead."
    import os
    from gemkr.train import save_checkpoint
    old = os.umask(0o027)
    try:
        folders = [save_gemkr(model, tmp_path / "ckpt"),
                   save_checkpoint(tmp_path / "run", {"step": 3, "key": "k", "x": torch.zeros(2)})]
    finally: os.umask(old)
    for folder in folders:
        for p in [folder, *folder.rglob("*")]:
            assert p.stat().st_mode & 0o777 == (0o750 if p.is_dir() else 0o640), p


# --- the region selector (chapter 07a) -------------------------------------------------------------------

def _boxed(ex, seed=0):
    "`ex` with random normalised boxes for its regions (zero for the absent ones)."
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(10, 2, generator=g) * 0.5
    return dataclasses.replace(ex, boxes=torch.cat([lo, lo + 0.4], -1) * ex.region_mask[:, None])


def test_selector_checkpoint_round_trip_and_a_misfit_selector_file(tok, tmp_path):
    from gemkr.core import write_manifest
    from gemkr.selection import SelectorConfig
    m = _perturb(build_gemkr(GeMKRConfig(selector=SelectorConfig(width=16, layers=1), **SMALL), tok))
    exs = [_boxed(_example("a", TEXTS[4], (5, 6), 3, 0), 0), _boxed(_example("b", TEXTS[5], (7,), 1, 1), 1)]
    folder = save_gemkr(m, tmp_path / "ckpt")
    back = load_gemkr(folder, m.cfg)
    args = (*stack_examples(exs), torch.stack([e.boxes for e in exs]), [e.question for e in exs])
    with torch.no_grad(): torch.testing.assert_close(back.visual_tokens(*args), m.visual_tokens(*args), atol=1e-6, rtol=0)
    other = build_gemkr(GeMKRConfig(selector=SelectorConfig(width=32, layers=1), **SMALL), tok)
    save_gemkr(other, tmp_path / "other")
    (folder / "selector.safetensors").write_bytes((tmp_path / "other" / "selector.safetensors").read_bytes())
    write_manifest(folder, "gemkr-checkpoint-1")                     # consistent files, the wrong selector
    with pytest.raises(ValueError, match="selector.safetensors: does not fit the configured selector"):
        load_gemkr(folder)


def test_config_saved_before_the_selector_loads_without_one(model, tmp_path):
    import json
    from gemkr.core import load_config, save_config
    save_config(model.cfg, tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text()); d.pop("selector")
    (tmp_path / "config.json").write_text(json.dumps(d))
    assert load_config(GeMKRConfig, tmp_path / "config.json").selector is None


def test_selector_learns_which_region_a_question_means(tok):
    "Two regions, two questions, each meaning one of them: the model learns which, from its targets."
    from gemkr.selection import SelectorConfig
    m = build_gemkr(GeMKRConfig(finetune="full", selector=SelectorConfig(width=16, layers=1), **SMALL), tok).train()
    left, right = TEXTS[4], TEXTS[5]                                 # words the tokenizer knows
    boxes = torch.zeros(10, 4); boxes[0], boxes[1] = torch.tensor([0, 0, .4, .4]), torch.tensor([.6, 0, 1, .4])
    exs = [dataclasses.replace(_example(str(i), q, (5,), 2, i), boxes=boxes, target=t)
           for i, (q, t) in enumerate([(left, 0), (right, 1), (left, 0), (right, 1)])]
    torch.manual_seed(0)
    _fit(m, exs, 40)
    scores = m.prepare(exs)["selection"][0]
    assert scores.argmax(-1).tolist() == [0, 1, 0, 1], scores
    with pytest.raises(ValueError, match="needs the questions"):
        m.visual_tokens(*stack_examples(exs))

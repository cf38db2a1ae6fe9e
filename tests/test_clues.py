"""Clue targets and the kit's tokenizer, through the exported module: determinism across processes, the target
contract against the naive scan on a slice of GeMKR-Mini, the cache, and bad input."""
import dataclasses, json, os, subprocess, sys
from types import SimpleNamespace
import pytest
from gemkr.data import Benchmark, Passage, Query, match_word
from gemkr.retrieval import KBConfig, build_kb, load_tokenizer, save_tokenizer, tokenizer_fingerprint
from gemkr.testing import hf_word_tokenizer
from gemkr.clues import (CLUE_KINDS, ClueConfig, ClueTargets, check_clue_tokenizer, clue_docs, clue_docs_naive,
                         clue_kb_config, clue_targets, is_generable, load_clue_targets, mini_clue_targets, mini_kb,
                         save_clue_targets, train_tokenizer)

TEXTS = ["Denmark is a Nordic country in Northern Europe.", "Paris is the capital and largest city of France.",
         "The Seine flows through Paris.", "Lyon is a city in France, on the Rhône.",
         "Paris is also a prince of Troy in Greek myth.", "Marseille is a city in France, on the sea."]


def test_tokenizer_same_in_another_process(tmp_path):
    "Two processes with different hash seeds learn the same merges (Rust hash maps are seeded per process)."
    code = ("import sys, json; from gemkr.clues import train_tokenizer; "
            "print(train_tokenizer(json.load(open(sys.argv[1])), vocab_size=400).backend_tokenizer.to_str())")
    (tmp_path / "t.json").write_text(json.dumps(TEXTS * 3))
    outs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.json")], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)]
    assert outs[0] == outs[1] == train_tokenizer(TEXTS * 3, vocab_size=400).backend_tokenizer.to_str() + "\n"


def test_tokenizer_round_trip(tmp_path):
    tok = train_tokenizer(TEXTS * 3, vocab_size=400)
    back = load_tokenizer(save_tokenizer(tok, tmp_path / "tok"))
    assert tokenizer_fingerprint(back) == tokenizer_fingerprint(tok)
    for s in ["x  y\n\tz", "Ωmega — 😀", ""]:
        ids = back(s, add_special_tokens=False)["input_ids"]
        assert back.decode(ids) == s and ids == tok(s, add_special_tokens=False)["input_ids"]
    assert (back.pad_token_id, back.bos_token_id, back.eos_token_id, back.unk_token_id) == (0, 1, 2, 3)


def test_tokenizer_refused_without_eos_or_pad():
    with pytest.raises(ValueError, match="has no EOS token"):
        check_clue_tokenizer(hf_word_tokenizer(TEXTS, specials=("<unk>", "<s>")))
    with pytest.raises(ValueError, match="has no PAD token"):
        check_clue_tokenizer(hf_word_tokenizer(TEXTS, specials=("<unk>", "<s>", "</s>")))
    with pytest.raises(ValueError, match="has no PAD token"):
        mini_kb(SimpleNamespace(passages=[Passage("a", "", "x")]),
                hf_word_tokenizer(TEXTS, specials=("<unk>", "<s>", "</s>")))


@pytest.fixture(scope="module")
def mini_slice(tmp_path_factory):
    """A slice of GeMKR-Mini: the gold passages of 40 training questions, their articles' other passages and 150
    others (ids renumbered), the kit's tokenizer learnt on them, and the knowledge bases with and without titles."""
    from gemkr.benchmarks import load_mini
    bench = load_mini("train")
    qs = bench.queries[:40]
    titles = {bench.passages[r].title for q in qs for r in q.relevant}
    keep = [i for i, p in enumerate(bench.passages) if p.title in titles] + list(range(0, len(bench.passages), 83))
    keep = sorted(set(keep)); new = {old: k for k, old in enumerate(keep)}
    passages = [bench.passages[i] for i in keep]
    queries = [dataclasses.replace(q, relevant=frozenset(new[r] for r in q.relevant), answer_passages=None)
               for q in qs]
    tok = train_tokenizer([p.text for p in passages] + [q.question for q in queries], vocab_size=2000)
    root = tmp_path_factory.mktemp("kbs")
    kbs = {k: build_kb(passages, tok, clue_kb_config(k), path=root / k) for k in ("span", "title")}
    return passages, queries, kbs


@pytest.mark.parametrize("kind", CLUE_KINDS)
def test_targets_against_naive_scan(mini_slice, kind):
    passages, queries, kbs = mini_slice
    kb = kbs["title" if kind == "title" else "span"]
    docs = [kb.tokens(d) for d in range(len(kb))]
    cfg = ClueConfig(kind)
    t = clue_targets(queries, kb, cfg)
    assert t.samples and len(t.no_target) + len(t.by_qid()) == len(queries)
    answers = {q.qid: q.answers for q in queries}
    for s in t.samples:
        assert 1 <= len(s.tokens) <= cfg.max_len
        assert clue_docs_naive(docs, s.tokens) == [s.doc] == clue_docs(kb.index, s.tokens)
        assert is_generable(s.tokens, clue_docs_naive(docs, list(s.tokens) + [kb.eos_token_id]) == [s.doc],
                            cfg.max_len)
        assert s.text == kb.tokenizer.decode(list(s.tokens))
        if kind == "span": assert any(match_word(a, s.text) for a in answers[s.qid])
        else: assert list(s.tokens) == docs[s.doc][1:1 + cfg.max_len]       # the opening of the indexed passage
        if kind == "title": assert s.text.startswith(passages[s.doc].title)
    if kind == "span": assert max(map(len, t.by_qid().values())) <= cfg.per_query
    again = clue_targets(queries, kb, cfg)
    assert again == t                                                       # deterministic


def test_no_target_counted(tmp_path):
    tok = train_tokenizer(TEXTS * 3, vocab_size=400)
    kb = build_kb([Passage(f"p{i}", t.split()[0], t) for i, t in enumerate(TEXTS)], tok, path=tmp_path / "kb")
    qs = [Query("ok", None, "?", ["Europe"], frozenset({0})), Query("nogold", None, "?", ["Paris"]),
          Query("absent", None, "?", ["Danube"], frozenset({2})), Query("blank", None, "?", [""], frozenset({0})),
          Query("long", None, "?", ["capital and largest city of France"], frozenset({1}))]
    t = clue_targets(qs, kb, ClueConfig(max_len=3))
    assert t.no_target == ["nogold", "absent", "blank", "long"]              # in query order, none dropped
    assert t.reasons == {"nogold": "no gold passage", "absent": "no answer in the gold passage",
                         "blank": "no answer", "long": "answer longer than 3 tokens"}
    assert {s.qid for s in t.samples} == {"ok"}
    fs = clue_targets(qs, kb, ClueConfig("first_sentence", max_len=2))
    assert fs.no_target == ["nogold", "absent", "blank", "long"]             # "Paris is" opens two passages
    assert fs.reasons["long"] == "no unique first_sentence clue"


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="ClueConfig.kind must be one of"): ClueConfig(kind="sentence")
    with pytest.raises(ValueError, match="ClueConfig.max_len"): ClueConfig(max_len=0)
    with pytest.raises(ValueError, match="no passages"): mini_kb(SimpleNamespace(passages=[]),
                                                                 train_tokenizer(TEXTS, vocab_size=300))
    tok = train_tokenizer(TEXTS * 3, vocab_size=400)
    kb = build_kb([Passage(f"p{i}", t.split()[0], t) for i, t in enumerate(TEXTS)], tok, path=tmp_path / "kb")
    with pytest.raises(ValueError, match=r"KBConfig\(with_title=True\)"): clue_targets([], kb, ClueConfig("title"))
    with pytest.raises(ValueError, match="gold passage 6 is not in the knowledge base"):
        clue_targets([Query("q", None, "?", ["x"], frozenset({6}))], kb)
    with pytest.raises(ValueError, match="kind must be one of"): clue_kb_config("titles")


def test_mini_clue_targets_cached(tmp_path, monkeypatch):
    "The cache on a stand-in Mini: built once, read back equal, rebuilt when a file is damaged."
    monkeypatch.setenv("GEMKR_CACHE", str(tmp_path))
    passages = [Passage(f"p{i}", t.split()[0], t) for i, t in enumerate(TEXTS)]
    qs = [Query("a", None, "?", ["Europe"], frozenset({0}), meta=dict(split="train")),
          Query("b", None, "?", ["Troy"], frozenset({4}), meta=dict(split="train"))]
    fake = SimpleNamespace(passages=passages, split=lambda name: Benchmark("fake", passages, qs, "gold"))
    tok = train_tokenizer(TEXTS * 3, vocab_size=400)
    first = mini_clue_targets(fake, tok, "span")
    (folder,) = (tmp_path / "clues").glob("mini-*")
    assert first.samples and first == mini_clue_targets(fake, tok, "span")
    (folder / "samples.jsonl").write_text("")                               # damaged: rebuilt, with a warning
    with pytest.warns(UserWarning, match="rebuilding"): assert mini_clue_targets(fake, tok, "span") == first
    assert mini_clue_targets(fake, tok, "first_sentence").config.kind == "first_sentence"
    assert load_clue_targets(folder) == first

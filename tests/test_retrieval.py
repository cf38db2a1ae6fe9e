"""Benchmark -> KnowledgeBase -> retriever -> rankings -> metrics, end to end, through the exported modules only."""
import json, warnings
import pytest
from gemkr.benchmarks import load_mini
from gemkr.core import CacheError, config_path
from gemkr.data import toy_benchmark
from gemkr.decoding import DecodingConfig
from gemkr.fmindex import WordTokenizer, FMIndexConfig
from gemkr.metrics import check_rankings, evaluate
from gemkr.retrieval import (KBConfig, LMRetriever, Retriever, build_kb, load_kb, load_run, question_prompt, run_retriever,
                             save_run, special_ids)
from gemkr.testing import hf_word_tokenizer, tiny_llama


def _contains(seq, sub):
    return any(list(seq[i:i + len(sub)]) == list(sub) for i in range(len(seq) - len(sub) + 1))


@pytest.fixture(scope="module")
def mini_slice():
    mini = load_mini("test")
    return mini, mini.subset([q.qid for q in mini.queries[:20]])


@pytest.fixture(scope="module")
def mini_kb(mini_slice, tmp_path_factory):
    mini, _ = mini_slice
    return build_kb(mini, WordTokenizer.train(mini.passage_texts()), path=tmp_path_factory.mktemp("kb") / "mini")


def test_mini_end_to_end(mini_slice, mini_kb, tmp_path):
    mini, part = mini_slice
    kb = mini_kb
    assert not kb.reused and len(kb) == len(mini.passages) and kb.index.n_docs == len(mini.passages)
    run = run_retriever(LMRetriever(tiny_llama(len(kb.tokenizer)), kb), part, batch_size=8)
    assert set(run.rankings) == {q.qid for q in part.queries}
    assert check_rankings(part, run.rankings) == run.rankings                 # valid for evaluate: ints, no repeats
    for q in part.queries:
        clues, ranking = run.clues[q.qid], run.rankings[q.qid]
        assert clues and len(ranking) <= len(clues)
        for c in clues:
            assert kb.index.count(c.tokens) > 0                                # every clue occurs in the KB
        for d in ranking:                                                      # each ranked passage holds a clue, as tokens and text
            assert any(_contains(kb.tokens(d), c.tokens) and c.text in kb.tokenizer.decode(kb.tokens(d)) for c in clues)
    table = evaluate(part, run.rankings, ks=(1, 5, 10))
    assert table.loc["all", "n"] == 20 and 0 <= table.loc["all", "R@10"] <= 100
    back = load_run(save_run(run, tmp_path / "run.json"), DecodingConfig)
    assert back.rankings == run.rankings and back.clues == run.clues and back.config == run.config
    assert json.loads(config_path(tmp_path / "run.json").read_text())["_type"] == "DecodingConfig"


def test_mini_kb_reused_and_rebuilt(mini_slice, mini_kb):
    mini, _ = mini_slice
    tok = WordTokenizer.train(mini.passage_texts())
    again = build_kb(mini, tok, path=mini_kb.path)
    assert again.reused and again.key == mini_kb.key
    assert load_kb(mini_kb.path, mini).index.n_tokens == mini_kb.index.n_tokens
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                        # "rebuilding an outdated cache"
        other_tok = build_kb(mini, WordTokenizer.train(mini.passage_texts()[:-1]), path=mini_kb.path)
        assert not other_tok.reused and other_tok.key != mini_kb.key           # a changed tokenizer rebuilds
        other_cfg = build_kb(mini, tok, KBConfig(fmindex=FMIndexConfig(sa_sample=8)), path=mini_kb.path)
        assert not other_cfg.reused and other_cfg.index.config.sa_sample == 8 # a changed config rebuilds
        assert not build_kb(mini, tok, path=mini_kb.path).reused              # and back
    assert build_kb(mini, tok, path=mini_kb.path).reused


def test_default_cache_folder_per_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMKR_CACHE", str(tmp_path))
    toy = toy_benchmark()
    tok = WordTokenizer.train(toy.passage_texts())
    a, b = build_kb(toy, tok), build_kb(toy, tok)
    assert (a.reused, b.reused) == (False, True) and a.path.parent == tmp_path / "kb"
    c = build_kb(toy, tok, KBConfig(with_title=True))
    assert not c.reused and c.path != a.path and build_kb(toy, tok).reused     # the first is still there


def test_damaged_kb_detected(tmp_path):
    toy = toy_benchmark()
    tok = WordTokenizer.train(toy.passage_texts())
    kb = build_kb(toy, tok, path=tmp_path / "kb")
    with open(kb.path / "index.fmi", "r+b") as f: f.seek(100); f.write(b"\xff\xff")
    with pytest.raises(CacheError, match="checksum"): load_kb(kb.path, toy)
    with pytest.warns(UserWarning, match="checksum"): again = build_kb(toy, tok, path=tmp_path / "kb")
    assert not again.reused and load_kb(kb.path, toy).index.n_tokens == kb.index.n_tokens
    with pytest.raises(CacheError, match="other inputs"): load_kb(kb.path, toy.passages[1:])


def test_hf_tokenizer_own_special_ids(tmp_path):
    toy = toy_benchmark()
    tok = hf_word_tokenizer(toy.passage_texts() + [q.question for q in toy.queries], specials=("<pad>", "<unk>", "<s>", "</s>"))
    kb = build_kb(toy, tok, path=tmp_path / "kb")
    assert special_ids(tok) == (2, 3, 0) and (kb.bos_token_id, kb.eos_token_id) == (2, 3)
    assert all(kb.tokens(d)[0] == 2 and kb.tokens(d)[-1] == 3 for d in range(len(kb)))
    assert kb.index.doc_ids([3]) == list(range(len(kb)))                       # EOS ends every passage
    p = question_prompt(toy.queries, kb)
    assert (p["input_ids"][p["attention_mask"] == 1] != 1).all()               # questions fully known: no <unk>
    assert p["input_ids"][0][p["attention_mask"][0] == 1][0] == 2              # the HF BOS starts the prompt
    lm = LMRetriever(tiny_llama(len(tok), hidden=32, bos_token_id=2, eos_token_id=3), kb,
                     kb.decoding_config(num_beams=4, num_beam_groups=4, num_return_sequences=4, max_clue_len=3))
    assert isinstance(lm, Retriever)
    run = run_retriever(lm, toy, batch_size=2)
    assert all(kb.index.count(c.tokens) > 0 and 3 not in c.tokens for cl in run.clues.values() for c in cl)
    assert load_kb(kb.path, toy).tokenizer(toy.passages[0].text, add_special_tokens=False)["input_ids"] == \
        tok(toy.passages[0].text, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="use kb.decoding_config"): LMRetriever(lm.model, kb, DecodingConfig())
    def embeds(queries, kb):                                                   # the seam a multimodal model plugs into
        p = question_prompt(queries, kb)
        return dict(inputs_embeds=lm.model.get_input_embeddings()(p["input_ids"]).detach(), attention_mask=p["attention_mask"])
    via_embeds = run_retriever(LMRetriever(lm.model, kb, lm.config, prompt=embeds), toy, batch_size=2)
    assert via_embeds.rankings == run.rankings and via_embeds.clues == run.clues

"""The exported decoding API used as a library (no notebook globals): catches missing imports in exported cells."""
import numpy as np, torch
from gemkr.fmindex import FMIndex
from gemkr.testing import tiny_llama
from gemkr.decoding import (DecodingConfig, FMIndexLogitsProcessor, fm_prefix_allowed_tokens_fn, diverse_beam_search,
                            retrieve, rank_documents, Clue)


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    docs = [[1] + rng.integers(3, 20, rng.integers(3, 12)).tolist() + [2] for _ in range(30)]
    return docs, FMIndex.build(docs, vocab_size=24), tiny_llama(24, hidden=16, layers=1, heads=2, intermediate=32, seed=seed)


def test_processor_and_prefix_fn_agree():
    docs, idx, _ = _setup()
    proc = FMIndexLogitsProcessor(idx, 2, 0, max_clue_len=4, prompt_length=0)
    fn = fm_prefix_allowed_tokens_fn(idx, 2, 0, max_clue_len=4, prompt_length=0, vocab_size=24)
    beams = torch.tensor([docs[0][1:3], docs[5][2:4], [2, 0], docs[7][1:3]])
    masked = proc(beams, torch.zeros(len(beams), 24))
    for b, row in zip(beams, masked):
        assert sorted(torch.nonzero(row == 0).ravel().tolist()) == sorted(fn(0, b))
    assert proc.index_seconds > 0


def test_retrieve_gemkr_preset_clues_occur():
    docs, idx, model = _setup(1)
    for mode in ("first", "unique", "aggregate"):
        (r,) = retrieve(model, idx, input_ids=torch.tensor([[1, 5, 6, 7]]), cfg=DecodingConfig(rank_mode=mode, max_clue_len=4))
        assert len(r.clues) == 10
        assert all(idx.count(c.tokens) > 0 for c in r.clues)
        # every ranked document contains (a prefix of) some clue; first/unique: the whole clue
        contains = lambda d, p: any(docs[d][i:i + len(p)] == list(p) for i in range(len(docs[d])))
        need = (lambda c: c.tokens[:1]) if mode == "aggregate" else (lambda c: c.tokens)
        assert r.docs and all(any(contains(d, need(c)) for c in r.clues) for d, _ in r.docs)
    proc = FMIndexLogitsProcessor(idx, 2, 0, 3, prompt_length=0)
    out = diverse_beam_search(model, input_ids=torch.tensor([[1, 5]]), cfg=DecodingConfig(max_clue_len=3),
                              logits_processor=proc)
    assert out.sequences.shape == (1, 10, 4) and out.scores.shape == (1, 10) and proc.index_seconds > 0


def test_rank_first_dedupes():
    _, idx, _ = _setup()
    c = Clue(tuple(idx.next_tokens([]))[:1], -1.0)
    assert len(rank_documents(idx, [c, c], "first")) == 1

"""Issue 9's decoding faults, each reproduced (items 2, 4, 5, 6, 13, 14): every case failed before its fix.

Tiny random LLaMAs (vocabulary 24) and a random 30-document KB: the whole file runs in seconds on a CPU.
"""
import dataclasses
import numpy as np, pytest, torch
from transformers import LogitsProcessorList
from transformers.utils import logging as hf_logging
from gemkr.fmindex import FMIndex
from gemkr.testing import tiny_llama
from gemkr.decoding import (DecodingConfig, FMIndexLogitsProcessor, fm_prefix_allowed_tokens_fn, diverse_beam_search,
                            retrieve, rank_documents, Clue, clues_from_beams, IMPOSSIBLE)

hf_logging.set_verbosity_error()
V, EOS, PAD = 24, 2, 0
CFG = DecodingConfig(max_clue_len=4)


def llama(vocab_size=V, seed=0):
    return tiny_llama(vocab_size, hidden=16, layers=1, heads=2, intermediate=32, seed=seed, eos_token_id=EOS, pad_token_id=PAD)


@pytest.fixture(scope="module")
def kb():
    rng = np.random.default_rng(0)
    docs = [[1] + rng.integers(3, 20, rng.integers(3, 12)).tolist() + [EOS] for _ in range(30)]
    return docs, FMIndex.build(docs, vocab_size=V), llama()


PROMPT = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11]])          # 8 tokens: longer than a clue of max_clue_len=4


# ---- item 2: a pad or EOS id outside the model's vocabulary breaks the constraint
@pytest.mark.parametrize("field", ["pad_token_id", "eos_token_id"])
def test_special_id_outside_vocab_is_a_config_error(kb, field):
    _, idx, model = kb
    cfg = dataclasses.replace(CFG, **{field: V + 5})
    msg = f"DecodingConfig.{field}={V + 5} is outside the model's vocabulary of {V}"
    with pytest.raises(ValueError, match=msg):          # before: a clue with KB count 0 (pad), IndexError (eos)
        retrieve(model, idx, input_ids=PROMPT, cfg=cfg)
    ids = dict(eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    proc = FMIndexLogitsProcessor(idx, ids["eos_token_id"], ids["pad_token_id"], 4, prompt_length=0)
    with pytest.raises(ValueError, match=msg):
        diverse_beam_search(model, input_ids=PROMPT, cfg=cfg, logits_processor=proc)
    with pytest.raises(ValueError, match=f"{field}={V + 5} is outside the model's vocabulary of {V}"):
        proc(torch.tensor([[3], [4]]), torch.zeros(2, V))


def test_pad_cannot_leak_into_the_next_row(kb):
    "The leak itself: pad V+5 in row 0's flat mask would have unmasked token 5 of row 1."
    _, idx, _ = kb
    proc = FMIndexLogitsProcessor(idx, EOS, V + 5, 4, prompt_length=0)
    rows = torch.tensor([[3, EOS], [3, 4]])                  # row 0 finished (only the pad allowed), row 1 open
    with pytest.raises(ValueError, match="pad_token_id"):
        proc(rows, torch.zeros(2, V))


# ---- item 4: max_new_tokens 0 used the default, -1 crashed inside torch, 1 gave ten identical clues
@pytest.mark.parametrize("bad", [0, -1, 1, 2.0])
def test_max_new_tokens_is_checked(kb, bad):
    _, idx, model = kb
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        diverse_beam_search(model, input_ids=PROMPT, cfg=CFG, max_new_tokens=bad,
                            logits_processor=FMIndexLogitsProcessor(idx, EOS, PAD, 4, prompt_length=0))


def test_two_new_tokens_are_enough(kb):
    _, idx, model = kb
    out = diverse_beam_search(model, input_ids=PROMPT, cfg=CFG, max_new_tokens=2,
                              logits_processor=FMIndexLogitsProcessor(idx, EOS, PAD, 4, prompt_length=0))
    assert out.sequences.shape == (1, 10, 2)


# ---- item 5: NaN
@pytest.mark.parametrize("field,value,msg", [("diversity_penalty", float("nan"), "must be a finite"),
                                             ("length_penalty", float("nan"), "must be a finite"),
                                             ("diversity_penalty", -0.5, "must be at least 0"),
                                             ("aggregate_smoothing", -6.0, "must be at least 0"),
                                             ("aggregate_smoothing", float("inf"), "must be a finite")])
def test_config_rejects_nan_and_negative(field, value, msg):
    with pytest.raises(ValueError, match=f"DecodingConfig.{field} {msg}"):
        DecodingConfig(**{field: value})


def test_nan_logits_are_an_error(kb):
    _, idx, _ = kb
    broken = llama()
    with torch.no_grad(): broken.lm_head.weight[3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):            # before: ten NaN-scored clues
        retrieve(broken, idx, input_ids=PROMPT, cfg=CFG)


@pytest.mark.parametrize("mode", ["first", "unique", "aggregate"])
def test_nan_clue_score_is_rejected(kb, mode):
    docs, idx, _ = kb
    clues = [Clue(tuple(docs[0][1:3]), -1.0), Clue(tuple(docs[1][1:3]), float("nan"))]
    with pytest.raises(ValueError, match=r"clue 1 .* must be a finite"):   # before: every aggregate score 0.0
        rank_documents(idx, clues, mode)


# ---- item 6: the processor in HF generate with prompt_length left at 0 read the prompt as the clue
GEN = dict(num_beams=4, num_return_sequences=4, max_new_tokens=5, do_sample=False, eos_token_id=EOS, pad_token_id=PAD)


def test_prompt_length_is_required(kb):
    _, idx, _ = kb
    with pytest.raises(TypeError, match="prompt_length"):
        FMIndexLogitsProcessor(idx, EOS, PAD, 4)
    with pytest.raises(TypeError, match="prompt_length"):
        fm_prefix_allowed_tokens_fn(idx, EOS, PAD, 4, vocab_size=V)


@pytest.mark.parametrize("prompt", [PROMPT, PROMPT[:, :3]], ids=["longer_than_a_clue", "not_in_the_kb"])
def test_prompt_read_as_clue_fails_in_generate(kb, prompt):
    _, idx, model = kb
    assert idx.count(prompt[0].tolist()) == 0
    proc = LogitsProcessorList([FMIndexLogitsProcessor(idx, EOS, PAD, 4, prompt_length=0)])
    with pytest.raises(ValueError, match=r"pass prompt_length=input_ids.shape\[1\]"):   # before: empty clues
        model.generate(input_ids=prompt, logits_processor=proc, **GEN)
    fn = fm_prefix_allowed_tokens_fn(idx, EOS, PAD, 4, prompt_length=0, vocab_size=V)
    with pytest.raises(ValueError, match=r"pass prompt_length=input_ids.shape\[1\]"):
        model.generate(input_ids=prompt, prefix_allowed_tokens_fn=fn, **GEN)


def test_right_prompt_length_gives_clues_and_processors_are_reusable(kb):
    "The guard raises on nothing the constraint produced: reused across calls, and past max_clue_len + 1 steps."
    _, idx, model = kb
    proc = FMIndexLogitsProcessor(idx, EOS, PAD, 4, prompt_length=PROMPT.shape[1])
    for _ in range(2):                                      # a second generation with the same processor
        out = model.generate(input_ids=PROMPT, logits_processor=LogitsProcessorList([proc]), **GEN)
        for s in out[:, PROMPT.shape[1]:].tolist():
            clue = [t for t in s if t not in (EOS, PAD)]
            assert clue and idx.count(clue) > 0
    long = dict(GEN, max_new_tokens=12)                     # rows that lost to masked tokens keep running
    model.generate(input_ids=PROMPT, logits_processor=LogitsProcessorList([proc]), **long)
    narrow = FMIndex.build([[1, 3, 4, 2], [1, 5, 2]], vocab_size=V)
    cfg = DecodingConfig(num_beams=4, num_beam_groups=1, num_return_sequences=4, max_clue_len=2)
    p = FMIndexLogitsProcessor(narrow, EOS, PAD, 2, prompt_length=0)
    for _ in range(2):
        out = diverse_beam_search(model, input_ids=PROMPT, cfg=cfg, logits_processor=p, max_new_tokens=8,
                                  early_stop=False)
        clues = clues_from_beams(out, EOS, PAD)[0]
        assert clues and all(narrow.count(c.tokens) > 0 for c in clues)
        assert all(s == IMPOSSIBLE for s in out.scores[0, len(clues):].tolist())


# ---- item 13: fm_prefix_allowed_tokens_fn had no vocabulary check
def test_prefix_fn_checks_the_vocabulary(kb):
    _, idx, _ = kb
    small = llama(vocab_size=16)
    with pytest.raises(ValueError, match="vocabulary mismatch"):      # before: a bare IndexError inside generate
        fn = fm_prefix_allowed_tokens_fn(idx, EOS, PAD, 4, prompt_length=0, vocab_size=small.config.vocab_size)
        small.generate(inputs_embeds=small.get_input_embeddings()(PROMPT), prefix_allowed_tokens_fn=fn, **GEN)
    with pytest.raises(ValueError, match=f"pad_token_id={V} is outside the model's vocabulary of {V}"):
        fm_prefix_allowed_tokens_fn(idx, EOS, V, 4, prompt_length=0, vocab_size=V)


# ---- item 14: empty prompts
@pytest.mark.parametrize("shape,msg", [((1, 0), "empty prompt"), ((0, 5), "empty batch")])
def test_empty_input_ids(kb, shape, msg):
    _, idx, model = kb
    with pytest.raises(ValueError, match=msg):              # before: RuntimeError from inside the model
        retrieve(model, idx, input_ids=torch.zeros(shape, dtype=torch.long), cfg=CFG)


def test_empty_inputs_embeds(kb):
    _, idx, model = kb
    with pytest.raises(ValueError, match="empty prompt"):
        retrieve(model, idx, inputs_embeds=torch.zeros(1, 0, 16), cfg=CFG)


def test_fully_padded_row(kb):
    _, idx, model = kb
    ids, mask = PROMPT.repeat(2, 1), torch.ones(2, PROMPT.shape[1], dtype=torch.long)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"queries \[1\] is all padding"):   # before: confident clues, no warning
        retrieve(model, idx, input_ids=ids, attention_mask=mask, cfg=CFG)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        retrieve(model, idx, input_ids=ids, attention_mask=mask[:, :3], cfg=CFG)

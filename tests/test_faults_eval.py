"""Issue 9, items 7 (evaluation part), 12 and 15: malformed inputs to the loaders, the result readers and the metrics.

Each case was a crash with a bare Python error, or a silently wrong result, before the fix; each must now be an error that
names the file and the line (or the field, or the query). The fixtures are written to a temporary folder per test."""
import json
import warnings
from pathlib import Path
import numpy as np
import pytest
from gemkr.benchmarks import (TsvImages, load_gs112k, load_remuq, load_wk21m, read_dpr_tsv, read_kid_text_csv,
                              read_okvqa_queries, toy_benchmark)
from gemkr.metrics import check_rankings, evaluate, read_gemkr_results

FIX = Path(__file__).parent / "fixtures"
RETRIEVER = dict(question="What toy is this? a bear.", caption="a bear.", question_id=1, img_id="COCO_val2014_000000000001",
                 answers={"teddy bear": 1}, ctxs=[{"id": 0}])


def records(path: Path, recs) -> Path:
    "A JSON array with one record per line after the `[`: record j is on line j + 2."
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in recs) + "\n]\n")
    return path


def gemkr_bench():
    return load_gs112k(FIX / "okvqa" / "okvqa_train_corpus.csv", FIX / "gemkr" / "test.json", FIX / "coco" / "val2014", protocol="gemkr")


# ---- item 7 -------------------------------------------------------------------------------------------------------

def test_a_set_is_not_a_ranking():
    toy = toy_benchmark()
    with pytest.raises(ValueError, match="ranking of 'qa' is a set; a ranking must be ordered"):
        evaluate(toy, {"qa": {2, 0, 1}, "qb": [4, 3]})
    with pytest.raises(ValueError, match="ranking of 'qb' is a frozenset"):
        check_rankings(toy, {"qa": [0], "qb": frozenset({3})})


def test_a_string_row_of_gemkr_results_names_file_line_and_row(tmp_path):
    bad = tmp_path / "results_okvqa.json"
    bad.write_text('[["1", "0", "2"],\n "10"]')
    with pytest.raises(ValueError, match=r"results_okvqa.json, line 2: record 1 is a str, expected a JSON array"):
        read_gemkr_results(bad, gemkr_bench())


@pytest.mark.parametrize("qid", [2971475.0, [1, 2], True, ""])
def test_question_id_that_is_no_integer_names_file_and_line(tmp_path, qid):
    bad = records(tmp_path / "retriever_test.json", [RETRIEVER, dict(RETRIEVER, question_id=qid)])
    with pytest.raises(ValueError, match=r"retriever_test.json, line 3: question_id must be an integer or a non-empty string"):
        read_okvqa_queries(bad)


def test_question_id_float_in_okvqa_official_file(tmp_path):
    qs = tmp_path / "OpenEnded_mscoco_val2014_questions.json"
    qs.write_text(json.dumps({"questions": [{"image_id": 297147, "question": "What sport?", "question_id": 2971475.0}]}))
    ann = tmp_path / "mscoco_val2014_annotations.json"
    ann.write_text(json.dumps({"annotations": [{"question_id": 2971475.0, "answers": [{"raw_answer": "racing", "answer": "race"}]}]}))
    with pytest.raises(ValueError, match=r"questions\[0\]: question_id must be an integer"):
        read_okvqa_queries(qs)


@pytest.mark.parametrize("content", ["", "kid,text\n", "kid,text\n\n"])
def test_empty_or_header_only_gs112k_corpus(tmp_path, content):
    corpus = tmp_path / "okvqa_train_corpus.csv"
    corpus.write_text(content)
    with pytest.raises(ValueError, match=r"okvqa_train_corpus.csv(, line 1: the file is empty|: no passages after the header)"):
        load_gs112k(corpus, FIX / "okvqa" / "retriever_test.json")


@pytest.mark.parametrize("content", ["", "id\ttext\ttitle\n"])
def test_empty_or_header_only_wk21m_corpus(tmp_path, content):
    psgs = tmp_path / "psgs_w100.tsv"
    psgs.write_text(content)
    with pytest.raises(ValueError, match=r"psgs_w100.tsv(, line 1: the file is empty|: no passages after the header)"):
        load_wk21m(psgs, FIX / "okvqa" / "retriever_test.json")


def test_empty_questions_file(tmp_path):
    empty = tmp_path / "retriever_test.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match=r"retriever_test.json, line 1: no questions"):
        load_gs112k(FIX / "okvqa" / "okvqa_train_corpus.csv", empty)
    with pytest.raises(ValueError, match=r"retriever_test.json, line 1: no questions"):
        load_remuq(FIX / "remuq" / "open_corpus_195837.csv", empty)


# ---- item 12 ------------------------------------------------------------------------------------------------------

def test_question_that_is_a_number_with_a_caption(tmp_path):
    bad = records(tmp_path / "retriever_test.json", [RETRIEVER, dict(RETRIEVER, question_id=2, question=42)])
    with pytest.raises(ValueError, match=r"retriever_test.json, line 3: 'question' must be a string, got 42"):
        read_okvqa_queries(bad)


def test_gemkr_input_that_is_a_number(tmp_path):
    bad = records(tmp_path / "test.json", [{"input": 7, "output": ["a"], "image": "COCO_val2014_000000000001"}])
    with pytest.raises(ValueError, match=r"test.json, line 2: 'input' must be a string, got 7"):
        read_okvqa_queries(bad)


def test_ctxs_entry_without_id(tmp_path):
    bad = records(tmp_path / "retriever_test.json", [RETRIEVER, dict(RETRIEVER, question_id=2, ctxs=[{"text": "a passage"}])])
    with pytest.raises(ValueError, match=r"retriever_test.json, line 3: ctxs\[0\] has no 'id'"):
        read_okvqa_queries(bad)
    remuq = records(tmp_path / "test.json", [dict(RETRIEVER, img_id=30000000, ctxs=[{"text": "gold?"}])])
    with pytest.raises(ValueError, match=r"test.json, line 2: ctxs\[0\] has no 'id'"):
        load_remuq(FIX / "remuq" / "open_corpus_195837.csv", remuq)


@pytest.mark.parametrize("name,content,read", [
    ("corpus.csv", b"kid,text\n0,a\n1,caf\xe9\n", read_kid_text_csv),
    ("psgs_w100.tsv", b"id\ttext\ttitle\n1\ta\tA\n2\tcaf\xe9\tB\n", read_dpr_tsv),
    ("retriever_test.json", b'[{"question": "a?", "question_id": 1, "answers": ["x"]},\n {"question": "caf\xe9?"}]', read_okvqa_queries),
])
def test_non_utf8_byte_names_file_and_line(tmp_path, name, content, read):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{name}, line [23]: not UTF-8 text \(byte 0xe9"):
        read(path)


def test_empty_lineidx_is_not_reported_as_missing_images(tmp_path):
    tsv, idx = tmp_path / "imgs.tsv", tmp_path / "imgs.lineidx"
    tsv.write_bytes((FIX / "remuq" / "imgs.tsv").read_bytes())
    idx.write_text("")
    with pytest.raises(ValueError, match=r"imgs.lineidx: the file is empty"):
        TsvImages(tsv)
    with pytest.raises(ValueError, match=r"imgs.lineidx: the file is empty"):
        load_remuq(FIX / "remuq" / "open_corpus_195837.csv", FIX / "remuq" / "test.json", tsv, check_images=True)


def test_a_byte_order_mark_is_skipped(tmp_path):
    corpus, questions = tmp_path / "okvqa_train_corpus.csv", tmp_path / "retriever_test.json"
    corpus.write_bytes(b"\xef\xbb\xbf" + (FIX / "okvqa" / "okvqa_train_corpus.csv").read_bytes())
    questions.write_bytes(b"\xef\xbb\xbf" + (FIX / "okvqa" / "retriever_test.json").read_bytes())
    with_bom = load_gs112k(corpus, questions)
    plain = load_gs112k(FIX / "okvqa" / "okvqa_train_corpus.csv", FIX / "okvqa" / "retriever_test.json")
    assert with_bom.passages == plain.passages and with_bom.queries == plain.queries
    tsv = tmp_path / "psgs_w100.tsv"
    tsv.write_bytes(b"\xef\xbb\xbf" + (FIX / "wk21m" / "psgs_w100.tsv").read_bytes())
    assert read_dpr_tsv(tsv) == read_dpr_tsv(FIX / "wk21m" / "psgs_w100.tsv")


# ---- item 15 ------------------------------------------------------------------------------------------------------

def test_evaluate_with_no_cutoffs():
    toy = toy_benchmark()
    with pytest.raises(ValueError, match=r"ks is empty: give at least one cut-off k"):
        evaluate(toy, {"qa": [0], "qb": [3]}, ks=())
    with pytest.raises(ValueError, match=r"ks must be a sequence of positive integers"):
        evaluate(toy, {"qa": [0], "qb": [3]}, ks=5)


# ---- issue 8 §3: blank answers load, warn once and score as the official script ----------------------------------

def test_blank_answers_load_warn_once_and_match_every_passage(tmp_path):
    recs = json.loads((FIX / "gemkr" / "test.json").read_text())
    gem = records(tmp_path / "test.json", [dict(recs[0], output=[""]), recs[1]])
    args = (FIX / "okvqa" / "okvqa_train_corpus.csv", gem, FIX / "coco" / "val2014")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench = load_gs112k(*args, protocol="gemkr")
    assert ["1 of 2 queries have an empty answer" in str(w.message) for w in caught] == [True]
    beams = read_gemkr_results(FIX / "gemkr" / "results_okvqa_fixture.json", bench, dedup=False)
    ev = evaluate(bench, beams, ks=(5,), protocol="gemkr").loc["all"]
    assert (ev["P@5"], ev["R@5"]) == pytest.approx((40.0, 100.0))          # query 0: all 3 distinct passages hit
    for match in ("raw", "lower", "word", "flmr"):                     # every rule: a blank answer matches every passage
        assert evaluate(bench, {"0": [1, 0, 2], "1": [1]}, ks=(3,), match=match, percent=False).loc["all", "P@3"] == pytest.approx(4 / 6)
    dropped = load_gs112k(*args, protocol="gemkr", drop_empty_answers=True)
    assert [q.qid for q in dropped.queries] == ["1"] and dropped.info["dropped_empty_answers"] == 1


def test_rankings_from_numpy_and_tuples_still_work():
    toy = toy_benchmark()
    ev = evaluate(toy, {"qa": np.array([2, 0]), "qb": (4, 3)}, ks=(1, 2), percent=False).loc["all"]
    assert (ev["P@1"], ev["R@2"]) == pytest.approx((0.5, 1.0))

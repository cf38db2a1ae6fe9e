"""gemkr.evaluation on a synthetic run folder: bootstrap oracle vs vectorised, intervals, paired differences,
loading errors, the clue bound and the paper's numbers. Seconds, no model."""
import dataclasses, json
import numpy as np
import pandas as pd
import pytest
from gemkr.baselines import summarize
from gemkr.data import Passage, Query, Benchmark
from gemkr.evaluation import (PAPER_RESULTS, ClueSearch, EvaluationError, bootstrap_ci, bootstrap_ci_naive,
                              bootstrap_table, check_clue_bound, ci_table, clue_documents_naive, clue_stats,
                              compare_with_paper, describe_differences, load_evaluation, paired_bootstrap)

ROWS = ("GeMKR (tiny)", "recognise-then-retrieve (entity's article)", "random")


def synthetic_scores(n: int = 30, seed: int = 0) -> pd.DataFrame:
    "Per-query scores of three rows on two splits, both relevance rules, as `gemkr run` writes them."
    rng, frames = np.random.default_rng(seed), []
    for split in ("test", "test_style"):
        for rel in ("gold", "answer"):
            for j, row in enumerate(ROWS):
                p5 = rng.integers(0, 6, n) / 5 * (j < 2)
                frames.append(pd.DataFrame({
                    "qid": [f"{i:04d}" for i in range(n)], "family": rng.choice(["capital", "founder"], n),
                    "P@1": rng.integers(0, 2, n) * (j < 2), "P@5": p5, "R@5": (p5 > 0).astype(float),
                    "R@10": (p5 > 0).astype(float), "MRR@10": (p5 > 0) / rng.integers(1, 6, n),
                    "n_pictures": rng.integers(1, 5, n), "split": split, "baseline": row, "relevance": rel}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def run_folder(tmp_path):
    per = synthetic_scores()
    per.to_csv(tmp_path / "scores.csv", index=False)
    summarize(per).to_csv(tmp_path / "table.csv")
    (tmp_path / "clues.json").write_text(json.dumps({q: ["a clue"] for q in per.qid.unique()}))
    (tmp_path / "preset.json").write_text(json.dumps({"name": "tiny", "splits": ["test", "test_style"]}))
    return tmp_path


def test_load_evaluation(run_folder):
    ev = load_evaluation(run_folder)
    assert ev.rows == list(ROWS) and ev.scores.qid.iloc[0] == "0000"          # ids stay strings
    assert ev.metrics == ["P@1", "P@5", "R@5", "R@10", "MRR@10"]
    assert ev.table.loc[("test", "gold", "random"), "P@5"] == 0 and len(ev.clues) == 30


def test_loading_errors(run_folder, tmp_path_factory):
    with pytest.raises(EvaluationError, match="no such run folder"): load_evaluation(run_folder / "nope")
    (run_folder / "preset.json").unlink()
    with pytest.raises(EvaluationError, match="missing preset.json"): load_evaluation(run_folder)
    (run_folder / "preset.json").write_text("{}")
    pd.read_csv(run_folder / "scores.csv").drop(columns=["n_pictures", "split"]).to_csv(run_folder / "scores.csv")
    with pytest.raises(EvaluationError, match=r"scores.csv: missing column\(s\) split, n_pictures"):
        load_evaluation(run_folder)
    pd.DataFrame({c: ["x"] for c in ("qid", "split", "relevance", "baseline", "family", "n_pictures")}
                 ).to_csv(run_folder / "scores.csv", index=False)
    with pytest.raises(EvaluationError, match="no metric column"): load_evaluation(run_folder)


def test_bad_json(run_folder):
    (run_folder / "preset.json").write_text("[1, 2]")
    with pytest.raises(EvaluationError, match="preset.json: expected a JSON object"): load_evaluation(run_folder)
    (run_folder / "preset.json").write_text("{}")
    (run_folder / "clues.json").write_text('{"0001": "one clue, not a list"}')
    with pytest.raises(EvaluationError, match="clues.json: expected a list"): load_evaluation(run_folder)
    (run_folder / "clues.json").write_bytes(b"\xff\xfe")
    with pytest.raises(EvaluationError, match="clues.json: not valid JSON"): load_evaluation(run_folder)


@pytest.mark.parametrize("n,seed,level", [(1, 0, 0.95), (13, 5, 0.9), (200, 2, 0.99)])
def test_bootstrap_fast_equals_naive(n, seed, level):
    x = np.random.default_rng(seed).random((n, 3))
    fast = bootstrap_ci(x, 400, level, seed)
    for j in range(3): np.testing.assert_allclose(fast[j], bootstrap_ci_naive(x[:, j], 400, level, seed), atol=1e-12)


def test_ci_covers_the_mean_and_shrinks():
    x = np.random.default_rng(0).integers(0, 2, 50).astype(float)
    m, lo, hi = bootstrap_ci_naive(x)
    assert lo < m < hi and m == x.mean()
    _, lo4, hi4 = bootstrap_ci(np.tile(x, 4))[0]
    assert 1.5 < (hi - lo) / (hi4 - lo4) < 2.6                     # about sqrt(4)
    assert bootstrap_ci_naive(np.zeros(9)) == (0.0, 0.0, 0.0)
    with pytest.raises(EvaluationError, match="empty"): bootstrap_ci(np.zeros(0))
    with pytest.raises(ValueError, match="n_boot"): bootstrap_ci(x, n_boot=0)


def test_bootstrap_table_and_ci_table():
    per = synthetic_scores()
    boot = bootstrap_table(per, n_boot=300)
    assert len(boot) == 2 * 2 * 3 * 5 and (boot.n == 30).all()
    assert ((boot.lo <= boot["mean"]) & (boot["mean"] <= boot.hi)).all()
    means = per.groupby(["split", "relevance", "baseline"], sort=False)["R@5"].mean() * 100
    got = boot[boot.metric == "R@5"].set_index(["split", "relevance", "baseline"])["mean"]
    np.testing.assert_allclose(got.loc[means.index].to_numpy(), means.to_numpy())
    random_row = boot[boot.baseline == "random"]
    assert (random_row[random_row.metric != "MRR@10"][["mean", "lo", "hi"]] == 0).all().all()
    # same seed, same table; the row order of the input does not matter (queries are sorted by id)
    pd.testing.assert_frame_equal(bootstrap_table(per.sample(frac=1, random_state=1), n_boot=300)
                                  .sort_values(["split", "relevance", "baseline", "metric"]).reset_index(drop=True),
                                  boot.sort_values(["split", "relevance", "baseline", "metric"]).reset_index(drop=True))
    table = ci_table(boot)
    assert table.loc[("test", "gold", "random"), "P@5"] == "0.0 [0.0, 0.0]" and list(table.columns)[0] == "P@1"
    with pytest.raises(EvaluationError, match="no column"): bootstrap_table(per, ("P@3",))


def test_paired_bootstrap():
    per = synthetic_scores()
    same = paired_bootstrap(per, ROWS[0], ROWS[0], n_boot=200)
    assert (same[["diff", "lo", "hi"]] == 0).all().all() and same.within_noise.all()
    assert describe_differences(same.head(1), "A", "A")[0].endswith("within noise")
    vs_random = paired_bootstrap(per, ROWS[0], ROWS[2], ("P@5",), splits=("test",), relevances=("gold",), n_boot=500)
    r = vs_random.iloc[0]
    assert r["diff"] == pytest.approx(r.a - r.b) and r.lo > 0 and not r.within_noise   # random scores 0 everywhere
    assert "GeMKR is ahead" in describe_differences(vs_random, "GeMKR", "random")[0]


def test_paired_bootstrap_refuses_mismatched_queries():
    per = synthetic_scores()
    short = per.drop(per.index[(per.baseline == ROWS[1]) & (per.qid == "0003")])
    with pytest.raises(EvaluationError, match="not scored on the same queries: 0 only in the first.*1 only in the sec"):
        paired_bootstrap(short, ROWS[1], ROWS[0])
    with pytest.raises(EvaluationError, match="no scores of row 'BM25'"): paired_bootstrap(per, "BM25", ROWS[0])
    twice = pd.concat([per, per[(per.baseline == ROWS[0])].head(1)])
    with pytest.raises(EvaluationError, match="repeated query ids"): paired_bootstrap(twice, ROWS[0], ROWS[1])


def clue_bench():
    texts = ["paris is the capital of france", "the eiffel tower stands in paris", "berlin is in germany",
             "the capital of germany is berlin"]
    passages = [Passage(str(i), t.split()[0], t) for i, t in enumerate(texts)]
    queries = [Query("q1", None, "capital of this country?", ["paris"], set(), "capital"),
               Query("q2", None, "capital of this country?", ["berlin"], set(), "capital")]
    return Benchmark("toy", passages, queries, "answer")


def test_clue_search_equals_the_scan():
    rng = np.random.default_rng(0)
    words = ["Paris", "paris", "is", "the", "capital", "of", "France", "Zürich", "naïve", "_x", "42", "co-op"]
    texts = [" ".join(rng.choice(words, rng.integers(1, 12))) + rng.choice(["", ".", ", ", " —"]) for _ in range(60)]
    search = ClueSearch(texts)
    for i in rng.integers(0, len(texts), 300):
        a = int(rng.integers(0, len(texts[i]))); clue = texts[i][a:a + int(rng.integers(1, 30))]
        assert search.documents(clue) == clue_documents_naive(clue, texts), clue
    for clue in ["", "   ", "Lyon", "s the c", "Paris is", "é"]:
        assert search.documents(clue) == clue_documents_naive(clue, texts), clue


def test_clue_search_and_bound():
    bench = clue_bench(); texts = [p.text for p in bench.passages]
    search = ClueSearch(texts)
    for c in ["paris", " the capital", "berlin", "is", "france", "nowhere", "", "germany is berlin"]:
        assert search.documents(c) == clue_documents_naive(c, texts)
    stats = clue_stats({"q1": ["capital of", "eiffel tower"], "q2": ["berlin is in"]}, bench)
    assert stats.loc["q1"].tolist() == [2, 3, 2, 2, 0.4, 0]    # clues, docs, articles, answer docs, bound, unfound
    assert stats.loc["q2"].tolist() == [1, 1, 1, 1, 0.2, 0]
    scores = pd.DataFrame({"qid": ["q1", "q2"], "split": "test", "relevance": "answer", "baseline": "GeMKR",
                           "P@5": [0.4, 0.4]})
    with pytest.raises(EvaluationError, match="1 queries score P@5 above their clue bound, e.g. q2"):
        check_clue_bound(stats, scores, "GeMKR", "test")
    assert len(check_clue_bound(stats, scores.assign(**{"P@5": [0.4, 0.2]}), "GeMKR", "test")) == 2
    titled = clue_stats({"q2": ["berlin berlin"]}, bench, with_title=True)   # title "berlin" + "berlin is in ..."
    assert titled.loc["q2"].tolist() == [1, 1, 1, 1, 0.2, 0]
    assert clue_stats({"q2": ["berlin berlin"]}, bench).loc["q2"].tolist() == [1, 0, 0, 0, 0.0, 1]
    with pytest.raises(EvaluationError, match="not 'aggregate'"):
        check_clue_bound(stats, scores, "GeMKR", "test", rank_mode="aggregate")
    with pytest.raises(EvaluationError, match="needs answer relevance"):
        gold = [dataclasses.replace(q, relevant=frozenset({0})) for q in bench.queries]
        clue_stats({"q1": ["paris"]}, Benchmark("toy", bench.passages, gold, "gold"))


def test_paper_results_and_comparison(run_folder):
    v = PAPER_RESULTS.set_index(["benchmark", "model", "metric"]).value
    assert v[("OKVQA-GS112K", "GeMKR (LLaMA-7B)", "P@5")] == 49.1
    assert v[("OKVQA-GS112K", "GeMKR (LLaMA-7B)", "R@5")] == 78.6
    assert v[("OKVQA-WK21M", "GeMKR (LLaMA-7B)", "R@5")] == 70.8
    assert PAPER_RESULTS.source.str.len().min() > 0
    cmp = compare_with_paper(load_evaluation(run_folder).table, "OKVQA-WK21M", split="test_style")
    assert list(cmp.columns) == ["R@5", "R@10", "source"] and cmp.loc["random", "R@5"] == 0
    with pytest.raises(EvaluationError, match="unknown benchmark"): compare_with_paper(cmp, "ReMuQ")

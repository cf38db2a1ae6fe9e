"""The exported loaders, metrics and baselines on the fixtures in tests/fixtures/ (tiny files in the formats the benchmarks
are distributed in). The notebooks 04_evaluation, 04a_metrics and 04b_baselines hold the full tests; these check the
installed modules directly, without nbdev."""
import json
from pathlib import Path
import pytest
from gemkr.benchmarks import load_gs112k, load_remuq, load_wk21m, read_kid_text_csv, toy_benchmark
from gemkr.metrics import evaluate, read_gemkr_results, read_vrr_retrieved
from gemkr.baselines import BaselineConfig, run_baseline

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_data(monkeypatch):
    monkeypatch.setenv("GEMKR_BENCHMARKS", str(FIX))


def test_loaders_read_the_fixtures(fixture_data):
    gs, wk, remuq = load_gs112k(check_images=True), load_wk21m(check_images=True), load_remuq(check_images=True)
    assert (len(gs), len(gs.passages), gs.relevance) == (2, 3, "answer")
    assert gs.queries[0].question == "What sport can you use this for?"
    assert [p.title for p in wk.passages] == ["Aaron", "Aaron", "Motocross"]
    assert [sorted(q.relevant) for q in remuq.queries] == [[1], [0]]


def test_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMKR_BENCHMARKS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="okvqa_train_corpus.csv"): load_gs112k()


def test_malformed_row_names_file_and_line(tmp_path):
    bad = tmp_path / "corpus.csv"
    bad.write_text('kid,text\n0,a\n1,"b\nc"\n0,d\n')
    with pytest.raises(ValueError, match="line 2 and .*line 5"): read_kid_text_csv(bad)


def test_official_numbers(fixture_data):
    gs = load_gs112k()
    vrr = evaluate(gs, read_vrr_retrieved(FIX / "okvqa" / "retrieved.json", gs), ks=(1, 5), match="lower").loc["all"]
    assert [vrr["P@1"], vrr["P@5"], vrr["R@1"], vrr["R@5"]] == pytest.approx([50, 20, 50, 100])
    gs_gemkr = load_gs112k(questions_json=FIX / "gemkr" / "test.json", normalize=True, dedup=True)
    assert [p.text for p in gs_gemkr.passages] == list(json.loads((FIX / "gemkr" / "id2text.json").read_text()).values())
    ours = evaluate(gs_gemkr, read_gemkr_results(FIX / "gemkr" / "results_okvqa_fixture.json", gs_gemkr), ks=(5, 10)).loc["all"]
    assert [ours["P@5"], ours["R@5"], ours["R@10"]] == pytest.approx([20, 100, 100])


def test_official_numbers_by_protocol_name(fixture_data):
    gs = load_gs112k(protocol="vrr")
    vrr = evaluate(gs, read_vrr_retrieved(FIX / "okvqa" / "retrieved.json", gs), ks=(1, 5), protocol="vrr").loc["all"]
    assert [vrr["P@1"], vrr["P@5"], vrr["R@1"], vrr["R@5"]] == pytest.approx([50, 20, 50, 100])
    gs_gemkr = load_gs112k(questions_json=FIX / "gemkr" / "test.json", protocol="gemkr")
    beams = read_gemkr_results(FIX / "gemkr" / "results_okvqa_fixture.json", gs_gemkr, dedup=False)   # as written: repeats kept
    ours = evaluate(gs_gemkr, beams, ks=(5, 10), protocol="gemkr").loc["all"]
    assert [ours["P@5"], ours["R@5"], ours["R@10"]] == pytest.approx([20, 100, 100])
    with pytest.raises(ValueError, match="load it with protocol='gemkr'"):
        evaluate(gs, read_vrr_retrieved(FIX / "okvqa" / "retrieved.json", gs), protocol="gemkr")


def test_protocol_counterexamples():
    """Repeats, case, an answer inside a word, spaces, an empty answer, rankings shorter than k: computed by hand."""
    import warnings
    from gemkr.benchmarks import Benchmark, Passage, Query
    passages = [Passage("0", "", "Motocross is a form of racing."), Passage("1", "", "The rider wore a helmet."),
                Passage("2", "", "A teddy bear is a stuffed toy."), Passage("3", "", "Nothing to see here.")]
    queries = [Query("repeat", None, "?", ["stuffed toy"]), Query("case", None, "?", ["Motocross"]), Query("inside", None, "?", ["ride"]),
               Query("spaces", None, "?", [" helmet "]), Query("empty", None, "?", [""])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = Benchmark("cases", passages, queries, "answer")
    rankings = {"repeat": [2, 2, 3], "case": [3, 0], "inside": [1], "spaces": [0, 1], "empty": [3]}
    by_hand = {"vrr": [0.6, 0.4, 0.16, 0.6, 0.6, 0.6], "gemkr": [0.6, 0.4, 0.16, 0.6, 0.8, 0.7], "flmr": [0.6, 0.6, 0.24, 0.6, 1.0, 0.8]}
    for protocol, want in by_hand.items():
        ev = evaluate(cases, rankings, ks=(1, 2, 5), protocol=protocol, percent=False).loc["all"]
        assert [ev["P@1"], ev["P@2"], ev["P@5"], ev["R@1"], ev["R@2"], ev["MRR@5"]] == pytest.approx(want), protocol
    with pytest.raises(ValueError, match="repeats passage 2"):
        evaluate(cases, rankings)
    assert evaluate(cases, rankings, ks=(1,), match="word", repeats="dedup", percent=False).loc["all", "P@1"] == pytest.approx(0.4)


def test_baselines_on_the_toy():
    toy = toy_benchmark()
    named = run_baseline(toy, BaselineConfig(method="bm25_entity"), entity_name=lambda q: {"qa": "France", "qb": "bear"}[q.qid])
    assert named == {"qa": [0, 2], "qb": [3, 4]}
    assert run_baseline(toy, BaselineConfig(method="random", seed=1, k=3)) == run_baseline(toy, BaselineConfig(method="random", seed=1, k=3))
    assert evaluate(toy, named, ks=(1,)).loc["all", "R@1"] == pytest.approx(50.0)

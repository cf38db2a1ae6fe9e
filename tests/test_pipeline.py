"Recognise-then-retrieve: the resolver against Mini's generator, and the baseline on a hand-made benchmark."
import random

import pytest

from gemkr.data import Benchmark, Passage, Query, Scene
from gemkr.mini import MiniConfig, referring_expressions
from gemkr.pipeline import (CRITERIA, find_expression, ground_truth_boxes, noisy_recogniser, predict_entities,
                            recognise_then_retrieve, resolve)


def _layouts(seed=0, n_layouts=500, canvas=320):
    rng = random.Random(seed)
    for _ in range(n_layouts):
        n = rng.randint(1, 5)
        yield [(x, y, x + rng.randint(8, 128), y + rng.randint(8, 128))
               for x, y in ((rng.randint(0, canvas - 128), rng.randint(0, canvas - 128)) for _ in range(n))]


def test_resolver_inverts_generator():
    "Wherever Mini's generator would say an expression of a box, the resolver maps it back to that box."
    cfg, seen = MiniConfig(), set()
    for boxes in _layouts():
        for t in range(len(boxes)):
            for e in referring_expressions(boxes, t, cfg.canvas, cfg.margin, cfg.size_ratio):
                seen.add(e)
                assert resolve(e, boxes, cfg.canvas, cfg.margin, cfg.size_ratio) == t, (e, boxes, t)
    assert seen == set(CRITERIA)                     # every expression Mini can generate was exercised


def test_resolver_ties_and_edge_cases():
    tie = [(0, 0, 50, 50), (0, 100, 50, 150), (200, 0, 250, 50)]
    assert resolve("on the far left", tie, 320) == 0          # exact tie on x: the first
    assert resolve("at the top", tie, 320) == 0
    assert resolve("in the smallest picture", tie, 320) == 0  # all equal areas: the first
    assert resolve("on the far right", tie, 320) == 2
    assert resolve("at the bottom", tie, 320) == 1
    assert resolve("on the right", [(0, 0, 50, 50), (20, 0, 70, 50)], 320) == 1   # lead under the margin
    assert resolve("here", [(3, 3, 40, 40)], 320) == 0
    assert resolve("in this image", [(0, 0, 10, 10), (50, 50, 150, 150), (200, 0, 220, 20)], 320) == 1
    assert resolve("on the left", [], 320) is None
    with pytest.raises(ValueError, match="'in the centre'"): resolve("in the centre", tie, 320)


def test_find_expression():
    for e in CRITERIA:
        assert find_expression(f"Which flag is shown {e}?") == e
    assert find_expression("Where is the thing shown here from?") == "here"
    assert find_expression("What is there?") is None


def _bench():
    ps = [Passage("a0", "Alpha", "Alpha is red."), Passage("b0", "Beta", "Beta is blue."),
          Passage("a1", "Alpha", "Alpha lives in Oslo."), Passage("b1", "Beta", "Beta lives in Rome.")]
    boxes = [(0, 0, 60, 60), (200, 150, 300, 250)]
    def q(qid, expr, target, rel):
        sc = Scene((320, 320), boxes, ["alpha", "beta"], ["Alpha", "Beta"], target, expr)
        return Query(qid, None, f"Where does the thing shown {expr} live?", ["x"], frozenset(rel), "f", sc)
    qs = [q("q0", "on the left", 0, {2}), q("q1", "in the largest picture", 1, {3})]
    return Benchmark("hand", ps, qs, "gold")


ENTITIES = {"alpha": dict(title="Alpha", name="Alpha"), "beta": dict(title="Beta", name="Beta")}


def test_baseline_oracle_and_noise():
    bench = _bench()
    r = recognise_then_retrieve(bench, ground_truth_boxes, noisy_recogniser(ENTITIES), entities=ENTITIES)
    assert r["article"] == {"q0": [0, 2], "q1": [1, 3]}       # the article's passages, in passage order
    assert set(r["bm25_entity"]["q0"]) & {0, 2} and set(r["bm25_entity"]["q1"]) & {1, 3}
    flipped = predict_entities(bench, ground_truth_boxes, noisy_recogniser(ENTITIES, noise=1.0))
    assert flipped == {"q0": "beta", "q1": "alpha"}            # always wrong: the only other entity
    none = recognise_then_retrieve(bench, lambda q: [], noisy_recogniser(ENTITIES), entities=ENTITIES)
    assert none["article"] == {"q0": [], "q1": []}             # nothing detected: an empty ranking
    assert set(none["bm25_entity"]) == {"q0", "q1"}            # BM25 falls back to the question alone
    with pytest.raises(ValueError, match="q0"):
        predict_entities(bench, ground_truth_boxes, lambda q, b: ["alpha"])


def _cli(tmp_path, *args):
    "Run the console script the way pip's wrapper does (a `__main__` calling the entry point)."
    import os, subprocess, sys
    script = tmp_path / "gemkr_mini_baselines.py"
    script.write_text("import sys\nfrom gemkr.pipeline import mini_baselines_cli\nsys.exit(mini_baselines_cli())\n")
    env = {**os.environ, "GEMKR_PROGRESS": "0"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)


def test_main_job_cli_text_only(tmp_path):
    "The baselines command (gemkr_mini_baselines), text rows only, on one split: the table, the CSV and its config."
    import pandas as pd
    from gemkr.core import config_path, load_config
    from gemkr.pipeline import MainJobConfig
    out = tmp_path / "scores.csv"
    r = _cli(tmp_path, "--splits", "test_heldout", "--text_only", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "BM25 + entity name (text oracle)" in r.stdout and "test_heldout" in r.stdout
    per = pd.read_csv(out)
    assert set(per.split) == {"test_heldout"} and set(per.relevance) == {"gold", "answer"}
    assert len(per) == 3 * 2 * 200                             # 3 text baselines, 2 relevances, 200 queries
    cfg = load_config(MainJobConfig, config_path(out))
    assert cfg.text_only and cfg.splits == ("test_heldout",) and cfg.models == {}


def test_main_job_cli_unknown_split(tmp_path):
    r = _cli(tmp_path, "--splits", "tset", "--text_only")
    assert r.returncode != 0 and "unknown split 'tset'" in r.stderr

"""`gemkr ablate` (gemkr.ablations): results appended per value and seed, errors, two processes at once."""
import dataclasses, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest


def _gemkr(tmp_path, *args, timeout=300):
    script = tmp_path / "gemkr_cli.py"
    script.write_text("import sys\nfrom gemkr.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "GEMKR_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env)


def _done(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def test_ablate_appends_rows_and_replaces_a_rerun(tmp_path):
    csv = tmp_path / "abl.csv"
    rc, out, err = _done(_gemkr(tmp_path, "ablate", "gate", "--preset", "tiny", "--seeds", "0", "--out", str(csv)))
    assert rc == 0, err[-3000:]
    assert "[ablate gate] on seed 0: test gold R@1" in out and "[ablate gate] off seed 0" in out
    df = pd.read_csv(csv, dtype={"value": str})
    assert sorted(df.value.unique()) == ["off", "on"] and set(df.seed) == {0}
    assert len(df) == 2 * 3 * 2                                  # values x splits x relevances
    assert df[["R@1", "R@5", "P@5"]].apply(lambda c: c.between(0, 100)).all().all()
    assert (df.n == 8).all()                                     # the tiny preset's 8 queries per split
    rc, out, err = _done(_gemkr(tmp_path, "ablate", "gate", "--preset", "tiny", "--seeds", "0", "--out", str(csv)))
    assert rc == 0, err[-3000:]
    again = pd.read_csv(csv, dtype={"value": str})
    assert len(again) == len(df)                                 # replaced, not appended twice
    assert "cached" in out                                       # the trained models came from the cache


def test_ablate_unknown_name_and_bad_seed(tmp_path):
    rc, out, err = _done(_gemkr(tmp_path, "ablate", "dropout", "--preset", "tiny", "--out", str(tmp_path / "a.csv")))
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "gemkr ablate: error: unknown ablation 'dropout'; known: clue, kb_pretraining" in err
    rc, out, err = _done(_gemkr(tmp_path, "ablate", "gate", "--preset", "tiny", "--seeds", "-1",
                                "--out", str(tmp_path / "a.csv")))
    assert rc == 2 and "--seeds must be at least 0" in err, err
    assert not (tmp_path / "a.csv").exists()


def test_two_ablate_processes_append_to_one_csv(tmp_path):
    "Two commands writing the same CSV at once: every row of both survives (lock + temp file + rename)."
    csv = tmp_path / "abl.csv"
    procs = [_gemkr(tmp_path, "ablate", "mapping", "--preset", "tiny", "--seeds", str(s), "--out", str(csv))
             for s in (0, 1)]
    for p in procs:
        rc, out, err = _done(p)
        assert rc == 0, err[-3000:]
    df = pd.read_csv(csv, dtype={"value": str})
    assert set(df.seed) == {0, 1} and sorted(df.value.unique()) == ["aggregate", "first", "unique"]
    assert len(df) == 2 * 3 * 3 * 2 and not df.duplicated(["ablation", "value", "seed", "split", "relevance"]).any()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".abl.csv") and not p.name.endswith(".lock")]


def test_killed_ablate_leaves_the_old_csv_whole(tmp_path):
    "kill -9 while a grid runs: the CSV holds the rows written before, and still parses."
    import signal, time
    csv = tmp_path / "abl.csv"
    rc, out, err = _done(_gemkr(tmp_path, "ablate", "constrained", "--preset", "tiny", "--seeds", "0",
                                "--out", str(csv)))
    assert rc == 0, err[-3000:]
    before = pd.read_csv(csv, dtype={"value": str})
    p = _gemkr(tmp_path, "ablate", "mapping", "--preset", "tiny", "--seeds", "0", "1", "--out", str(csv))
    time.sleep(6); p.send_signal(signal.SIGKILL); p.communicate()
    after = pd.read_csv(csv, dtype={"value": str})
    assert set(map(tuple, before[["ablation", "value", "seed", "split", "relevance"]].values)) <= \
        set(map(tuple, after[["ablation", "value", "seed", "split", "relevance"]].values))
    assert not after.duplicated(["ablation", "value", "seed", "split", "relevance"]).any()


def test_selector_ablation_keeps_a_presets_own_selector():
    from gemkr.ablations import ABLATIONS, ablation_preset
    from gemkr.cli import mini_preset
    from gemkr.selection import SelectorConfig
    a, mini, grid = ABLATIONS["selector"], mini_preset(), ablation_preset()
    assert mini.train.model.selector is not None and a.apply(mini, "on") == mini
    assert a.apply(mini, "off").train.model.selector is None
    assert a.apply(mini, "unsupervised").train.model.selector == dataclasses.replace(mini.train.model.selector,
                                                                                     loss_weight=0.0)
    assert grid.train.model.selector is None and a.apply(grid, "off") == grid     # the grid's first value: its own
    assert a.apply(grid, "on").train.model.selector == SelectorConfig()

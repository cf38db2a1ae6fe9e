"""The benchmarks run end to end at toy sizes (their figures are not checked here: speed targets live in bench/)."""
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd

BENCH = Path(__file__).parents[1] / "bench"


UMASK = 0o002          # the benches run under a group-writable umask: their files must follow it


def _check_modes(*paths):
    "Outputs get the usual permissions under the umask (gemkr.core.atomic_write), not 0600 or a fixed 0644."
    for p in paths: assert p.stat().st_mode & 0o777 == 0o666 & ~UMASK, (p, oct(p.stat().st_mode))


def _run(script, tmp_path, *args):
    env = {**os.environ, "GEMKR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "GEMKR_PROGRESS": "0"}
    r = subprocess.run([sys.executable, str(BENCH / script), "--out", str(tmp_path / "out"), *args],
                       env=env, capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(UMASK))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout, pd.read_csv(tmp_path / "out" / script.replace(".py", ".csv"))


def test_decoding_bench_both_lms(tmp_path):
    out, df = _run("decoding.py", tmp_path, "--tokens", "2e4", "--queries", "2", "--lm", "random", "trained",
                   "--train-steps", "2", "--replay-reps", "1")
    assert (tmp_path / "out" / "decoding.png").stat().st_size > 0
    assert "random LLaMA" in out and "trained LLaMA" in out and "per-beam / batched index" in out
    m = df.set_index(["lm", "path", "metric"])["median"]
    for lm in ("random", "trained"):
        for p in ("batched", "per_beam", "diverse"): assert m[lm, p, "valid_clue_frac"] == 1.0   # every clue is in the KB
        assert m[lm, "per_beam", "bwt_scans"] >= m[lm, "batched", "bwt_scans"]                  # per-beam re-walks prefixes
        for p in ("batched", "per_beam"):                                                   # the split adds up
            assert 0 < m[lm, p, "lookup_ms"] <= m[lm, p, "constraint_ms"] and 0 < m[lm, p, "model_ms"] < m[lm, p, "total_ms"]
    (trained,) = (tmp_path / "cache" / "bench").glob("lm-trained-*")                   # the trained LM is cached
    assert (trained / "config.json").is_file() and (trained / "MANIFEST.json").is_file()
    _check_modes(tmp_path / "out" / "decoding.csv", tmp_path / "out" / "decoding.png", *trained.iterdir())


def test_fmindex_bench_small(tmp_path):
    out, df = _run("fmindex.py", tmp_path, "--sizes", "2e4", "--queries", "5", "--budget", "5")
    assert (tmp_path / "out" / "fmindex.png").stat().st_size > 0 and len(df) > 5
    _check_modes(tmp_path / "out" / "fmindex.csv", tmp_path / "out" / "fmindex.png")


def test_vision_bench_quick(tmp_path):
    out, df = _run("vision.py", tmp_path, "--quick", "--batches", "1", "2", "--reps", "1", "--yolo-imgsz", "160")
    got = set(zip(df.model, df.path, df.batch))
    clip = ("preprocess", "plain", "prefix")
    want = {(m, p, b) for m, ps in (("tiny", clip), ("vitb32", clip), ("yolov8n", ("predict@160",)))
            for p in ps for b in (1, 2)}
    assert got == want and len(df) == len(want), got ^ want                      # one row each, nothing else
    for c in ("images_per_s", "ms_per_batch", "params_m"):
        assert (np.isfinite(df[c]) & (df[c] > 0)).all(), df[c]
    assert np.allclose(df.images_per_s, df.batch / (df.ms_per_batch / 1e3))     # the two columns agree
    p = df.set_index("model").params_m
    assert p["vitb32"].iloc[0] > 80 > p["tiny"].iloc[0]   # ViT-B-sized tower
    assert "| vitb32 | prefix |" in out and "| yolov8n | predict@160 |" in out
    assert (tmp_path / "out" / "vision.png").stat().st_size > 0
    assert not (tmp_path / "cache" / "mini").exists()                           # --quick builds no Mini
    _check_modes(tmp_path / "out" / "vision.csv", tmp_path / "out" / "vision.png")


def test_train_bench_quick(tmp_path):
    out, df = _run("train.py", tmp_path, "--quick", "--batches", "2", "--reps", "1")
    assert set(zip(df["head"], df.batch)) == {("labels", 2), ("full", 2)} and len(df) == 2
    parts = df[["ms_vision", "ms_llm_fwd", "ms_backward", "ms_optim"]]
    assert (parts > 0).all().all() and np.allclose(parts.sum(axis=1), df.ms_step, rtol=0.05)   # the split adds up
    assert np.allclose(df.samples_per_s, df.batch / (df.ms_step / 1e3))
    assert (df.saved_mb > 0).all() and (df.peak_rss_mb > 0).all()
    assert (df.trainable == df.trainable.iloc[0]).all()                                   # the same model twice
    assert "| labels | 2 |" in out and "| full | 2 |" in out
    assert not (tmp_path / "cache" / "mini").exists()                                     # --quick builds no Mini
    _check_modes(tmp_path / "out" / "train.csv", tmp_path / "out" / "train.png")

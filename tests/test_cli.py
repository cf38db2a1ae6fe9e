"""The README's main job (`gemkr_demo`) on a small knowledge base with a temporary GEMKR_CACHE."""
import json, subprocess, sys, os
from pathlib import Path


def _write_kb(root: Path):
    kb = root / "kb"; kb.mkdir(parents=True)
    rows = [{"id": "a#0", "title": "A", "text": "The moon orbits the earth."},
            {"id": "b#0", "title": "B", "text": "The earth orbits the sun, and the moon follows."}]
    (kb / "wiki_sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _demo(data: Path, *args):
    env = {**os.environ, "GEMKR_CACHE": str(data / "cache"), "GEMKR_PROGRESS": "0"}
    exe = Path(sys.executable).parent / "gemkr_demo"      # the console script, as a user runs it
    kb = data / "kb" / "wiki_sample.jsonl"
    return subprocess.run([str(exe), "--kb", str(kb), *args], env=env, capture_output=True, text=True, timeout=120)


def test_demo_builds_then_reuses_index(tmp_path):
    _write_kb(tmp_path)
    first = _demo(tmp_path, "--query", "the moon", "the earth orbits")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("built FMIndex(2 docs")
    assert "'the moon': 2 occurrences in 2 passages" in first.stdout
    assert "'the earth orbits': 1 occurrences in 1 passages" in first.stdout
    assert "passages:    b#0" in first.stdout
    second = _demo(tmp_path, "--query", "the moon")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("loaded FMIndex(2 docs")          # unchanged corpus and config: reused
    cache = tmp_path / "cache" / "fmindex"
    assert (cache / "wiki_sample.fmi").exists() and (cache / "wiki_sample.fmi.config.json").exists()


def test_demo_names_a_malformed_line(tmp_path):
    _write_kb(tmp_path)
    kb = tmp_path / "kb" / "wiki_sample.jsonl"
    kb.write_text(kb.read_text() + '{"id": "c#0"}\n')
    r = _demo(tmp_path)
    assert r.returncode != 0
    assert "wiki_sample.jsonl, line 3: missing field(s) ['text']" in r.stderr

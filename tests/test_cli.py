"""The README's main job (`gemkr_demo`) on a small knowledge base and on GeMKR-Mini's, with a temporary GEMKR_CACHE."""
import json, subprocess, sys, os
from pathlib import Path


def _write_kb(root: Path) -> Path:
    kb = root / "kb" / "tiny.jsonl"; kb.parent.mkdir(parents=True)
    rows = [{"id": "a#0", "title": "A", "text": "The moon orbits the earth."},
            {"id": "b#0", "title": "B", "text": "The earth orbits the sun, and the moon follows."}]
    kb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return kb


def _demo(data: Path, *args, kb: bool = True):
    env = {**os.environ, "GEMKR_CACHE": str(data / "cache"), "GEMKR_PROGRESS": "0"}
    exe = Path(sys.executable).parent / "gemkr_demo"      # the console script, as a user runs it
    kb_args = ["--kb", str(data / "kb" / "tiny.jsonl")] if kb else []
    return subprocess.run([str(exe), *kb_args, *args], env=env, capture_output=True, text=True, timeout=120)


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
    assert (cache / "tiny.fmi").exists() and (cache / "tiny.fmi.config.json").exists()
    assert not list(cache.glob("*.sha256")) and not list(cache.glob("*.tmp"))   # the fingerprint is in the header


def test_demo_rebuilds_when_the_kb_changes(tmp_path):
    kb = _write_kb(tmp_path)
    assert _demo(tmp_path, "--query", "the moon").returncode == 0
    kb.write_text(kb.read_text().replace("The moon orbits", "The moon circles"))
    r = _demo(tmp_path, "--query", "the moon")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("built FMIndex(2 docs")
    assert "'the moon': 2 occurrences in 2 passages" in r.stdout and "circles (1)" in r.stdout


def test_demo_names_a_malformed_line(tmp_path):
    kb = _write_kb(tmp_path)
    kb.write_text(kb.read_text() + '{"id": "c#0"}\n')
    r = _demo(tmp_path)
    assert r.returncode != 0
    assert "tiny.jsonl, line 3: missing field(s) ['text']" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_demo_refuses_an_empty_query_before_any_output(tmp_path):
    _write_kb(tmp_path)
    for bad in ("", "   "):
        r = _demo(tmp_path, "--query", "the moon", bad)
        assert r.returncode != 0
        assert r.stdout == ""                                          # not half the answers, then a failure
        assert f"--query {bad!r} holds no word to look up" in r.stderr
        assert "Traceback" not in r.stderr


def test_demo_defaults_to_mini_passages(tmp_path):
    r = _demo(tmp_path, "--query", "the speed of light", kb=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("built FMIndex(12,372 docs")            # GeMKR-Mini's knowledge base, all of it
    from gemkr.core import assets_dir, read_jsonl                     # the answer, by brute force over the same file
    from gemkr.fmindex import WordTokenizer, encode_kb, naive_count, naive_doc_ids
    passages = read_jsonl(assets_dir("mini", "passages.jsonl"))
    tok = WordTokenizer.train(p["text"] for p in passages)
    kb, q = encode_kb(tok, (p["text"] for p in passages)), tok.encode("the speed of light")
    docs = naive_doc_ids(kb, q)
    assert f"'the speed of light': {naive_count(kb, q)} occurrences in {len(docs)} passages" in r.stdout
    assert "passages:    " + ", ".join(passages[d]["id"] for d in docs[:5]) in r.stdout
    assert (tmp_path / "cache" / "fmindex" / "passages.fmi").exists()

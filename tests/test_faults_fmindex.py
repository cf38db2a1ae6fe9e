"""Faults of the FM-index that need processes, signals or the file system: kills during `save`, racing builders,
umask permissions, an index of another corpus or an older format on the path; and the smallest reproductions of
the index defects once reported (each failed before its fix)."""
import os, signal, struct, subprocess, sys, textwrap, warnings
from pathlib import Path
import numpy as np
import pytest
import gemkr.fmindex as fm
from gemkr.fmindex import FMIndex, FMIndexConfig, IndexFileError, build_or_load, corpus_fingerprint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _python(script: str, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- a writer killed in the middle of `save` ---------------------------------------------------------------
STALLED_SAVE = """
    import contextlib, sys, time
    import gemkr.fmindex as fm
    from gemkr.core import atomic_write

    @contextlib.contextmanager
    def stalling(path, mode="wb", encoding=None):        # atomic_write whose file stalls after its first write
        with atomic_write(path, mode, encoding) as f:
            class Stall:
                def write(self, b):
                    f.write(b); f.flush(); print("mid-write", flush=True); time.sleep(60)
            yield Stall()

    fm.atomic_write = stalling
    fm.FMIndex.build([[5, 6, 7, 8, 9]] * 300).save(sys.argv[1])
"""


def test_sigkill_during_save_keeps_the_old_file_and_the_next_save_cleans_up(tmp_path):
    p = tmp_path / "kb.fmi"
    old = FMIndex.build([[1, 3, 4, 2], [1, 5, 2]]); old.save(p)
    proc = _python(STALLED_SAVE, p)
    try:
        assert proc.stdout.readline().strip() == "mid-write", proc.stderr.read()
        temps = list(tmp_path.glob(f".kb.fmi.{proc.pid}.*.tmp"))
        assert len(temps) == 1 and temps[0].stat().st_size > 0           # the kill really lands mid-write
    finally:
        proc.kill(); proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    back = FMIndex.load(p)                                               # the old file is intact
    assert back.meta == old.meta and back.next_tokens([3]) == {4: 1}
    assert len(_temps(tmp_path)) == 1                                    # the dead writer's temp file ...
    idx, reused = build_or_load([[1, 3, 4, 2], [1, 5, 2]], p)
    assert reused
    FMIndex.build([[7, 7, 2]]).save(p)                                   # ... is removed by the next save there
    assert _temps(tmp_path) == []
    assert FMIndex.load(p).next_tokens([7]) == {2: 1, 7: 1}


# --- two processes, two corpora, one path ------------------------------------------------------------------
RACER = """
    import sys
    from gemkr.fmindex import build_or_load, corpus_fingerprint
    path, tok, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    docs = [[1, tok, tok + 1, 2]] * 200 + [[1, tok, 2]]
    for _ in range(rounds):
        idx, reused = build_or_load(docs, path, vocab_size=64)
        assert idx.meta["fingerprint"] == corpus_fingerprint(docs, 64), "the index of another corpus"
        assert idx.next_tokens([tok]) == {2: 1, tok + 1: 200}, idx.next_tokens([tok])
        assert idx.doc_ids([tok, tok + 1]) == list(range(200))
    print("ok")
"""


def test_two_builders_of_different_corpora_on_one_path(tmp_path):
    p = tmp_path / "kb.fmi"
    procs = [_python(RACER, p, tok, 12) for tok in (10, 20)]
    outs = [pr.communicate(timeout=120) for pr in procs]
    for pr, (out, err) in zip(procs, outs): assert pr.returncode == 0 and out.strip() == "ok", err
    assert _temps(tmp_path) == []
    final = FMIndex.load(p)                                              # the last one saved, intact
    assert final.next_tokens([10]) == {2: 1, 11: 200} or final.next_tokens([20]) == {2: 1, 21: 200}


def test_two_builders_of_the_same_corpus_build_it_once(tmp_path):
    script = RACER.replace("print(\"ok\")", "print(\"ok\", reused)")
    procs = [_python(script, tmp_path / "kb.fmi", 10, 1) for _ in range(2)]
    outs = [pr.communicate(timeout=120)[0].split() for pr in procs]
    assert sorted(o[1] for o in outs) == ["False", "True"], outs      # the lock: one builds, the other loads its file
    assert _temps(tmp_path) == []


# --- the corpus fingerprint lives in the index file ---------------------------------------------------------
def test_build_or_load_never_returns_another_corpus(tmp_path):
    X, Y, p = [[1, 3, 4, 2], [1, 5, 2]], [[1, 6, 6, 2]], tmp_path / "kb.fmi"
    build_or_load(X, p)
    FMIndex.build(Y).save(p)
    idx, reused = build_or_load(X, p)
    assert not reused and idx.next_tokens([3]) == {4: 1}
    assert FMIndex.load(p).meta["fingerprint"] == corpus_fingerprint(X)
    assert not (tmp_path / "kb.fmi.corpus.sha256").exists()


def test_an_old_format_file_is_refused_then_rebuilt(tmp_path):
    X, p = [[1, 3, 4, 2]], tmp_path / "kb.fmi"
    build_or_load(X, p)
    raw = bytearray(p.read_bytes()); raw[8:12] = struct.pack("<I", fm.FORMAT_VERSION - 1); p.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match=f"index format version {fm.FORMAT_VERSION - 1}, this gemkr reads version"):
        FMIndex.load(p)
    with pytest.warns(UserWarning, match="rebuilding the index"):
        idx, reused = build_or_load(X, p)
    assert not reused and build_or_load(X, p)[1]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try: FMIndex.build([[1, 2, 3]]).save(tmp_path / "kb.fmi")
    finally: os.umask(old)
    for name in ("kb.fmi", "kb.fmi.config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# --- the reported reproductions ---------------------------------------------------------------------------
def test_star_import_binds_no_method_names():
    ns = {}
    exec("from gemkr.fmindex import *", ns)
    methods = {n for n in vars(FMIndex) if not n.startswith("_")}
    assert not methods & set(ns), methods & set(ns)
    assert not methods & set(fm.__all__)
    for n in ("save", "count", "state", "extend", "states", "load", "build"): assert not callable(getattr(fm, n, None)), n


def test_cached_arrays_are_read_only():
    A, B = FMIndex.build([[5, 6, 7]]), FMIndex.build([[8, 5, 6, 9]])
    t, c = A.continuations(A.state([5, 6]))
    with pytest.raises(ValueError, match="read-only"): c += 4
    assert A.next_tokens([5, 6]) == {7: 1} and B.next_tokens([5, 6]) == {9: 1}
    with pytest.raises(ValueError, match="read-only"): A.continuations(A.root)[1][0] = 99
    wide = FMIndex.build([[4] * 50 + [5] * 50], config=FMIndexConfig(cache_min_width=8, tiny_width=2, narrow_width=4))
    for toks, counts in [wide.continuations(wide.state([4])), *wide.continuations_many(wide.states([[4], [4, 4], [5]]))]:
        assert not toks.flags.writeable and not counts.flags.writeable


def test_float_and_bool_tokens_are_errors_everywhere():
    idx = FMIndex.build([[1, 3, 4, 2]])
    for bad in (3.7, 3.0, True, np.float32(3)):
        with pytest.raises(ValueError, match="must be an integer"): idx.extend(idx.root, bad)
        with pytest.raises(ValueError, match="must be an integer"): idx.extend_many([idx.root], [bad])
        with pytest.raises(ValueError, match="must be an integer"): idx.state([bad])
        idx.states([[3]])
        with pytest.raises(ValueError, match="must be an integer"): idx.states([[bad]])
    assert idx.extend(idx.root, np.int32(3)) == idx.state([3])


def test_vocabulary_bound_is_checked_before_allocating():
    with pytest.raises(ValueError, match="token id 18446744073709551615 exceeds the largest id this index stores"):
        FMIndex.build([np.array([3, 2**64 - 1], np.uint64)])
    with pytest.raises(ValueError, match=r"document 1, position 0: token id 1099511627776 exceeds .*\(65533"):
        FMIndex.build([[1, 2], [2**40]])
    with pytest.raises(ValueError, match=r"vocab_size 1000000000 exceeds the largest vocabulary this index stores \(65534"):
        FMIndex.build([[1, 2]], vocab_size=10**9)
    assert FMIndex.build([[1, fm.MAX_VOCAB - 1]]).vocab_size == fm.MAX_VOCAB

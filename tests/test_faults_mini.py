"""GeMKR-Mini's cache under faults: damaged files, two builders racing, a builder killed with SIGKILL, the umask,
and the hash seed. Each case builds the toy assets (`gemkr.mini.write_toy_assets`) with a tiny config, in seconds.

Subprocesses run with this checkout first on the path, so they import the gemkr under test.
"""
import dataclasses, hashlib, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest
from gemkr.core import MANIFEST, check_manifest, fingerprint
from gemkr.mini import MiniConfig, SPLITS, build_mini, load_assets, write_toy_assets
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
TINY = MiniConfig(n_train=12, n_val=4, n_test=6, n_heldout=4, n_style=5, heldout_fraction=0.34)
SIZES = [12, 4, 6, 4, 5]

# A child process: build a config (given as JSON) from the toy assets into an output folder, then read every file of
# the build it got and print one JSON line: its folder, the inode of that folder, and a digest of all its files.
CHILD = """
import json, os, sys
from pathlib import Path
from gemkr.core import fingerprint
from gemkr.mini import MiniConfig, SPLITS, build_mini
assets, out, cfg = sys.argv[1], sys.argv[2], MiniConfig(**json.loads(sys.argv[3]))
if len(sys.argv) > 4: os.umask(int(sys.argv[4], 8))
ds = build_mini(cfg, assets, out)
n = [len(ds.split(s)) for s in SPLITS]
print(json.dumps(dict(root=str(ds.root), inode=os.stat(ds.root).st_ino, digest=fingerprint(ds.root), sizes=n)))
"""


def child(assets, out, cfg: MiniConfig, *extra, env=None, **kw) -> subprocess.Popen:
    cfg_json = json.dumps({k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
    env = dict(os.environ, PYTHONPATH=str(REPO), GEMKR_PROGRESS="0", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(assets), str(out), cfg_json, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def result(p: subprocess.Popen, timeout=60) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"child failed (exit {p.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def leftovers(out: Path) -> list[str]:
    "Everything in a cache folder except finished builds and their lock files."
    return sorted(p.name for p in out.iterdir() if not (p.name.startswith("mini-") or p.name.endswith(".lock")))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_assets(tmp_path_factory.mktemp("assets") / "mini")


def test_damaged_cache_is_rebuilt(toy, tmp_path):
    "Issue 9 item 3: a truncated or emptied queries.jsonl, a broken classes.json are detected and rebuilt, not trusted."
    ds = build_mini(TINY, toy, tmp_path)
    good = fingerprint(ds.root)
    for name, edit in [("queries.jsonl", lambda b: b"".join(b.splitlines(True)[:-6])), ("queries.jsonl", lambda b: b""),
                       ("classes.json", lambda b: b[:-3])]:
        p = ds.root / name; p.write_bytes(edit(p.read_bytes()))
        with pytest.warns(UserWarning, match=f"rebuilding a damaged or outdated cache: .*{name}"):
            again = build_mini(TINY, toy, tmp_path)
        assert [len(again.split(s)) for s in SPLITS] == SIZES
        assert fingerprint(again.root) == good
        check_manifest(again.root)


def test_two_builders_race(toy, tmp_path):
    "Issue 9 item 9: two processes build the same config at once; both succeed, and the first build is never replaced."
    cfg = MiniConfig(n_train=300, n_val=4, n_test=6, n_heldout=4, n_style=4, heldout_fraction=0.34)  # ~1.5 s: both start before either ends
    a, b = child(toy, tmp_path, cfg), child(toy, tmp_path, cfg)
    ra, rb = result(a), result(b)
    assert ra["root"] == rb["root"] and ra["digest"] == rb["digest"]
    assert ra["sizes"] == rb["sizes"] == [300, 4, 6, 4, 4]
    # one build only: the folder each process read is the one still in place (a replaced folder has a new inode)
    assert ra["inode"] == rb["inode"] == os.stat(ra["root"]).st_ino
    assert leftovers(tmp_path) == []
    check_manifest(ra["root"])


def kill_mid_build(toy, out: Path, cfg: MiniConfig) -> None:
    "Start a build of `cfg` in a child, SIGKILL it once it has written a few images, check that it left its temp folder."
    p = child(toy, out, cfg)
    deadline = time.monotonic() + 30
    while not any(len(list(t.glob("images/*.jpg"))) >= 3 for t in out.glob(".mini-*")):   # the temp folder
        assert p.poll() is None and time.monotonic() < deadline, f"the build did not start or ended too soon: {p.communicate()}"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    assert leftovers(out), "the killed build should have left its temp folder"


def test_killed_build_leaves_nothing(toy, tmp_path):
    "Issue 9 item 10: a build killed with SIGKILL leaves a temp folder; the next build removes it, whatever its config."
    cfg = MiniConfig(n_train=600, n_val=0, n_test=0, n_heldout=0, n_style=0)  # ~3 s: killed after a few images
    kill_mid_build(toy, tmp_path, cfg)
    ds = build_mini(cfg, toy, tmp_path)                                         # the same build again
    assert leftovers(tmp_path) == [], f"left behind: {leftovers(tmp_path)}"
    assert len(ds.split("train")) == 600
    check_manifest(ds.root)
    kill_mid_build(toy, tmp_path, MiniConfig(n_train=600, n_val=0, n_test=0, n_heldout=0, n_style=0, seed=1))
    build_mini(TINY, toy, tmp_path)                                             # a build of another config cleans up too
    assert leftovers(tmp_path) == [], f"left behind: {leftovers(tmp_path)}"
    check_manifest(ds.root)


def test_build_respects_umask(toy, tmp_path):
    "Issue 9 item 11: folders and files of a build get the umask's permissions (not 0700/0600), so others can read them."
    for umask, dmode, fmode in [("002", 0o775, 0o664), ("027", 0o750, 0o640)]:
        out = tmp_path / umask
        r = result(child(toy, out, TINY, umask))
        root = Path(r["root"])
        assert root.stat().st_mode & 0o777 == dmode
        assert (root / "images").stat().st_mode & 0o777 == dmode
        for f in (MANIFEST, "queries.jsonl", "config.json", "images/test-00000.jpg", "labels/test-00000.txt"):
            assert (root / f).stat().st_mode & 0o777 == fmode, f


def test_build_independent_of_hash_seed(toy, tmp_path):
    "The kit's guarantee: a build is byte-identical whatever PYTHONHASHSEED is."
    runs = [child(toy, tmp_path / seed, TINY, env=dict(PYTHONHASHSEED=seed)) for seed in ("1", "2")]
    r1, r2 = (result(p) for p in runs)
    assert r1["digest"] == r2["digest"] and Path(r1["root"]).name == Path(r2["root"]).name


def split_files(root: Path, split: str) -> dict[str, str]:
    "The SHA-256 of every file of one split (image, label) and of its lines of queries.jsonl."
    out = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for d in ("images", "labels") for p in (root / d).glob(f"{split}-*")}
    lines = [l for l in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines()
             if json.loads(l)["meta"]["split"] == split]
    return out | {"queries": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def test_style_split_moves_no_other_split(toy, tmp_path):
    "Issue 10 item 2: test_style is made last from its own seed stream: the other splits are the same without it."
    with_style, without = build_mini(TINY, toy, tmp_path), build_mini(dataclasses.replace(TINY, n_style=0), toy, tmp_path)
    assert len(with_style.split("test_style")) == 5 and len(without.split("test_style")) == 0
    for split in SPLITS[:4]:
        files = split_files(with_style.root, split)
        assert len(files) == 2 * len(with_style.split(split)) + 1
        assert files == split_files(without.root, split), split
    style = set(load_assets(toy).style)
    assert style == {"sun", "apple", "frog", "boat", "drum"}                     # the kiwi has no second rendering
    assert all(set(q.scene.entities) <= style for q in with_style.split("test_style").queries)


def test_style_split_needs_second_renderings(toy, tmp_path):
    "Assets without style.jsonl can build every split but test_style; asking for test_style says what to do."
    bare = tmp_path / "bare"
    write_toy_assets(bare); (bare / "style.jsonl").unlink()
    with pytest.raises(ValueError, match="no entity has a second rendering; set MiniConfig.n_style=0"):
        build_mini(TINY, bare, tmp_path / "out")
    assert [len(build_mini(dataclasses.replace(TINY, n_style=0), bare, tmp_path / "out").split(s)) for s in SPLITS] == \
        SIZES[:4] + [0]


def test_shipped_second_renderings():
    "The shipped second renderings: a distinct file for almost every entity, none shared with pictures/, <= 128 px."
    assets = load_assets()
    assert len(assets.style) >= len(assets.entities) - 5
    sha = lambda rel: hashlib.sha256((assets.root / rel).read_bytes()).hexdigest()
    first = {sha(e["image"]) for e in assets.entities.values()}
    second = {sha(rel) for rel in assets.style.values()}
    assert len(second) == len(assets.style) and not first & second
    assert all(rel == f"pictures_style/{e}.png" for e, rel in assets.style.items())
    for rel in assets.style.values():
        with Image.open(assets.root / rel) as im: assert max(im.size) <= 128, rel

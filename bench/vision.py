"""Benchmark the vision front-end on CPU: images per second (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/vision.py --batches 1 32 --reps 5

One thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)), as the other benches. Models and paths:
  tiny      the kit's tiny CLIP ViT (`CLIPConfig()`: 48 px, 4 x 128), seeded random weights
  vitb32    a ViT-B/32-sized open_clip model (`CLIPConfig(model="ViT-B-32")`: 224 px, 12 x 768), random
    preprocess  open_clip's preprocessing of 320 px scene images (resize, crop, normalise) into a tensor
    plain       the visual tower on that tensor: CLS feature + patch tokens (`output_tokens`)
    prefix      `ObjectAwareViT` around the same tower: 10 random region features, the default
                PrefixConfig with n_layers clipped to the tower's depth; out: 3 visual tokens (B, 3, 4096)
  yolov8n   `load_detector(DetectorConfig())`: a randomly initialised, yaml-built one-class yolov8n
    predict@160 / predict@320   `detector.predict` on the 320 px images at imgsz 160 (DetectorConfig's)
                                and 320
Images: GeMKR-Mini `test` scenes (320 px; Mini is built on first use), or with `--quick` (a smoke run)
synthetic 320 px images. Each (model, path, batch): one untimed warm-up call, then `--reps` timed calls;
images/s = batch / median seconds. One CSV row per (model, path, batch) to `<out>/vision.csv`, a bar plot to
`<out>/vision.png`, a table to stdout. Nothing downloads: ultralytics is set up offline through
`gemkr.vision`, every model is built from its config.
"""
from __future__ import annotations
import argparse, os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from gemkr.attention import ObjectAwareViT
from gemkr.core import atomic_write
from gemkr.prefix import PrefixConfig, vit_shape
from gemkr.vision import CLIPConfig, DetectorConfig, create_clip, load_detector, load_image

N_REGIONS, SCENE_PX = 10, 320
CLIPS = dict(tiny=CLIPConfig(), vitb32=CLIPConfig(model="ViT-B-32"))
MODELS = [*CLIPS, "yolov8n"]

# ---------------------------------------------------------------------------------------------- images
def synthetic_scenes(n: int, seed: int) -> list[Image.Image]:
    "`n` 320 px RGB images: a light background with 2-5 random coloured rectangles (scene-like, not noise)."
    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        a = np.full((SCENE_PX, SCENE_PX, 3), rng.integers(200, 256, 3), np.uint8)
        for _ in range(rng.integers(2, 6)):
            x, y = rng.integers(0, SCENE_PX - 64, 2); w, h = rng.integers(40, 120, 2)
            a[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        out.append(Image.fromarray(a))
    return out

def mini_scenes(n: int) -> list[Image.Image]:
    "The first `n` distinct scene images of GeMKR-Mini's `test` split (built and cached on first use)."
    from gemkr.benchmarks import load_mini
    paths = list(dict.fromkeys(q.image for q in load_mini("test").queries))[:n]
    if len(paths) < n: raise ValueError(f"GeMKR-Mini test has {len(paths)} scenes, fewer than {n}")
    return [load_image(p) for p in paths]

# ---------------------------------------------------------------------------------------------- timing
def time_call(fn, reps: int) -> np.ndarray:
    "Seconds of `reps` calls of `fn()`, after one untimed warm-up call."
    fn(); out = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return np.array(out)

def clip_paths(name: str, images: list[Image.Image], seed: int) -> tuple[dict, int]:
    """Functions batch -> callable for the preprocess, plain and prefix paths of one CLIP, and its vision
    parameter count."""
    model, preprocess, _ = create_clip(CLIPS[name])
    vit = model.visual; vit.output_tokens = True
    d, _, depth = vit_shape(vit)
    pcfg = PrefixConfig(n_prefix=N_REGIONS, n_layers=min(PrefixConfig().n_layers, depth))
    oa = ObjectAwareViT(vit, pcfg).eval()
    g = torch.Generator().manual_seed(seed)
    regions = torch.randn(len(images), N_REGIONS, d, generator=g)          # (B, N, d), random features
    tensors = torch.stack([preprocess(im) for im in images])                # (B, 3, H, W)
    def prep(b): return lambda: torch.stack([preprocess(im) for im in images[:b]])
    def plain(b): return lambda: vit(tensors[:b])                          # (B, embed), (B, T-1, d)
    def prefix(b): return lambda: oa(tensors[:b], regions[:b])             # (B, 3, llm_dim)
    return dict(preprocess=prep, plain=plain, prefix=prefix), sum(p.numel() for p in vit.parameters())

def yolo_paths(images: list[Image.Image], imgszs) -> tuple[dict, int]:
    "Functions batch -> callable for `detector.predict` at each image size, and the parameter count."
    cfg = DetectorConfig(); det = load_detector(cfg)
    def predict(size):
        return lambda b: lambda: det.predict(images[:b], imgsz=size, conf=cfg.conf, iou=cfg.iou, device="cpu",
                                             verbose=False)
    return {f"predict@{s}": predict(s) for s in imgszs}, sum(p.numel() for p in det.model.parameters())

# ---------------------------------------------------------------------------------------------- reporting
def plot(df, f):
    "Images/s per model and path, one bar per batch size; PNG written to the binary file `f`."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt, seaborn as sns
    df = df.assign(what=df["model"] + "\n" + df["path"], batch=df["batch"].astype(str))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * df["what"].nunique()), 4.4))
    sns.barplot(df, x="what", y="images_per_s", hue="batch", ax=ax)
    ax.set(yscale="log", xlabel="", ylabel="images / s (median of repeats)",
           title="vision front-end on CPU, 1 thread (random weights)")
    ax.legend(title="batch", fontsize=8)
    fig.tight_layout(); fig.savefig(f, format="png", dpi=110); plt.close(fig)

def markdown(df) -> str:
    "Model/path down, batch sizes across: images/s (median)."
    batches = sorted(df["batch"].unique())
    lines = ["| model | path | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|" + "---:|" * len(batches)]
    for (m, p), sub in df.groupby(["model", "path"], sort=False):
        s = sub.set_index("batch")["images_per_s"]
        cells = (f"{s[b]:.3g}" if b in s.index else "" for b in batches)
        lines.append(f"| {m} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                    help="folder for vision.csv/.png")
    ap.add_argument("--batches", nargs="+", type=int, help="batch sizes (default 1 32; --quick: 1 2)")
    ap.add_argument("--reps", type=int,
                    help="timed calls per (model, path, batch), after a warm-up (default 5; --quick: 2)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    ap.add_argument("--yolo-imgsz", nargs="+", type=int, default=[DetectorConfig().imgsz, SCENE_PX],
                    help="YOLO inference sizes")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: synthetic images instead of GeMKR-Mini scenes, small defaults")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.batches = args.batches or ([1, 2] if args.quick else [1, 32])
    args.reps = args.reps or (2 if args.quick else 5)
    if min(args.batches) < 1 or args.reps < 1: ap.error("--batches and --reps must be >= 1")
    import pandas as pd
    torch.set_num_threads(1); args.out.mkdir(parents=True, exist_ok=True)
    n = max(args.batches)
    images = synthetic_scenes(n, args.seed) if args.quick else mini_scenes(n)
    source = "synthetic" if args.quick else "mini-test"
    rows, load0 = [], os.getloadavg()
    for name in args.models:
        paths, n_params = (yolo_paths(images, args.yolo_imgsz) if name == "yolov8n"
                           else clip_paths(name, images, args.seed))
        for path, make in paths.items():
            for b in args.batches:
                with torch.no_grad(): s = time_call(make(b), args.reps)
                med = float(np.median(s))
                rows.append(dict(model=name, path=path, batch=b, images_per_s=b / med, ms_per_batch=1e3 * med,
                                 ms_min=1e3 * s.min(), ms_max=1e3 * s.max(), reps=args.reps,
                                 params_m=n_params / 1e6, images=source, load1=os.getloadavg()[0]))
                print(f"{name} {path} batch {b}: {b / med:.3g} images/s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    with atomic_write(args.out / "vision.csv", "w", encoding="utf-8") as f: df.to_csv(f, index=False)
    with atomic_write(args.out / "vision.png") as f: plot(df, f)
    print(f"\nImages/s on CPU, 1 thread, median of {args.reps} repeats after a warm-up; images: {source}.\n")
    print(markdown(df))
    print(f"\nLoad average (1 min): {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")

if __name__ == "__main__":
    main()

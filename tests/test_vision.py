"""Chapter 05 (gemkr.vision) under bad input and cache changes: unreadable, truncated and unusual images,
boxes outside the image, missing checkpoints and detector yamls, deterministic features, and the
region-feature cache that must follow the model and the image. Everything is random-init and tiny: seconds,
no network."""
import numpy as np
import pytest
import torch
from PIL import Image
from gemkr.mini import MiniConfig, build_mini, write_toy_assets
from gemkr.vision import (CLIPConfig, DetectorConfig, ImageEncoder, RegionExtractor, clip_box, create_clip,
                          crop_box, detector_hash, detector_yaml, load_detector, load_image, region_features,
                          save_clip, top_regions, write_yolo_dataset)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMKR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def encoder():
    return ImageEncoder(CLIPConfig())


@pytest.fixture(scope="module")
def detector():
    return load_detector(DetectorConfig())


def scene(path, seed=0, size=96):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)).save(path)
    return path


def test_image_conversions(tmp_path):
    Image.fromarray(np.full((4, 5), 77, np.uint8)).save(tmp_path / "l.png")
    Image.fromarray(np.full((4, 5), 0x4D10, np.uint16)).save(tmp_path / "l16.png")
    rgba = np.zeros((4, 5, 4), np.uint8); rgba[..., 1] = 255; rgba[0, 0, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert np.asarray(load_image(tmp_path / "l.png"))[1, 1].tolist() == [77, 77, 77]
    assert np.asarray(load_image(tmp_path / "l16.png"))[1, 1].tolist() == [77, 77, 77]    # high byte 0x4D
    out = np.asarray(load_image(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [0, 255, 0] and out[1, 1].tolist() == [255, 255, 255]    # alpha on white
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"


def test_image_errors(tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    scene(tmp_path / "ok.png", size=64)
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:200])
    for name in ("text.jpg", "empty.png", "cut.png"):
        with pytest.raises(ValueError, match=f"{name}: unreadable image"): load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        load_image(tmp_path / "missing.png")


def test_boxes():
    im = Image.new("RGB", (50, 40))
    assert clip_box((-3, -2.5, 60, 39.2), im.size) == (0, 0, 50, 40)        # clipped to the image, documented
    assert crop_box(im, (10.4, 5, 20, 15.5)).size == (10, 11)                  # rounded outwards
    for bad in [(5, 5, 5, 9), (9, 5, 4, 9), (60, 0, 70, 10), (0, -20, 10, -1)]:
        with pytest.raises(ValueError, match="is empty or outside the 50x40 image"): crop_box(im, bad)
    with pytest.raises(ValueError, match="not finite"): crop_box(im, (0, 0, float("nan"), 5))
    with pytest.raises(ValueError, match="4 numbers"): crop_box(im, (0, 0, 5))


def test_checkpoint_roundtrip_and_errors(tmp_path, encoder):
    cfg = save_clip(encoder.model, CLIPConfig(), tmp_path / "ckpt")
    loaded = ImageEncoder(cfg)
    assert loaded.model_hash == encoder.model_hash
    ims = [Image.new("RGB", (30, 20), (200, 10, 10))]
    assert torch.equal(loaded(ims)[0], encoder(ims)[0])
    with pytest.raises(FileNotFoundError, match="CLIPConfig.checkpoint: .*nowhere.pt is not a file"):
        create_clip(CLIPConfig(checkpoint=str(tmp_path / "nowhere.pt")))
    with pytest.raises(ValueError, match="does not fit model"):
        create_clip(CLIPConfig(layers=2, checkpoint=cfg.checkpoint))


def test_features_deterministic(encoder):
    ims = [Image.new("RGB", (40, 40), (10, 200, 10)), Image.new("L", (20, 30), 99).convert("RGB")]
    a, b = encoder(ims), ImageEncoder(CLIPConfig())(ims)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (2, 128) and a[1].shape == (2, (CLIPConfig().image_size // 8) ** 2, 128)
    assert not torch.equal(ImageEncoder(CLIPConfig(seed=3))(ims)[0], a[0])


def test_region_padding_and_selection(encoder):
    im = Image.new("RGB", (64, 64), (90, 90, 200))
    feats, mask = region_features(encoder, im, [(0, 0, 30, 30), (10, 10, 60, 50)], 4)
    assert feats.shape == (4, 128) and mask.tolist() == [True, True, False, False]
    assert feats[2:].abs().sum() == 0
    feats, mask = region_features(encoder, im, np.zeros((0, 4)), 3)
    assert not mask.any() and feats.abs().sum() == 0
    boxes, scores = top_regions(np.arange(48).reshape(12, 4), [.1] * 6 + [.9] * 6, 10)  # more than N; ties
    assert len(boxes) == 10 and boxes[0].tolist() == [24, 25, 26, 27]
    assert scores.tolist() == [.9] * 6 + [.1] * 4


def test_region_cache_follows_model_and_image(tmp_path, encoder, detector):
    img = scene(tmp_path / "scene.png")
    cache = tmp_path / "regions"
    ext = RegionExtractor(encoder, detector, DetectorConfig(conf=0.0), n_regions=5, cache=cache)
    f1, m1, b1 = ext([img])
    assert f1.shape == (1, 5, 128) and m1.all() and len(list(cache.glob("*.npz"))) == 1
    assert torch.equal(ext([img])[0], f1) and len(list(cache.glob("*.npz"))) == 1           # hit
    other = RegionExtractor(ImageEncoder(CLIPConfig(seed=7)), detector, DetectorConfig(conf=0.0), 5, cache)
    assert not torch.equal(other([img])[0], f1) and len(list(cache.glob("*.npz"))) == 2     # model changed
    scene(img, seed=1)
    assert not torch.equal(ext([img])[0], f1) and len(list(cache.glob("*.npz"))) == 3       # image changed


def test_detector_paths(tmp_path, detector):
    with pytest.raises(FileNotFoundError, match="DetectorConfig.yaml: cfg/nothing.yaml is not a file"):
        load_detector(DetectorConfig(yaml="cfg/nothing.yaml"))
    with pytest.raises(FileNotFoundError, match="nor an ultralytics model yaml"):
        detector_yaml(DetectorConfig(yaml="yolov0z.yaml"))
    with pytest.raises(FileNotFoundError, match="DetectorConfig.weights: .*gone.pt is not a file"):
        load_detector(DetectorConfig(weights=str(tmp_path / "gone.pt")))
    detector.save(tmp_path / "det.pt")          # ultralytics' own format (weights may be stored as fp16)
    a, b = (load_detector(DetectorConfig(weights=str(tmp_path / "det.pt"))) for _ in range(2))
    assert detector_hash(a) == detector_hash(b)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(a.model.eval()(x)[0], detector.model.eval()(x)[0], rtol=2e-2, atol=2e-2)


def test_yolo_dataset_layout(tmp_path):
    assets = write_toy_assets(tmp_path / "assets")
    mini = build_mini(MiniConfig(n_train=6, n_val=3, n_test=2, n_heldout=0, heldout_fraction=0.0,
                                 canvas=128, min_size=16, max_size=40, max_pictures=3),
                      assets, tmp_path / "mini")
    data = write_yolo_dataset(mini, tmp_path / "yolo", 4, 10)
    images = sorted((tmp_path / "yolo" / "images").rglob("*.jpg"))
    assert len(images) == 4 + 3 and data.is_file()
    for p in images:                  # ultralytics' rule: /images/ -> /labels/, extension -> .txt
        label = type(p)(str(p).replace("/images/", "/labels/")).with_suffix(".txt")
        rows = [r.split() for r in label.read_text().splitlines()]
        assert rows and all(r[0] == "0" and all(0 < float(v) <= 1 for v in r[1:]) for r in rows)


def test_mixed_precision_warns_only_where_bf16_is_emulated(monkeypatch):
    import warnings
    import gemkr.vision as V
    monkeypatch.setattr(V, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"TrainConfig.autocast='bfloat16' on a CPU without AVX512-BF16 or AMX"):
        V.mixed_precision("bfloat16", field="TrainConfig.autocast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        V.mixed_precision(None)                                   # float32: nothing to warn about
        monkeypatch.setattr(V, "native_bf16", lambda: True)
        with V.mixed_precision("bfloat16"):
            import torch
            assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16

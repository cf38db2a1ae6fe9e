"The measurement scripts under scripts/: each run they describe is the preset changed in the named fields only."
import importlib.util
from pathlib import Path

import pytest

from gemkr.core import REPO_ROOT, config_differences, config_to_dict


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(REPO_ROOT) / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_prefix_grid_changes_only_its_fields():
    from gemkr.cli import mini_preset
    grid = _script("prefix_grid")
    base = config_to_dict(mini_preset().train)
    no_selector = ("model.selector", base["model"]["selector"], None)
    assert config_differences(base, config_to_dict(grid.preset(10, 0.02, 1500))) == [
        ("boxes", "detector", "gold"), no_selector, ("tune.autocast", "bfloat16", None), ("tune.steps", 3600, 1500)]
    diff = config_differences(base, config_to_dict(grid.preset(2, 1.0, 500)))
    assert diff == [("boxes", "detector", "gold"), ("model.prefix.init_std", 0.02, 1.0),
                    ("model.prefix.visual_slots", 10, 2), no_selector, ("tune.autocast", "bfloat16", None),
                    ("tune.steps", 3600, 500)]
    assert {k for k, _ in grid.RUNS} == {2, 10}


def test_prefix_grid_bad_run_spec(tmp_path):
    grid = _script("prefix_grid")
    assert grid.parse_run("10:0.02") == (10, 0.02)
    for bad in ("10", "10:x", "a:b:c"):
        with pytest.raises(ValueError, match=f"--runs: '{bad}' is not visual_slots:init_std"): grid.parse_run(bad)
    with pytest.raises(ValueError, match="--runs: '10' is not"):          # before anything is built or written
        grid.main(["--runs", "10", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_llm_probe_changes_only_its_fields():
    from gemkr.cli import mini_preset
    probe = _script("llm_probe")
    base = config_to_dict(mini_preset().train)
    no_selector = ("model.selector", base["model"]["selector"], None)
    measured = [no_selector, ("tune.autocast", "bfloat16", None), ("tune.steps", 3600, 1500)]
    assert config_differences(base, config_to_dict(probe.preset(True))) == [("boxes", "detector", "gold")] + measured
    assert config_differences(base, config_to_dict(probe.preset(False))) == [
        ("boxes", "detector", "gold"), ("model.prefix.image_cls", True, False)] + measured


def test_llm_probe_linear_probe():
    import torch
    probe = _script("llm_probe")
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=g) * 4                      # five well-separated classes
    y = torch.arange(200) % 5
    x = centres[y] + torch.randn(200, 8, generator=g)
    yt = torch.arange(50) % 5
    acc = probe.linear_probe((x, y), {"test": (centres[yt] + torch.randn(50, 8, generator=g), yt),
                                      "shuffled": (centres[yt], (yt + 1) % 5)}, 5)
    assert acc["train"] > 95 and acc["test"] > 95 and acc["shuffled"] == 0.0

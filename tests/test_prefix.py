"""The object-aware prefix (gemkr.prefix) and dual-flow attention (gemkr.attention), through the exported modules."""
import dataclasses, json
import pytest
import torch
import open_clip
from gemkr.prefix import ObjectAwarePrefix, PrefixConfig, VisualProjection, tiny_vit, trainable_counts
from gemkr.attention import (DualFlowBlock, ObjectAwareViT, dual_flow_attention, dual_flow_attention_naive,
                             trainable_parameters)

CFG = PrefixConfig(n_prefix=4, n_layers=3, llm_dim=48)


def _frozen_hidden(vit, images):
    x, out = vit._embeds(images), []
    for b in vit.transformer.resblocks:
        x = b(x)
        out.append(x)
    return out


def _inputs(seed=0, B=2, N=3, d=32, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g), torch.randn(B, N, d, generator=g)


def _open_gates(model, value=0.7):
    with torch.no_grad():
        for b in model.blocks: b.gate.fill_(value)
    return model


@pytest.mark.parametrize("dtype,eps", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("ls", [None, 0.1])
def test_gate_zero_is_frozen_vit(dtype, eps, ls):
    vit = tiny_vit(seed=3)
    if ls is not None:   # a ViT with LayerScale: the wrapper must use the block's own ls_1 / ls_2
        vit = open_clip.transformer.VisionTransformer(64, 16, 32, 4, 4, 4.0, ls_init_value=ls, output_dim=32).eval()
    torch.manual_seed(0)
    model = ObjectAwareViT(vit, CFG).to(dtype)
    images, regions = (t.to(dtype) for t in _inputs())
    mask = torch.tensor([[True, True, False], [True, False, False]])
    with torch.no_grad():
        out, ref = model.features(images, regions, mask), _frozen_hidden(model.vit, images)
        assert len(out.hidden) == len(ref) == 4
        for h, r in zip(out.hidden, ref):
            assert (h - r).abs().max().item() < eps
        assert (out.cls - ref[-1][:, 0]).abs().max().item() < eps


def test_single_block_gate_zero_and_open():
    vit = tiny_vit()
    blk = vit.transformer.resblocks[1]
    dfb = DualFlowBlock(blk)
    x, P = torch.randn(2, 17, 32), torch.randn(2, 4, 32)
    with torch.no_grad():
        torch.testing.assert_close(dfb(x, P), blk(x), atol=1e-5, rtol=0)
        dfb.gate.fill_(0.3)
        assert not torch.allclose(dfb(x, P), blk(x), atol=1e-4)


def test_zero_regions_documented_behaviour():
    images, regions = _inputs()
    none = torch.zeros(2, 0, 32)
    torch.manual_seed(0)
    zero = _open_gates(ObjectAwareViT(tiny_vit(), CFG))
    torch.manual_seed(0)
    drop = _open_gates(ObjectAwareViT(tiny_vit(), dataclasses.replace(CFG, absent="drop")))
    with torch.no_grad():
        ref = _frozen_hidden(zero.vit, images)
        # "drop": no regions = no prefix, whatever the gates
        for h, r in zip(drop.features(images, none).hidden, ref):
            torch.testing.assert_close(h, r, atol=1e-5, rtol=0)
        all_masked = torch.zeros(2, 3, dtype=torch.bool)
        torch.testing.assert_close(drop.features(images, regions, all_masked).cls, ref[-1][:, 0], atol=1e-5, rtol=0)
        # "zero" (released code): no regions = the bare learned prefix, same as all regions masked, not the frozen ViT
        a, b = zero.features(images, none).cls, zero.features(images, regions * 100, all_masked).cls
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        assert not torch.allclose(a, ref[-1][:, 0], atol=1e-3)
        # with regions present, both differ from the frozen ViT once the gates are open
        assert not torch.allclose(drop.features(images, regions).cls, ref[-1][:, 0], atol=1e-3)
        # both modes give the same visual tokens for an absent slot: P_L + 0
        assert torch.equal(zero.features(images, none).prefix_in, zero.prefix.prefix[None].expand(2, -1, -1, -1))


def test_trainable_counts_match_formula():
    for cfg in (CFG, dataclasses.replace(CFG, train_ln=True), PrefixConfig(n_prefix=10, n_layers=4, llm_dim=64)):
        model = ObjectAwareViT(tiny_vit(), cfg)
        counts, formula = trainable_parameters(model), trainable_counts(cfg, 32, 4)
        assert sum(counts.values()) == formula["total"]
        assert counts["prefix.prefix"] == formula["prefix"] == cfg.n_layers * cfg.n_prefix * 32
        assert sum(v for k, v in counts.items() if k.endswith(".gate")) == formula["gates"] == cfg.n_layers * 4
        proj = counts["projection.proj.weight"] + counts["projection.proj.bias"]
        assert proj == formula["projection"] == 32 * cfg.llm_dim + cfg.llm_dim
        assert not any(k.startswith("vit.") or ".block." in k for k in counts)


def test_paper_shape_counts():
    c = trainable_counts(PrefixConfig(), 1408, 16)   # EVA ViT-g/14, LLaMA-7B width
    assert (c["prefix"], c["gates"], c["projection"], c["layernorm"]) == (281_600, 320, 5_771_264, 0)
    assert trainable_counts(PrefixConfig(train_ln=True), 1408, 16)["layernorm"] == 2 * 1408


def test_gradients_reach_only_trainable_parts():
    torch.manual_seed(0)
    model = _open_gates(ObjectAwareViT(tiny_vit(), dataclasses.replace(CFG, train_ln=True)), 0.2).train()
    assert not model.vit.training and all(not p.requires_grad for p in model.vit.parameters())
    images, regions = _inputs()
    model(images, regions).square().mean().backward()
    assert all(p.grad is None for p in model.vit.parameters())
    trainable = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    assert set(trainable) == {"prefix.prefix", "projection.ln.weight", "projection.ln.bias",
                              "projection.proj.weight", "projection.proj.bias"} | {f"blocks.{i}.gate" for i in range(3)}
    for n, p in trainable.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_gate_gradient_at_zero():
    torch.manual_seed(0)
    model = ObjectAwareViT(tiny_vit(), CFG)
    model(*_inputs()).square().mean().backward()
    assert all(b.gate.grad.abs().sum() > 0 for b in model.blocks)     # the gates can open
    assert model.prefix.prefix.grad[:-1].abs().sum() == 0               # earlier prefixes wait for them


def test_deterministic_for_a_seed():
    def run(seed):
        torch.manual_seed(seed)
        model = _open_gates(ObjectAwareViT(tiny_vit(seed), CFG))
        with torch.no_grad(): return model(*_inputs())
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("seed", range(3))
def test_batched_equals_naive(seed):
    g = torch.Generator().manual_seed(seed)
    B, H, T, n, dh = 2, 3, 6, 5, 4
    q, k_x, v_x = (torch.randn(B, H, T, dh, generator=g, dtype=torch.float64) for _ in range(3))
    k_p, v_p = (torch.randn(B, H, n, dh, generator=g, dtype=torch.float64) for _ in range(2))
    gate = torch.randn(H, generator=g, dtype=torch.float64)
    mask = torch.rand(B, n, generator=g) < 0.6
    mask[-1] = False                                                    # an image with no visible slot
    for m in (None, mask):
        got = dual_flow_attention(q, k_p, v_p, k_x, v_x, gate, m)[0]
        torch.testing.assert_close(got, dual_flow_attention_naive(q, k_p, v_p, k_x, v_x, gate, m), atol=1e-12, rtol=0)


def test_bad_input_names_the_field():
    model = ObjectAwareViT(tiny_vit(), CFG)
    images, regions = _inputs()
    mask = torch.ones(2, 3, dtype=torch.bool)
    cases = [(lambda: model(images, torch.randn(2, 3, 16)), "regions: feature width 16, expected the ViT width d=32"),
             (lambda: model(images, regions, mask[:, :2]), "region_mask: shape (2, 2), expected (B, N) = (2, 3)"),
             (lambda: model(images, regions, mask.int()), "region_mask: expected a bool tensor"),
             (lambda: model(images, torch.randn(2, 5, 32)), "5 regions per image, more than PrefixConfig.n_prefix=4"),
             (lambda: model(images, regions[:1]), "regions: batch 1, but images: batch 2"),
             (lambda: model(images[:, :1], regions), "images: expected (B, 3, 64, 64)"),
             (lambda: ObjectAwareViT(tiny_vit(), PrefixConfig(n_layers=9)), "PrefixConfig.n_layers=9"),
             (lambda: ObjectAwareViT(torch.nn.Linear(2, 2)), "expected an open_clip VisionTransformer"),
             (lambda: PrefixConfig(absent="none"), "PrefixConfig.absent")]
    for fn, msg in cases:
        with pytest.raises((ValueError, TypeError), match=None) as e:
            fn()
        assert msg in str(e.value), (msg, str(e.value))


def test_create_model_visual_tower(tmp_path):
    """A tiny CLIP registered through open_clip's own config mechanism: its `.visual` plugs in as it is."""
    name = "gemkr-test-tiny-vit"
    (tmp_path / f"{name}.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    clip = open_clip.create_model(name, pretrained=None)
    model = ObjectAwareViT(clip.visual, PrefixConfig(n_prefix=2, n_layers=2, llm_dim=8)).eval()
    images = torch.randn(3, 3, 32, 32)
    regions = model.encode_regions(torch.randn(2, 3, 32, 32))[None].expand(3, -1, -1)
    with torch.no_grad():
        assert model(images, regions).shape == (3, 3, 8)
        torch.testing.assert_close(model.features(images, regions).hidden[-1],
                                   _frozen_hidden(clip.visual, images)[-1], atol=1e-5, rtol=0)
    assert all(not p.requires_grad for p in clip.visual.parameters())

"""gemkr.train: exact resume after SIGKILL, kills mid-checkpoint, damaged checkpoints, data-parallel gradients."""
import dataclasses, multiprocessing as mp, os, signal, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from gemkr.train import (CheckpointError, TrainConfig, average_gradients, batch_indices, causal_lm_loss,
                         checkpoints, latest_checkpoint, shard, train)
from gemkr.testing import tiny_llama
from transformers import LlamaForCausalLM  # noqa: F401  (imported once here, not in every forked child)

CFG = TrainConfig(lr=3e-3, warmup_steps=3, min_lr=3e-4, batch_size=4, steps=12, seed=0, checkpoint_every=3)

# Every run happens in a forked child (it starts at once: torch is already imported) that may kill itself with
# SIGKILL after step `kill_at`, or while the checkpoint of step `kill_in_save` is being written.
def _child(out, kill_at, kill_in_save):
    import gemkr.train as T
    torch.set_num_threads(1)
    data = [torch.tensor(np.random.default_rng(i).integers(3, 30, 12)) for i in range(16)]
    model = tiny_llama(30, hidden=32, layers=2, seed=0)
    if kill_in_save:
        real = T.torch.save
        def dying_save(obj, f, *a, **k):
            if obj.get("step") == kill_in_save:
                f.write(b"half a checkpoint"); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, f, *a, **k)
        T.torch.save = dying_save
    def on_step(step, loss):
        if step == kill_at: os.kill(os.getpid(), signal.SIGKILL)
    res = T.train(model, data, CFG, out, loss_fn=T.causal_lm_loss, on_step=on_step)
    torch.save(dict(losses=res.losses, resumed=res.resumed_from,
                    weights={n: p.detach() for n, p in model.named_parameters()}), os.path.join(out, "final.pt"))


def _run(out, kill_at=0, kill_in_save=0):
    "Run in a forked process; its exit code (-9 when it killed itself)."
    p = mp.get_context("fork").Process(target=_child, args=(str(out), kill_at, kill_in_save))
    p.start(); p.join(120)
    assert p.exitcode is not None, "the training child hung"
    return p.exitcode


def _final(out):
    return torch.load(Path(out) / "final.pt", weights_only=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert _run(out) == 0
    return _final(out)


def _same(a, b):
    assert a["losses"] == b["losses"]
    for n, w in a["weights"].items(): assert torch.equal(w, b["weights"][n]), n


def test_sigkill_then_resume_is_exact(reference, tmp_path):
    assert _run(tmp_path, kill_at=8) == -signal.SIGKILL
    assert [p.name for p in checkpoints(tmp_path / "checkpoints")] == ["step-00000006", "step-00000003"]
    assert _run(tmp_path) == 0
    got = _final(tmp_path)
    assert got["resumed"] == 6
    _same(got, reference)


def test_kill_while_writing_a_checkpoint_keeps_the_good_one(reference, tmp_path):
    assert _run(tmp_path, kill_in_save=6) == -signal.SIGKILL
    ck = tmp_path / "checkpoints"
    assert [p.name for p in checkpoints(ck)] == ["step-00000003"]          # the half-written one is not in place
    assert any(p.name.startswith(".step-00000006.") for p in ck.iterdir())  # it is a temp folder
    assert _run(tmp_path) == 0
    got = _final(tmp_path)
    assert got["resumed"] == 3
    _same(got, reference)
    assert not any(p.name.endswith(".tmp") for p in ck.iterdir())         # the dead writer's temp was cleaned


def test_truncated_checkpoint_falls_back_with_a_warning(reference, tmp_path):
    assert _run(tmp_path, kill_at=7) == -signal.SIGKILL
    newest = checkpoints(tmp_path / "checkpoints")[0] / "state.pt"
    os.truncate(newest, newest.stat().st_size // 2)
    with pytest.warns(UserWarning, match=r"step-00000006/state.pt: \d+ bytes, the manifest says \d+; "
                                         r"resuming from the older step-00000003"):
        state = latest_checkpoint(tmp_path / "checkpoints")
    assert state["step"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _run(tmp_path) == 0
    _same(_final(tmp_path), reference)


def test_corrupted_checkpoints_name_the_files(tmp_path):
    assert _run(tmp_path, kill_at=4) == -signal.SIGKILL
    f = checkpoints(tmp_path / "checkpoints")[0] / "state.pt"
    b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0xFF; f.write_bytes(bytes(b))   # same size, one bit flipped
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*step-00000003/state.pt: checksum differs"):
        latest_checkpoint(tmp_path / "checkpoints")
    model = tiny_llama(30, hidden=32, layers=2, seed=0)
    data = [torch.zeros(12, dtype=torch.long)] * 16
    with pytest.raises(CheckpointError, match="step-00000003/state.pt"):
        train(model, data, CFG, tmp_path, loss_fn=causal_lm_loss)


def test_checkpoint_from_another_config_is_refused(tmp_path):
    assert _run(tmp_path, kill_at=4) == -signal.SIGKILL
    model = tiny_llama(30, hidden=32, layers=2, seed=0)
    data = [torch.zeros(12, dtype=torch.long)] * 16
    with pytest.raises(CheckpointError, match=r"fields \['batch_size', 'steps'\] differ"):
        train(model, data, dataclasses.replace(CFG, batch_size=8, steps=20), tmp_path, loss_fn=causal_lm_loss)
    wider = tiny_llama(30, hidden=64, layers=2, seed=0)
    with pytest.raises(CheckpointError, match="trainable parameters differ"):
        train(wider, data, CFG, tmp_path, loss_fn=causal_lm_loss)
    # fields that only change logging/checkpoint frequency may differ
    res = train(model, [torch.tensor(np.random.default_rng(i).integers(3, 30, 12)) for i in range(16)],
                dataclasses.replace(CFG, log_every=2, checkpoint_every=4), tmp_path, loss_fn=causal_lm_loss)
    assert res.resumed_from == 3


# ---- data parallel: 2 gloo processes on CPU ----

def _ddp_worker(rank, world_size, port, out):
    "One process as `torchrun` starts it: only the environment says who it is; `init_distributed` joins."
    import torch.distributed as dist
    from gemkr.train import init_distributed
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    try:
        assert init_distributed("cpu") == (rank, world_size)
        data = [torch.tensor(np.random.default_rng(i).integers(3, 30, 12)) for i in range(16)]
        model = tiny_llama(30, hidden=32, layers=2, seed=0).train()
        idx = shard(batch_indices(0, len(data), 8, seed=0), rank, world_size)
        causal_lm_loss(model, torch.stack([data[i] for i in idx])).backward()
        average_gradients(list(model.parameters()))
        cfg = TrainConfig(lr=3e-3, warmup_steps=2, batch_size=8, steps=4, seed=0)
        model2 = tiny_llama(30, hidden=32, layers=2, seed=0)
        res = train(model2, data, cfg, Path(out) / "run", loss_fn=causal_lm_loss)     # unchanged training code
        if rank == 0:
            torch.save(dict(grads={n: p.grad for n, p in model.named_parameters()}, losses=res.losses,
                            weights={n: p.detach() for n, p in model2.named_parameters()}),
                       Path(out) / "ddp.pt")
    finally:
        if dist.is_initialized(): dist.destroy_process_group()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_data_parallel_equals_single_process(tmp_path):
    import torch.multiprocessing as tmp_
    tmp_.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                         start_method="fork")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)
    data = [torch.tensor(np.random.default_rng(i).integers(3, 30, 12)) for i in range(16)]
    model = tiny_llama(30, hidden=32, layers=2, seed=0).train()
    causal_lm_loss(model, torch.stack([data[i] for i in batch_indices(0, 16, 8, seed=0)])).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(ddp["grads"][n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
    single = tiny_llama(30, hidden=32, layers=2, seed=0)
    res = train(single, data, TrainConfig(lr=3e-3, warmup_steps=2, batch_size=8, steps=4, seed=0),
                tmp_path / "single", loss_fn=causal_lm_loss)
    np.testing.assert_allclose(ddp["losses"], res.losses, rtol=1e-5)
    for n, p in single.named_parameters():
        torch.testing.assert_close(ddp["weights"][n], p.detach(), rtol=1e-4, atol=1e-6, msg=n)

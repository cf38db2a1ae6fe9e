"""Every default-tier notebook, run through nbdev's own runner, as one pytest test each.

nbdev's runner honours `tst_flags` (cells tagged `#| slow` or `#| gpu` are skipped unless forced)
and `#| eval: false`. Force a flag with `GEMKR_TEST_FLAGS="slow"`.
"""
import os
from pathlib import Path
import pytest
import nbdev.test as nbtest  # not `from nbdev.test import test_nb`: pytest would collect it
from nbdev.config import get_config

CFG = get_config()
NBS = sorted(p for p in Path(CFG.nbs_path).glob("*.ipynb") if not p.name.startswith(("_", ".")))
FLAGS = CFG.get("tst_flags", "").split()
FORCE = os.environ.get("GEMKR_TEST_FLAGS", "").split()


@pytest.mark.parametrize("nb", NBS, ids=[p.name for p in NBS])
def test_notebook(nb):
    ok, _ = nbtest.test_nb(nb, skip_flags=[f for f in FLAGS if f not in FORCE], force_flags=FORCE,
                           basepath=CFG.config_path)
    assert ok, f"{nb.name} failed: run it in JupyterLab to see the failing cell"

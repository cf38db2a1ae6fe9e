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


def _has_eval_false(nb: Path) -> bool:
    "Whether a code cell of `nb` carries `#| eval: false`, as nbdev parses directives (on any of its first lines)."
    from execnb.nbio import read_nb
    from nbdev.process import extract_directives
    return any(c.cell_type == "code" and extract_directives(c, remove=False).get("eval:") == ["false"]
               for c in read_nb(nb).cells)


RUN_ALL = [p for p in NBS if _has_eval_false(p)]


@pytest.mark.parametrize("nb", RUN_ALL, ids=[p.name for p in RUN_ALL])
def test_notebook_run_all(nb, monkeypatch):
    """JupyterLab's Run All also runs the `#| eval: false` cells (only nbdev's runner skips them): on a machine
    without the paper's weights and benchmarks they must say what is missing, not raise and stop the chapter."""
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    from gemkr.cli import WEIGHT_VARIABLES
    skip = set(FLAGS) - set(FORCE)
    def skipped(cell):                   # what Run All skips here: nothing but the slow and gpu cells
        return cell.cell_type != "code" or bool(skip & (getattr(cell, "directives_", {}) or {}).keys())
    for var in ("GEMKR_BENCHMARKS", *WEIGHT_VARIABLES.values()): monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(CFG.config_path))
    with working_directory(nb.parent):
        CaptureShell(nb).run_all(NBProcessor(nb, procs=FrontmatterProc, process=True).nb, exc_stop=True,
                                 preproc=skipped)

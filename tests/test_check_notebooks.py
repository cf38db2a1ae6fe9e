"""scripts/check_notebooks.py: saved outputs must read the same on any machine."""
import importlib.util, json
from pathlib import Path

spec = importlib.util.spec_from_file_location("check_notebooks", Path(__file__).parents[1] / "scripts" / "check_notebooks.py")
check = importlib.util.module_from_spec(spec); spec.loader.exec_module(check)


LI = {"name": "python", "version": "3.11.7"}


def _nb(tmp_path, text, metadata=None):
    nb = {"cells": [{"cell_type": "code", "source": "x", "metadata": {}, "execution_count": None,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]}]}],
          "metadata": metadata if metadata is not None else {"kernelspec": check.KERNELSPEC, "language_info": LI}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "a.ipynb"; p.write_text(json.dumps(nb)); return p


def test_clean_notebook_passes(tmp_path):
    assert check.problems(_nb(tmp_path, "built FMIndex(2 docs) in data/cache/fmindex\n")) == []


def test_absolute_paths_and_environment_fail(tmp_path):
    for text in ("saved to /home/alice/gemkr/data/cache/x.fmi", "/work/main/nbs", "see /tmp/tmpab12/x",
                 "/root/.cache/gemkr/ci-venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found"):
        assert check.problems(_nb(tmp_path, text)), text


def test_metadata_must_be_the_plain_kernelspec(tmp_path):
    assert check.problems(_nb(tmp_path, "ok", {"kernelspec": check.KERNELSPEC, "language_info": LI, "widgets": {}}))
    assert check.problems(_nb(tmp_path, "ok", {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}, "language_info": LI}))
    assert check.problems(_nb(tmp_path, "ok", {"jupytext": {}}))

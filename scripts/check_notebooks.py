"""Checks the committed notebooks read the same on any machine (run by scripts/test.sh).

Fails when a saved output holds an absolute home, work or temp path, or names the developer's
environment (a `site-packages` path, tqdm's "IProgress not found" warning), or when a notebook's
metadata is not the kit's `gemkr` kernel with the language_info JupyterLab writes (else JupyterLab marks
the notebook modified as soon as it opens it).
Usage: python scripts/check_notebooks.py [NOTEBOOK ...]   (default: nbs/*.ipynb)
"""
import json, re, sys
from pathlib import Path

PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users|private/var)/[\w.-]+")
ENV = re.compile(r"site-packages|IProgress not found|TqdmWarning|TqdmExperimentalWarning")
KERNELSPEC = {"display_name": "gemkr", "language": "python", "name": "gemkr"}   # installed by scripts/setup.sh


def output_text(out: dict) -> str:
    "Every text an output shows (stream text, tracebacks, and each MIME type that is text)."
    parts = [out.get("text", ""), "\n".join(out.get("traceback", []))]
    parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/") or k.endswith("json")]
    return "\n".join(p if isinstance(p, str) else "".join(p) if isinstance(p, list) else json.dumps(p) for p in parts)


def problems(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    found = []
    md = nb.get("metadata", {})
    if set(md) != {"kernelspec", "language_info"} or md["kernelspec"] != KERNELSPEC or md["language_info"].get("name") != "python":
        found.append(f"{nb_path}: notebook metadata {md.get('kernelspec')} is not the kit's kernel with its language_info")
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = output_text(out)
            for rx, what in ((PATH, "an absolute path"), (ENV, "the developer's environment")):
                m = rx.search(text)
                if m: found.append(f"{nb_path}, cell {i}: output shows {what}: {m.group(0)!r}")
    return found


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("nbs").glob("*.ipynb"))
    bad = [p for nb in paths for p in problems(nb)]
    for b in bad: print("check_notebooks:", b)
    sys.exit(1 if bad else 0)

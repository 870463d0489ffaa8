"""The built-in corpus: seeded English-like text with controlled long-range dependencies.

Two kinds of dependency, each a *cue* word and, some tokens later, a *target* word that
only the cue predicts (the seed's examples of what a next-word model must remember):

- ``language``: "Maria was born in France . <filler> She grew up speaking French ." —
  the country (cue) fixes the language (target). Gap = tokens strictly between them
  = filler length + 5.
- ``colour``: "The clouds in the sky , <clause> , are blue ." — the object (cue) fixes
  the colour (target). Without a clause ("The clouds in the sky are blue") the gap is 4;
  with a clause of C tokens it is C + 6.

Filler is random short sentences over a separate word list (no countries, languages or
colours), so the only way to predict the target is to carry the cue across the gap.
Training gaps are drawn log-uniformly (as many from 5-10 as from 40-80), so short
dependencies are common enough for a model to discover them before it has to stretch.
``generate(config)`` returns the training text and evaluation probes (context, target,
gap, kind) drawn with a different seed; every probe of a (kind, gap) has the same number
of tokens, so they can be scored as one batch. All text is canonical word-level text:
``tokenize(text, "word")`` splits it back into the generated tokens.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .text import detokenize

COUNTRIES = {"France": "French", "Germany": "German", "Spain": "Spanish", "Italy": "Italian",
             "Russia": "Russian", "Japan": "Japanese", "Greece": "Greek", "Poland": "Polish"}
NAMES = {"She": ["Maria", "Anna", "Sofia", "Emma", "Clara", "Lucy"],
         "He": ["Paul", "Marco", "Hans", "Pierre", "Ivan", "Tom"]}
# object, place, verb, colour: "The clouds in the sky are blue"
OBJECTS = [("clouds", "in", "sky", "are", "blue"), ("grass", "in", "field", "is", "green"),
           ("snow", "on", "hills", "is", "white"), ("roses", "in", "garden", "are", "red"),
           ("lemons", "on", "tree", "are", "yellow"), ("coal", "in", "cellar", "is", "black")]
SUBJECTS = ["They", "We", "Everyone", "Nobody", "People", "Friends", "Children", "Workers"]
VERBS = ["saw", "liked", "found", "carried", "opened", "bought", "cleaned", "moved",
         "watched", "kept", "sold", "fixed"]
INTRANSITIVE = ["waited", "slept", "left", "laughed", "talked", "worked", "stayed", "rested"]
ADJECTIVES = ["small", "old", "new", "heavy", "quiet", "long", "round", "cheap"]
NOUNS = ["box", "door", "table", "book", "window", "road", "letter", "chair", "cup", "bag",
         "car", "house"]
PLURALS = ["books", "letters", "chairs", "cups", "bags", "boxes", "tools", "papers"]
PREPOSITIONS = ["near", "behind", "under", "beside", "by"]
SHORT = {1: ["Then"], 2: ["Then", ","]}


@dataclass
class CorpusConfig:
    seed: int = 0
    train_tokens: int = 300_000   # about; whole stories are kept
    max_gap: int = 90             # training gaps: log-uniform from the shortest to this
    eval_gaps: tuple[int, ...] = (5, 10, 20, 40, 80)
    probes_per_gap: int = 120     # per kind
    filler_share: float = 0.15    # share of items that are filler only


@dataclass
class Probe:
    kind: str        # "language" or "colour"
    gap: int         # tokens strictly between cue and target
    context: str     # text up to (not including) the target
    target: str
    cue: str


@dataclass
class BuiltinCorpus:
    text: str
    probes: list[Probe]
    config: CorpusConfig


def _noun_phrase(n: int, rng: random.Random) -> list[str]:
    if n == 1:
        return [rng.choice(PLURALS)]
    return ["the", *rng.sample(ADJECTIVES, n - 2), rng.choice(NOUNS)]


def sentence(n: int, rng: random.Random) -> list[str]:
    """A filler sentence of exactly n tokens (1 <= n <= 10), ending with '.' if n >= 3."""
    if n < 3:
        return list(SHORT[n])
    r = n - 3                                   # tokens after subject and verb, before '.'
    if r == 0:
        body = [rng.choice(INTRANSITIVE)]
    else:
        body = [rng.choice(VERBS)]
        if r <= 4:
            body += _noun_phrase(r, rng)
        else:
            first = 2 if r == 5 else 3
            body += _noun_phrase(first, rng) + [rng.choice(PREPOSITIONS)] + \
                _noun_phrase(r - first - 1, rng)
    return [rng.choice(SUBJECTS), *body, "."]


def filler(n: int, rng: random.Random) -> list[str]:
    """Exactly n tokens of filler sentences."""
    out: list[str] = []
    while n > 0:
        k = n if n <= 10 else rng.randint(4, min(10, n - 3))
        out += sentence(k, rng)
        n -= k
    return out


def clause(n: int, rng: random.Random) -> list[str]:
    """Exactly n tokens of filler with commas for full stops (a parenthetical clause)."""
    return ["," if t == "." else t for t in filler(n, rng)]


def language_story(gap: int, rng: random.Random) -> tuple[list[str], int, int]:
    """Tokens, cue index and target index of a birthplace-language story."""
    if gap < 5:
        raise ValueError(f"language gap must be at least 5, received {gap}")
    pronoun = rng.choice(list(NAMES))
    country = rng.choice(list(COUNTRIES))
    head = [rng.choice(NAMES[pronoun]), "was", "born", "in", country, "."]
    toks = head + filler(gap - 5, rng) + [pronoun, "grew", "up", "speaking"]
    return toks + [COUNTRIES[country], "."], 4, len(toks)


def colour_story(gap: int, rng: random.Random) -> tuple[list[str], int, int]:
    """Tokens, cue index and target index of an object-colour sentence."""
    if gap != 4 and gap < 7:
        raise ValueError(f"colour gap must be 4 or at least 7, received {gap}")
    obj, prep, place, verb, colour = rng.choice(OBJECTS)
    toks = ["The", obj, prep, "the", place]
    if gap > 4:
        toks += [","] + clause(gap - 6, rng) + [","]
    toks.append(verb)
    return toks + [colour, "."], 1, len(toks)


STORIES = {"language": language_story, "colour": colour_story}


def log_uniform(lo: int, hi: int, rng: random.Random) -> int:
    """An integer in [lo, hi] with equal chance per octave (short gaps are common)."""
    hi = max(lo, hi)
    return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))


def _train_item(cfg: CorpusConfig, rng: random.Random) -> list[str]:
    u = rng.random()
    if u < cfg.filler_share:
        return filler(rng.randint(4, 30), rng)
    if u < cfg.filler_share + (1 - cfg.filler_share) * 0.6:
        return language_story(log_uniform(5, cfg.max_gap, rng), rng)[0]
    gap = 4 if rng.random() < 0.2 else log_uniform(7, cfg.max_gap, rng)
    return colour_story(gap, rng)[0]


def make_probes(cfg: CorpusConfig, seed: int) -> list[Probe]:
    """probes_per_gap probes per kind and evaluation gap; a filler sentence precedes each."""
    rng = random.Random(seed)
    probes = []
    for kind, story in STORIES.items():
        for gap in cfg.eval_gaps:
            if kind == "colour" and 4 < gap < 7:
                continue
            for _ in range(cfg.probes_per_gap):
                toks, cue, target = story(gap, rng)
                warm = filler(8, rng)
                context = detokenize(warm + ["\n"] + toks[:target], "word")
                probes.append(Probe(kind, gap, context, toks[target], toks[cue]))
    return probes


def generate(cfg: CorpusConfig = CorpusConfig()) -> BuiltinCorpus:
    """Training text (one item per line) and held-out probes, both from cfg.seed."""
    rng = random.Random(cfg.seed)
    tokens: list[str] = []
    while len(tokens) < cfg.train_tokens:
        tokens += _train_item(cfg, rng) + ["\n"]
    probes = make_probes(cfg, seed=cfg.seed + 1_000_003)
    return BuiltinCorpus(detokenize(tokens, "word"), probes, cfg)

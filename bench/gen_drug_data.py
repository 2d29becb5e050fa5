#!/usr/bin/env python3
"""Deterministic generator of sample-like dirty input for the drugs pipeline.

Writes drugs.csv, pubmed.csv, pubmed.json and clinical_trials.csv shaped like the seed's
sample, dirt included: a UTF-8 BOM, blank and whitespace-only lines, mixed int/string ids,
a trailing comma in the JSON array, literal \\xNN escape runs (valid and broken), three date
formats, split clinical-trial records, empty titles and unreadable dates, multi-word drug
names, names contained in other names and in longer words (ETHANOL / METHANOL).

Usage: python3 bench/gen_drug_data.py --drugs 5000 --publications 1000000 --out DIR [--seed 7]
Scales used by bench/data.py: S = 1k x 100k, M = 5k x 1M, L = 10k x 5M.
"""

import argparse
import json
import os
import random

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
SYLLABLES = ["am", "bet", "cor", "dex", "en", "fen", "gly", "hex", "iso", "lor", "met", "nal",
             "ox", "pra", "quin", "ral", "sul", "tet", "ur", "val", "xy", "zol", "ine", "ide",
             "ate", "one", "ol", "an", "ex", "in"]


def words(rng, n):
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(out)


def date_text(rng, style):
    y, m, d = rng.randint(2015, 2023), rng.randint(1, 12), rng.randint(1, 28)
    if style == 0:
        return f"{y:04}-{m:02}-{d:02}"
    if style == 1:
        return f"{d:02}/{m:02}/{y:04}"
    return f"{d} {MONTHS[m - 1]} {y}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drugs", type=int, required=True)
    ap.add_argument("--publications", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)

    base = words(rng, a.drugs + 4000)
    names = [w.upper() for w in base[: a.drugs]]
    vocab = base[a.drugs:]
    for i in range(0, len(names), 10):  # multi-word names, some containing another name
        names[i] = f"{names[i]} {names[(i + 3) % len(names)]}"
    names = sorted(set(names))
    journals = [f"Journal of {rng.choice(vocab)} {rng.choice(vocab)}" for _ in range(max(50, a.drugs // 10))]

    with open(os.path.join(a.out, "drugs.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("\ufeffatccode,drug\n")
        for n in names:
            f.write(f"{rng.choice('ABCDRSV')}{rng.randint(0, 99):02}{rng.choice('ABCDE')}{rng.choice('ABCDE')},{n}\n")

    def title():
        parts = [rng.choice(vocab) for _ in range(rng.randint(6, 14))]
        r = rng.random()
        if r < 0.7:
            for _ in range(rng.randint(1, 2)):
                name = rng.choice(names)
                form = rng.choice([name, name.lower(), name.title()])
                parts.insert(rng.randrange(len(parts) + 1), form)
        elif r < 0.8:
            # A drug name inside a longer word is not a mention.
            parts.insert(0, "meth" + rng.choice(names).lower().split()[0])
        t = " ".join(parts).capitalize()
        if rng.random() < 0.01:
            t += rng.choice([r" \xc3\xb1", r" \xc3\x28", r" \xe2\x84\xa2"])
        return t

    n_json = a.publications // 5
    n_trials = a.publications // 5
    n_csv = a.publications - n_json - n_trials

    with open(os.path.join(a.out, "pubmed.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("id,title,date,journal\n")
        for i in range(n_csv):
            if i % 50_000 == 7:
                f.write("\n" if i % 2 else "   \n")
            t = "" if rng.random() < 0.002 else title()
            d = "someday" if rng.random() < 0.001 else date_text(rng, rng.choice([0, 1, 1]))
            f.write(f'{i + 1},"{t}",{d},"{rng.choice(journals)}"\n')
        f.write("\t")

    with open(os.path.join(a.out, "pubmed.json"), "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n_json):
            pid = n_csv + i + 1
            obj = {"id": pid if i % 2 else str(pid), "title": title(),
                   "date": date_text(rng, 1), "journal": rng.choice(journals)}
            f.write("  " + json.dumps(obj, ensure_ascii=False) + ",\n")
        f.write("]\n")

    with open(os.path.join(a.out, "clinical_trials.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("id,scientific_title,date,journal\n")
        i = 0
        while i < n_trials:
            t, d, j = title(), date_text(rng, 2), rng.choice(journals)
            if rng.random() < 0.01 and i + 1 < n_trials:  # a record split in two rows
                f.write(f'NCT{i:08},"{t}","{d}",""\n')
                f.write(f'"","{t}","{d}","{j}"\n')
                i += 2
                continue
            f.write(f'NCT{i:08},"{t}","{d}","{j}"\n')
            i += 1


if __name__ == "__main__":
    main()

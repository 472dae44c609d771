#!/usr/bin/env python3
"""Independent check of GET /v1/places against the contract ("airports and metros by code,
name or city; prefix and one-typo matches") and the project's reading (README "Places",
openapi): an exact code first, then places having every word of q as a whole word (of name,
city or code), then as word prefixes, then with one typo per word of 4 or more letters (not
in its first letter; a transposition is one typo); accents ignored; within a group busier
places first (scheduled flights from or to them in the snapshot, a metro counting all its
airports), then a metro before an airport, then by code.  Written from those sentences and
the fixtures only.

python3 places_check.py --url http://127.0.0.1:19102 --ssim F [--ssim F2] [--seed 11] [--n 300]

Result sets are compared per group.  Which group a place belongs to is computed from the
text; the typo group is computed in two readings (typo against a whole word, or against a
word prefix as completion suggesters do) and searchd must match one of them.  The order
inside a group is checked against the traffic rank (dated legs from or to the airport).
"""
import argparse
import csv
import json
import os
import random
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (SSIM reader only, for traffic)

FIX = os.environ.get("FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/fixtures"))
EXTRA = {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ß": "ss", "æ": "ae", "Æ": "ae",
         "œ": "oe", "Œ": "oe", "ı": "i", "þ": "th", "ð": "d"}


def fold(s):
    s = "".join(EXTRA.get(c, c) for c in s)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).lower()


def words(s):
    out, cur = [], []
    for c in fold(s):
        if c.isalnum():
            cur.append(c)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def dl1(a, b):
    """Damerau-Levenshtein distance <= 1 (transposition = one edit)"""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        d = [i for i in range(la) if a[i] != b[i]]
        if len(d) == 1:
            return True
        return len(d) == 2 and d[1] == d[0] + 1 and a[d[0]] == b[d[1]] and a[d[1]] == b[d[0]]
    if la > lb:
        a, b = b, a
    for i in range(len(b)):
        if b[:i] + b[i + 1:] == a:
            return True
    return False


def typo_word(w, t):
    """w within one typo of t, never in the first letter"""
    return len(w) >= 4 and t[:1] == w[:1] and dl1(w[1:], t[1:])


def typo_prefix(w, t):
    """w within one typo of a prefix of t (fuzzy prefix, first letter exact)"""
    if len(w) < 4 or t[:1] != w[:1]:
        return False
    for n in range(max(1, len(w) - 1), min(len(t), len(w) + 1) + 1):
        if dl1(w[1:], t[1:n]):
            return True
    return False


class Place:
    def __init__(self, typ, code, name, city, country):
        self.type, self.iata, self.name, self.city, self.country = typ, code, name, city, country
        self.words = set(words(name)) | set(words(city)) | {code.lower()}
        # README: a word written with an apostrophe is also found without it (O'Hare: ohare)
        self.words |= set(words(name.replace("'", ""))) | set(words(city.replace("'", "")))
        self.traffic = 0
        self.member = False

    def group(self, q, qw, typo):
        if q.strip().lower() == self.iata.lower():
            return 0
        # README: a metro's exact code lists the metro, then its airports
        if q.strip().upper() in getattr(self, "in_metros", ()):
            return 0.5
        if not qw:
            return None
        # openapi: whole words "each of 3 or more letters" (a 2-letter word is a prefix)
        if all(w in self.words and len(w) >= 3 for w in qw):
            return 1
        if all(any(t.startswith(w) for t in self.words) for w in qw):
            return 2
        if all(any(t.startswith(w) or typo(w, t) for t in self.words) for w in qw):
            return 3
        return None

    def rank(self):
        return (-self.traffic, 0 if self.type == "metro" else 1, 0 if self.member else 1, self.iata)


def http(url, params):
    u = url + "/v1/places?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(u, timeout=30) as r:
            return r.status, json.loads(r.read()), u
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), u


def load(url, ssims):
    air = {r["iata"]: r for r in csv.DictReader(open(FIX + "/airports.csv", encoding="utf-8"))}
    metros = defaultdict(list)
    for r in csv.DictReader(open(FIX + "/metro_areas.csv", encoding="utf-8")):
        metros[r["metro"]].append(r["iata"])
    traffic = Counter()
    recs = []
    for s in ssims:
        recs.extend(oracle.parse_ssim(s))
    legs, _ = oracle.expand(oracle.group_flights(recs, []))
    for L in legs:
        if L.stype not in oracle.PASSENGER_TYPES:
            continue  # README: passenger legs from or to the place
        traffic[L.dep] += 1
        traffic[L.arr] += 1
    places = []
    problems = []
    for code, r in air.items():
        p = Place("airport", code, r["name"], r["city"], r["country"])
        p.traffic = traffic[code]
        p.member = any(code in ms for ms in metros.values())
        p.in_metros = {m for m, ms in metros.items() if code in ms}
        places.append(p)
    for m, members in sorted(metros.items()):
        # metro: city most of its airports give; its display name is the project's (taken
        # from searchd's exact-code answer, whose city and country are checked here)
        # README: the city most of its airports give, in their city or their name
        names = set(air[a]["city"] for a in members if a in air and air[a]["city"])
        cities = Counter({c: sum(1 for a in members if a in air and (air[a]["city"] == c or c.lower() in air[a]["name"].lower())) for c in names})
        city = cities.most_common(1)[0][0] if cities else ""
        countries = Counter(air[a]["country"] for a in members if a in air)
        st, body, u = http(url, {"q": m, "limit": "50"})
        got = [x for x in body.get("data", []) if x["type"] == "metro" and x["iata"] == m]
        if not got:
            problems.append("metro %s not found by its code: %s" % (m, u))
            name = city
        else:
            name = got[0]["name"]
            if got[0]["city"] != city and cities.most_common(1)[0][1] != (cities.most_common(2) + [(0, 0)])[1][1]:
                problems.append("metro %s city %r expected %r" % (m, got[0]["city"], city))
            if got[0]["country"] != countries.most_common(1)[0][0]:
                problems.append("metro %s country %r expected %r" % (m, got[0]["country"], countries.most_common(1)[0][0]))
        p = Place("metro", m, name, city, countries.most_common(1)[0][0] if countries else "")
        # README: "A metro is named after the city most of its airports give (NYC: New
        # York)": its words are its code and that city, not the display name's airport list
        # ... and every member's city finds it
        p.words = set(words(" ".join(names))) | {m.lower()}
        p.traffic = sum(traffic[a] for a in set(members))
        places.append(p)
    return places, problems


def typo(rng, w):
    """one edit not in the first letter"""
    k = rng.choice(["sub", "del", "ins", "swap"])
    if len(w) < 3:
        return w
    i = rng.randint(1, len(w) - 1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    if k == "sub":
        return w[:i] + rng.choice([c for c in letters if c != w[i]]) + w[i + 1:]
    if k == "del":
        return w[:i] + w[i + 1:]
    if k == "ins":
        return w[:i] + rng.choice(letters) + w[i:]
    if i == len(w) - 1:
        i -= 1
    if i < 1:
        return w
    return w[:i] + w[i + 1] + w[i] + w[i + 2:]


def queries(rng, places, n):
    out = []
    named = [p for p in places if p.name]
    busy = [p for p in places if p.traffic > 0] or named
    accented = [p for p in places if any(ord(c) > 127 for c in p.name + p.city)]
    for i in range(n):
        r = rng.random()
        p = rng.choice(busy if rng.random() < 0.5 else named)
        ws = [w for w in words(p.name) + words(p.city) if len(w) >= 3] or [p.iata.lower()]
        if r < 0.12:
            q, kind = rng.choice([p.iata, p.iata.lower(), p.iata.title()]), "code"
        elif r < 0.3:
            q, kind = rng.choice(ws), "word"
        elif r < 0.45:
            w = rng.choice(ws)
            q, kind = w[:rng.randint(2, max(2, len(w) - 1))], "prefix"
        elif r < 0.65:
            w = rng.choice([w for w in ws if len(w) >= 4] or ws)
            q, kind = typo(rng, w), "typo"
        elif r < 0.7:
            w = rng.choice([w for w in ws if len(w) >= 4] or ws)
            j = 0
            q, kind = rng.choice("bcdfgkmpqz") + w[1:], "typo-first-letter"
        elif r < 0.82 and accented:
            a = rng.choice(accented)
            src = rng.choice([a.name, a.city or a.name])
            raw = [x for x in src.replace("-", " ").split() if any(ord(c) > 127 for c in x)] or src.split()
            w = rng.choice(raw)
            q = rng.choice([w, fold(w), w.upper(), fold(w)[:max(3, len(w) - 2)]])
            kind = "accent"
        else:
            ww = words(p.name) + words(p.city)
            if len(ww) >= 2:
                j = rng.randint(0, len(ww) - 2)
                a, b = ww[j], ww[j + 1]
                if rng.random() < 0.4:
                    b = b[:max(1, len(b) - rng.randint(0, 3))]
                if rng.random() < 0.3 and len(a) >= 4:
                    a = typo(rng, a)
                q = a + " " + b
            else:
                q = ws[0]
            kind = "multi"
        out.append((kind, q))
    out += [("fixed", q) for q in ["new york", "kenedy", "sao paulo", "são", "zurich", "JFK", "nyc", "hou",
                                     "par", "paris", "londn", "chicago", "san jose", "st denis", "reunion",
                                     "réunion", "Roland Garros", "dzaoudzi", "la", "lax", "angeles", "los ang",
                                     "o'hare", "ohare", "new-york", "  jfk ", "kennedy intl", "münchen",
                                     "munchen", "københavn", "kobenhavn", "lodz", "łódź", "dusseldorf", "ålesund",
                                     "alesund", "andoya", "eskisehir", "SÃO PAULO", "st", "x", "zz",
                                     "intl", "internatonal", "interantional", "nwe york", "kenedy internatinal"]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:19102")
    ap.add_argument("--ssim", action="append", default=[])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--out", default="/tmp/oracle-report-places.json")
    a = ap.parse_args()
    ssims = a.ssim or [FIX + "/nycflights13_2013.ssim"]
    places, problems = load(a.url, ssims)
    rng = random.Random(a.seed)
    stats = Counter()
    fails = defaultdict(list)
    reading = Counter()
    for kind, q in queries(rng, places, a.n):
        st, body, u = http(a.url, {"q": q, "limit": str(a.limit)})
        errs = []
        if st != 200:
            if q.strip():
                errs.append("status %s %s" % (st, json.dumps(body)[:200]))
            stats[(kind, "FAIL" if errs else "ok")] += 1
            if errs:
                fails[kind].append((u, errs))
            continue
        got = [(x["type"], x["iata"]) for x in body["data"]]
        byk = {(p.type, p.iata): p for p in places}
        for x in body["data"]:
            p = byk.get((x["type"], x["iata"]))
            if p is None:
                errs.append("unknown place %s" % x)
            elif (x["name"], x["city"], x["country"]) != (p.name, p.city, p.country) and p.type == "airport":
                errs.append("fields %s: %s expected %s" % (x["iata"], (x["name"], x["city"], x["country"]),
                                                          (p.name, p.city, p.country)))
        qw = words(q)
        verdicts = {}
        for rname, tf in (("typo-whole-word", typo_word), ("typo-prefix", typo_prefix)):
            groups = defaultdict(list)
            for p in places:
                g = p.group(q, qw, tf)
                if g is not None:
                    groups[g].append(p)
            exp = []
            for g in sorted(groups):
                for p in sorted(groups[g], key=Place.rank):
                    exp.append((g, p))
            gof = {(p.type, p.iata): g for g, p in exp}
            e = []
            # group order of what came back
            gs = [gof.get(k) for k in got]
            if None in gs:
                e.append("not matching any group: %s" % [k for k, g in zip(got, gs) if g is None][:5])
            elif gs != sorted(gs):
                e.append("groups out of order: %s" % list(zip(got, gs))[:8])
            # per group sets: groups wholly inside the limit must be complete
            n = len(got)
            if n < a.limit and len(exp) > n:
                e.append("only %d returned, %d match" % (n, len(exp)))
            cut = exp[:a.limit]
            for g in sorted(groups):
                want = {(p.type, p.iata) for gg, p in exp if gg == g}
                have = {k for k, gg in zip(got, gs) if gg == g}
                inlim = {(p.type, p.iata) for gg, p in cut if gg == g}
                if len(inlim) == len(want):  # whole group inside the limit
                    if have != want:
                        e.append("group %d: missing %s extra %s" % (g, sorted(want - have)[:5], sorted(have - want)[:5]))
                elif len(have) != len(inlim):
                    e.append("group %d: %d returned, %d expected within limit" % (g, len(have), len(inlim)))
            verdicts[rname] = (e, exp, got)
        ok = [r for r, v in verdicts.items() if not v[0]]
        if ok:
            for r in ok:
                reading[r] += 1
            # order inside groups by (traffic, metro first, code)
            e, exp, got2 = verdicts[ok[0]]
            expk = [(p.type, p.iata) for _, p in exp[:a.limit]]
            if expk != got2:
                stats[("order-within-group", "differs")] += 1
                fails["order-within-group"].append((u, ["searchd %s" % got2[:8], "expected %s" % expk[:8]]))
            else:
                stats[("order-within-group", "ok")] += 1
        else:
            for r, v in verdicts.items():
                errs.extend("[%s] %s" % (r, x) for x in v[0][:3])
        stats[(kind, "FAIL" if errs else "ok")] += 1
        if errs:
            fails[kind].append((u, errs))
    print("== places")
    for p in problems:
        print("  PROBLEM", p)
    for k in sorted(stats):
        print("  %-20s %-7s %d" % (k[0], k[1], stats[k]))
    print("  readings consistent with searchd: %s" % dict(reading))
    for kind, fl in fails.items():
        for u, errs in fl[:10]:
            print("  FAIL", kind, urllib.parse.unquote(u))
            for e in errs[:4]:
                print("     ", e[:400])
    json.dump({"stats": {"%s/%s" % k: v for k, v in stats.items()}, "problems": problems,
               "fails": fails, "readings": reading}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()

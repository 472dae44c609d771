#!/usr/bin/env python3
"""Compare a running searchd with the oracle on seeded random queries.

python3 compare.py --feeds /tmp/oracle-feeds --gna-url http://127.0.0.1:19101 \
    --nyc-url http://127.0.0.1:19102 [--seed 7] [--n 300] [--strict-metro 1] [--only KIND]
"""
import argparse
import datetime as dt
import json
import os
import random
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

FIX = os.environ.get("FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/fixtures"))


def http(url, path, params):
    u = url + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(u, timeout=60) as r:
            return r.status, json.loads(r.read()), u
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body), u
        except Exception:
            return e.code, {"raw": body.decode("utf-8", "replace")}, u


def cents(m):
    return None if m is None else oracle.money(m["amount"])


def s_seg_key(s):
    return (s["carrier"], s["flight_number"], s["origin"], s["destination"], s["departure_local"])


def s_itin_key(it):
    return tuple(tuple(s_seg_key(sg) for sg in sl["segments"]) for sl in it["slices"])


def o_seg_detail(sg):
    L0, Ln = sg[0], sg[-1]
    return {"arrival_local": oracle.fmt_local(Ln.arr_local),
            "departure_utc": oracle.fmt_utc(L0.dep_utc), "arrival_utc": oracle.fmt_utc(Ln.arr_utc),
            "stops": [L.arr for L in sg[:-1]]}


class Cmp:
    def __init__(self, name, url, orc):
        self.name, self.url, self.o = name, url, orc
        self.stats = Counter()
        self.fails = defaultdict(list)

    def fail(self, kind, msg):
        self.fails[kind].append(msg)

    def search(self, kind, params):
        """returns list of mismatch strings"""
        o = self.o
        st, body, u = http(self.url, "/v1/search", params)
        q = oracle.Query(**params)
        res = o.search(q)
        res.sort(key=lambda it: o.sort_key(q, it))
        errs = []
        if st != 200:
            errs.append("status %s %s" % (st, json.dumps(body)[:300]))
            return self.record(kind, u, errs)
        total = body["meta"]["total"]
        if total != len(res):
            errs.append("total searchd=%d oracle=%d" % (total, len(res)))
        omap = {it.key(): it for it in res}
        items = body["data"]["itineraries"]
        if body["meta"]["count"] != len(items) or len(items) != min(q.limit, total):
            errs.append("count %d items %d limit %d total %d" % (body["meta"]["count"], len(items), q.limit, total))
        # full set (when small enough)
        full = items
        if len(items) < total <= 1000:
            st2, b2, _ = http(self.url, "/v1/search", dict(params, limit="1000"))
            if st2 == 200:
                full = b2["data"]["itineraries"]
        skeys = {s_itin_key(it) for it in full}
        okeys = set(omap)
        if len(full) == total and skeys != okeys:
            miss = okeys - skeys
            extra = skeys - okeys
            if miss:
                errs.append("missing in searchd (%d): %s" % (len(miss), sorted(miss)[:3]))
            if extra:
                errs.append("extra in searchd (%d): %s" % (len(extra), sorted(extra)[:3]))
        # prices, seats and leg details of every itinerary both have
        for it in full:
            k = s_itin_key(it)
            oi = omap.get(k)
            if oi is None:
                continue
            sp = cents(it["price"])
            op = None if oi.price is None else oi.price[0]
            if sp != op:
                errs.append("price %s searchd=%s oracle=%s fares=%s" % (k, sp, op, it["fares"]))
            elif op is not None and it["price"]["currency"] not in oi.price[2]:
                errs.append("currency %s searchd=%s oracle=%s" % (k, it["price"]["currency"], sorted(oi.price[2])))
            elif op is not None and it["seats_available"] not in oi.price[1]:
                errs.append("seats %s searchd=%s oracle=%s fares=%s" % (k, it["seats_available"], sorted(oi.price[1]), it["fares"]))
            elif op is None and it["seats_available"] is not None:
                errs.append("seats %s searchd=%s for an unpriced itinerary" % (k, it["seats_available"]))
            if op is not None:
                self.stats[("seats-" + ("exact" if len(oi.price[1]) == 1 else "ambiguous"), "n")] += 1
                if len(oi.price[2]) == 1 and next(iter(oi.price[2])) not in ("EUR", "USD"):
                    self.stats[("price-alt-currency", "n")] += 1
            for sl, osl in zip(it["slices"], oi.slices):
                for sg, osg in zip(sl["segments"], osl):
                    d = o_seg_detail(osg)
                    for f in d:
                        if sg[f] != d[f]:
                            errs.append("seg %s %s searchd=%s oracle=%s" % (s_seg_key(sg), f, sg[f], d[f]))
                dur = osl[-1][-1].arr_utc - osl[0][0].dep_utc
                if sl["duration_minutes"] != dur:
                    errs.append("duration %s searchd=%s oracle=%s" % (k, sl["duration_minutes"], dur))
        # exact order, ties included (SEMANTICS.md: ties by outbound departure, then the
        # itinerary id in string order), and the limited list is the full order's prefix
        if len(full) == total and all(s_itin_key(it) in omap for it in full):
            exp = sorted(full, key=lambda it: (o.sort_key(q, omap[s_itin_key(it)]), it["id"]))
            if [it["id"] for it in full] != [it["id"] for it in exp]:
                bad = next(i for i, (x, y) in enumerate(zip(full, exp)) if x["id"] != y["id"])
                errs.append("tie order at %d: searchd %s / expected %s (key %s)" % (
                    bad, s_itin_key(full[bad]), s_itin_key(exp[bad]), o.sort_key(q, omap[s_itin_key(exp[bad])])))
            elif [it["id"] for it in items] != [it["id"] for it in full[:len(items)]]:
                errs.append("limited list is not the prefix of the full order")
            else:
                nt = sum(1 for x, y in zip(exp, exp[1:]) if o.sort_key(q, omap[s_itin_key(x)]) == o.sort_key(q, omap[s_itin_key(y)]))
                self.stats[("tie-pairs", "n")] += nt
        elif all(s_itin_key(it) in omap for it in items):
            ks = [(o.sort_key(q, omap[s_itin_key(it)]), it["id"]) for it in items]
            if ks != sorted(ks):
                errs.append("order (with id ties) not sorted")
        # order and limit
        skeys_sorted = []
        for it in items:
            oi = omap.get(s_itin_key(it))
            if oi is None:
                break
            skeys_sorted.append(o.sort_key(q, oi))
        else:
            if skeys_sorted != sorted(skeys_sorted):
                errs.append("order not sorted by %s: %s" % (q.sort, skeys_sorted[:10]))
            exp = [o.sort_key(q, it) for it in res[:q.limit]]
            if sorted(skeys_sorted) != exp:
                errs.append("top-%d keys differ: searchd %s oracle %s" % (q.limit, skeys_sorted[:5], exp[:5]))
        # offer re-pricing of the first itinerary: same flights, same price, unchanged
        if items:
            it = items[0]
            st3, b3, _ = http(self.url, "/v1/offers/" + it["id"], {})
            if st3 != 200:
                errs.append("offer %s status %s %s" % (it["id"][:20], st3, json.dumps(b3)[:200]))
            else:
                d3 = b3["data"]
                if s_itin_key(d3) != s_itin_key(it) or d3.get("price") != it["price"] or d3.get("price_changed") is not False:
                    errs.append("offer differs: %s price %s->%s changed=%s" % (s_itin_key(it), it["price"], d3.get("price"), d3.get("price_changed")))
        return self.record(kind, u, errs)

    def record(self, kind, u, errs):
        self.stats[(kind, "ok" if not errs else "FAIL")] += 1
        if errs:
            self.fail(kind, (u, errs[:6]))
        return errs

    def error_case(self, params, want_param, path="/v1/search", want_status=400):
        st, body, u = http(self.url, path, params)
        errs = []
        if st != want_status:
            errs.append("status %s want %s body %s" % (st, want_status, json.dumps(body)[:200]))
        else:
            try:
                p = body["errors"][0]["source"]["parameter"]
                if want_param and p != want_param:
                    errs.append("parameter %s want %s" % (p, want_param))
            except Exception as e:
                errs.append("bad envelope %r %s" % (e, json.dumps(body)[:200]))
        return self.record("error", u, errs)

    def calendar(self, params):
        o = self.o
        st, body, u = http(self.url, "/v1/calendar", params)
        errs = []
        if st != 200:
            return self.record("calendar", u, ["status %s %s" % (st, json.dumps(body)[:300])])
        d0 = dt.date.fromisoformat(params["from"])
        d1 = dt.date.fromisoformat(params["to"])
        days = body["data"]["days"]
        if len(days) != (d1 - d0).days + 1:
            errs.append("days %d" % len(days))
        for day in days:
            p = {k: v for k, v in params.items() if k not in ("from", "to")}
            p["date"] = day["date"]
            q = oracle.Query(**p)
            res = o.search(q)
            prices = [it.price[0] for it in res if it.price is not None]
            exp = min(prices) if prices else None
            got = cents(day["lowest_price"])
            if got != exp:
                errs.append("day %s searchd=%s oracle=%s" % (day["date"], got, exp))
                continue
            # itinerary_id: the first itinerary a sort=price search for that day returns;
            # that search's first result must itself be the oracle's (price, departure, id)
            sp = dict(p, sort="price", limit="1000")
            st2, b2, u2 = http(self.url, "/v1/search", sp)
            if st2 != 200:
                errs.append("day %s search status %s" % (day["date"], st2))
                continue
            its = b2["data"]["itineraries"]
            first = its[0]["id"] if its else None
            if day["itinerary_id"] != first:
                errs.append("day %s itinerary_id %s search's first %s" % (day["date"], day["itinerary_id"], first))
            if its:
                omap = {it.key(): it for it in res}
                cands = [it for it in its if s_itin_key(it) in omap]
                if len(cands) == len(its) and b2["meta"]["total"] == len(its):
                    best = min(cands, key=lambda it: (o.sort_key(q, omap[s_itin_key(it)]), it["id"]))
                    if best["id"] != first:
                        errs.append("day %s search's first %s expected %s" % (day["date"], s_itin_key(its[0]), s_itin_key(best)))
                if exp is not None and day["lowest_price"]["currency"] != its[0]["price"]["currency"]:
                    errs.append("day %s currency %s search %s" % (day["date"], day["lowest_price"]["currency"], its[0]["price"]["currency"]))
        return self.record("calendar", u, errs)


def rand_filters(rng, p, carriers, big=False):
    if rng.random() < 0.4:
        p["priced_only"] = "false"
    if rng.random() < 0.4:
        if rng.random() < 0.5:
            p["sort"] = rng.choice(["price", "duration", "departure"])
            p["limit"] = str(rng.choice([1, 2, 3, 5]))
        return p
    if rng.random() < 0.3:
        p["adults"] = str(rng.randint(1, 4))
    if rng.random() < 0.25:
        p["children"] = str(rng.randint(1, 3))
    if rng.random() < 0.2:
        p["infants"] = str(rng.randint(1, int(p.get("adults", "1"))))
    if rng.random() < 0.25:
        p["cabin"] = rng.choice(["economy", "premium_economy", "business", "first"])
    if rng.random() < 0.15:
        p["carriers"] = ",".join(rng.sample(carriers, min(len(carriers), rng.randint(1, 2))))
    elif rng.random() < 0.1:
        p["exclude_carriers"] = ",".join(rng.sample(carriers, 1))
    if rng.random() < 0.2:
        p["depart_after"] = "%02d:%02d" % (rng.randint(0, 15), rng.choice([0, 5, 30, 40]))
    if rng.random() < 0.2:
        p["depart_before"] = "%02d:%02d" % (rng.randint(8, 23), rng.choice([0, 15, 30, 59]))
    if rng.random() < 0.2:
        p["max_price"] = rng.choice(["500", "800.50", "1200", "250.99", "3000"])
    if rng.random() < 0.3:
        p["priced_only"] = rng.choice(["false", "true"])
    if rng.random() < 0.6:
        p["sort"] = rng.choice(["price", "duration", "departure"])
    if rng.random() < 0.5:
        p["limit"] = str(rng.choice([1, 2, 3, 5, 10, 1000]))
    return p


def pick_od(rng, orc, legs, want_conns, strict=True):
    """a random origin/date from a real leg and a destination reachable with want_conns"""
    for _ in range(50):
        L = rng.choice(legs)
        q = oracle.Query(origin=L.dep, destination=L.dep, date=L.dep_date.isoformat(),
                         max_connections="2", priced_only="false")
        reach = {}
        orc.slices(q, {L.dep}, set(), L.dep_date, collect=reach)
        cands = [a for a, ns in reach.items() if want_conns in ns and a != L.dep]
        if cands:
            return L.dep, rng.choice(sorted(cands)), L.dep_date
    return L.dep, L.arr, L.dep_date


def gna_queries(rng, n, orc):
    legs = [L for L in orc.f.legs if L.stype in oracle.PASSENGER_TYPES]
    special = [dt.date(2005, 10, 29), dt.date(2005, 10, 30), dt.date(2005, 10, 28)]
    out = []
    for i in range(n):
        r = rng.random()
        kind = "gna-direct" if r < 0.2 else "gna-1stop" if r < 0.45 else "gna-2stop" if r < 0.65 else \
            "gna-mct" if r < 0.8 else "gna-roundtrip" if r < 0.93 else "gna-metro"
        want = {"gna-direct": 0, "gna-1stop": 1, "gna-2stop": 2, "gna-mct": 1, "gna-roundtrip": rng.randint(0, 1),
                "gna-metro": rng.randint(0, 1)}[kind]
        o, d, date = pick_od(rng, orc, legs, want)
        if rng.random() < 0.15:
            date = rng.choice(special)
        p = {"origin": o, "destination": d, "date": date.isoformat()}
        if kind == "gna-metro":
            metros = ["PAR", "JNB"] + (["RUZ", "DZA", "RUZ"] if "RUZ" in orc.f.metro else [])
            if "CDG" in (o, d) and rng.random() < 0.5:
                p["origin" if o == "CDG" else "destination"] = "PAR"
            else:
                p["origin" if rng.random() < 0.5 else "destination"] = rng.choice(metros)
            po, pd = orc.f.query_sets(p["origin"].upper(), p["destination"].upper())
            if po & pd:
                p["destination"] = "MRU" if "RUN" in po else "RUN"
        p["max_connections"] = str(max(want, rng.choice([0, 1, 2])) if kind != "gna-direct" else 0)
        if kind == "gna-mct":
            if rng.random() < 0.6:
                p["min_connection_minutes"] = str(rng.choice([0, 25, 30, 35, 45, 50, 55, 60, 90, 120]))
            p["max_connection_minutes"] = str(rng.choice([60, 90, 120, 180, 240, 600, 1440, 2880]))
            if int(p.get("min_connection_minutes", 0)) > int(p["max_connection_minutes"]):
                p["max_connection_minutes"] = p["min_connection_minutes"]
        if kind == "gna-roundtrip":
            p["return_date"] = (date + dt.timedelta(days=rng.randint(0, 10))).isoformat()
        rand_filters(rng, p, ["XX"])
        if rng.random() < 0.1:
            p["origin"] = p["origin"].lower()
        out.append((kind, p))
    return out


def edge_queries(rng, orc, n):
    """connection-time and departure-time boundaries taken from real itineraries"""
    legs = [L for L in orc.f.legs if L.stype in oracle.PASSENGER_TYPES]
    out = []
    tries = 0
    while len(out) < n and tries < 5000:
        tries += 1
        o, d, date = pick_od(rng, orc, legs, rng.choice([1, 2]))
        q = oracle.Query(origin=o, destination=d, date=date.isoformat(), max_connections="2",
                         priced_only="false", min_connection_minutes="0", max_connection_minutes="2880")
        its = orc.slices(q, {o}, {d}, date)
        its = [s for s in its if len(s) > 1]
        if not its:
            continue
        s = rng.choice(its)
        gaps = [s[i + 1][0].dep_utc - s[i][-1].arr_utc for i in range(len(s) - 1)]
        mcts = [orc.f.mct_minutes(s[i][-1].arr, s[i][-1], s[i + 1][0]) for i in range(len(s) - 1)]
        base = {"origin": o, "destination": d, "date": date.isoformat(), "max_connections": str(len(s) - 1),
                "priced_only": "false", "limit": "1000"}
        g = rng.choice(gaps)
        k = rng.randint(0, 5)
        if k == 0:
            out.append(("edge-min", dict(base, min_connection_minutes=str(g), max_connection_minutes="2880")))
        elif k == 1:
            out.append(("edge-min", dict(base, min_connection_minutes=str(g + 1), max_connection_minutes="2880")))
        elif k == 2:
            out.append(("edge-max", dict(base, max_connection_minutes=str(max(g, 0)))))
        elif k == 3:
            out.append(("edge-max", dict(base, max_connection_minutes=str(max(g - 1, 0)))))
        elif k == 4:
            t = s[0][0].dep_local % 1440
            hm = "%02d:%02d" % (t // 60, t % 60)
            out.append(("edge-time", dict(base, **{rng.choice(["depart_after", "depart_before"]): hm})))
        else:
            out.append(("edge-mct", dict(base, max_connection_minutes=str(max(min(gaps), 0)))))
    return out


def party(rng, p):
    """CHD/INF combinations: children with and without CHD fares, infants with and without
    INF fares, parties near the seat counts (seated = adults + children)"""
    a = rng.choice([1, 1, 1, 2, 2, 3, 4])
    c = rng.choice([0, 0, 1, 1, 2, 3, 5])
    c = min(c, 9 - a)
    i = rng.randint(0, a) if rng.random() < 0.5 else 0
    p["adults"] = str(a)
    if c or rng.random() < 0.2:
        p["children"] = str(c)
    if i or rng.random() < 0.2:
        p["infants"] = str(i)
    return p


def fare_edge_queries(rng, feeds_dir, name, n):
    """queries on the components gen.py filed boundary fares for (edge.json)"""
    import json as _json
    path = os.path.join(feeds_dir, name, "edge.json")
    if not os.path.exists(path):
        return []
    cases = _json.load(open(path))
    out = []
    for i in range(n):
        p = dict(cases[i % len(cases)]) if i < len(cases) else dict(rng.choice(cases))
        p["max_connections"] = str(rng.choice([0, 0, 1]))
        p["limit"] = "1000"
        if rng.random() < 0.5:
            party(rng, p)
        if rng.random() < 0.2:
            p["cabin"] = "economy"
        if rng.random() < 0.3:
            p["priced_only"] = "false"
        out.append(("fare-edge", p))
    return out


def pax_queries(rng, orc, n):
    legs = [L for L in orc.f.legs if L.stype in oracle.PASSENGER_TYPES]
    out = []
    for i in range(n):
        want = rng.choice([0, 0, 1])
        o, d, date = pick_od(rng, orc, legs, want)
        p = {"origin": o, "destination": d, "date": date.isoformat(), "max_connections": str(want)}
        party(rng, p)
        if rng.random() < 0.2:
            p["return_date"] = (date + dt.timedelta(days=rng.randint(0, 6))).isoformat()
        if rng.random() < 0.3:
            p["cabin"] = rng.choice(["economy", "business", "first", "premium_economy"])
        if rng.random() < 0.3:
            p["sort"] = rng.choice(["price", "duration", "departure"])
        if rng.random() < 0.3:
            p["priced_only"] = "false"
        out.append(("pax", p))
    return out


def big_queries(rng):
    out = []
    for o, d in [("RUN", "CDG"), ("CDG", "RUN"), ("MRU", "CDG"), ("DZA", "CDG"), ("MRU", "DZA"), ("TNR", "MRU"),
                 ("HAH", "MRU"), ("ZSE", "CDG")]:
        for date in ["2005-06-14", "2005-07-05", "2005-08-19", "2005-10-29"]:
            p = {"origin": o, "destination": d, "date": date, "max_connections": "2", "priced_only": "false",
                 "max_connection_minutes": "2880", "sort": rng.choice(["price", "duration", "departure"]),
                 "limit": str(rng.choice([1, 7, 50, 1000]))}
            if rng.random() < 0.5:
                p["return_date"] = (dt.date.fromisoformat(date) + dt.timedelta(days=rng.randint(0, 7))).isoformat()
            if rng.random() < 0.3:
                p["adults"], p["children"], p["infants"] = "2", "2", "1"
            out.append(("big", p))
    return out


def nyc_queries(rng, n, feeds):
    dests = Counter(L.arr for L in feeds.legs).most_common(60)
    dests = [d for d, _ in dests] + ["CHI", "HOU", "WAS", "LON", "DFW", "SFO"]
    carriers = sorted({L.carrier for L in feeds.legs})
    windows = [(dt.date(2013, 1, 1), 10), (dt.date(2013, 3, 6), 9), (dt.date(2013, 6, 28), 6),
               (dt.date(2013, 10, 30), 8), (dt.date(2013, 12, 28), 4)]
    out = []
    for i in range(n):
        r = rng.random()
        kind = "nyc-direct" if r < 0.55 else "nyc-metro" if r < 0.8 else "nyc-dst" if r < 0.93 else "nyc-roundtrip"
        o = "NYC" if kind == "nyc-metro" else rng.choice(["JFK", "LGA", "EWR", "NYC"])
        d = rng.choice(dests)
        if kind == "nyc-dst":
            date = rng.choice([dt.date(2013, 3, 10), dt.date(2013, 11, 3), dt.date(2013, 3, 9), dt.date(2013, 11, 2)])
        else:
            w = rng.choice(windows)
            date = w[0] + dt.timedelta(days=rng.randint(0, w[1] - 1))
        p = {"origin": o, "destination": d, "date": date.isoformat()}
        if rng.random() < 0.3:
            p["max_connections"] = str(rng.randint(0, 2))
        if kind == "nyc-roundtrip":
            p["return_date"] = (date + dt.timedelta(days=3)).isoformat()
        rand_filters(rng, p, carriers)
        out.append((kind, p))
    return out


QUIRKS = [  # fixtures README quirks, as searches (priced_only=false so schedule answers show)
    {"origin": "RUN", "destination": "DZA", "date": "2005-06-09", "max_connections": "0"},   # XX41 freight F
    {"origin": "DZA", "destination": "RUN", "date": "2005-06-09", "max_connections": "0"},   # XX42 freight overnight
    {"origin": "RUN", "destination": "DZA", "date": "2005-05-27", "max_connections": "0"},   # XX777A (C)
    {"origin": "DZA", "destination": "RUN", "date": "2005-05-27", "max_connections": "0"},   # XX777B
    {"origin": "RUN", "destination": "ZSE", "date": "2005-05-23"},                         # XX974Z
    {"origin": "ZSE", "destination": "RUN", "date": "2005-05-23"},                         # XX975Z
    {"origin": "SEA", "destination": "RUN", "date": "2005-05-22"},                         # XX3777 P
    {"origin": "CDG", "destination": "XCR", "date": "2005-06-19"},                         # XX9797 K
    {"origin": "DZA", "destination": "CDG", "date": "2005-10-29", "max_connections": "0"},   # XX975 DST
    {"origin": "RUN", "destination": "CDG", "date": "2005-10-29", "max_connections": "0"},
    {"origin": "RUN", "destination": "CDG", "date": "2005-10-30", "max_connections": "2"},
    {"origin": "CDG", "destination": "RUN", "date": "2005-06-14", "max_connections": "0"},   # XX974 leg 02 (not joined)
    {"origin": "CDG", "destination": "DZA", "date": "2005-06-14", "max_connections": "1"},
    {"origin": "RUN", "destination": "HAH", "date": "2005-06-14", "max_connections": "0"},   # XX945 3-leg through
    {"origin": "DZA", "destination": "MRS", "date": "2005-06-14", "max_connections": "0"},   # board mid-flight
    {"origin": "HAH", "destination": "MRS", "date": "2005-06-17", "max_connections": "1"},   # XX945 IVI02 via RUN
    {"origin": "RUN", "destination": "RUN", "date": "2005-06-14"},
    {"origin": "NOS", "destination": "RUN", "date": "2005-05-22", "max_connections": "0"},   # XX210 RUN-NOS-DZA-RUN
    {"origin": "RUN", "destination": "TNR", "date": "2005-07-02", "max_connections": "0"},   # XX663
    {"origin": "RUN", "destination": "DZA", "date": "2005-10-22", "max_connections": "0"},   # XX663 G
]

ERROR_CASES = [
    ({"destination": "CDG", "date": "2005-06-14"}, "origin"),
    ({"origin": "RUN", "date": "2005-06-14"}, "destination"),
    ({"origin": "RUN", "destination": "CDG"}, "date"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-13-01"}, "date"),
    ({"origin": "RUN", "destination": "CDG", "date": "14JUN05"}, "date"),
    ({"origin": "ZZZ", "destination": "CDG", "date": "2005-06-14"}, "origin"),
    ({"origin": "RUN", "destination": "R1", "date": "2005-06-14"}, "destination"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "adults": "0"}, "adults"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "adults": "10"}, "adults"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "adults": "x"}, "adults"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "children": "-1"}, "children"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "infants": "x"}, "infants"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "cabin": "coach"}, "cabin"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_connections": "3"}, "max_connections"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_connections": "-1"}, "max_connections"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "min_connection_minutes": "-5"}, "min_connection_minutes"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_connection_minutes": "abc"}, "max_connection_minutes"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "depart_after": "24:00"}, "depart_after"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "depart_before": "7:00"}, "depart_before"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_price": "-3"}, "max_price"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_price": "abc"}, "max_price"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "priced_only": "maybe"}, "priced_only"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "sort": "cheapest"}, "sort"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "limit": "0"}, "limit"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "limit": "1001"}, "limit"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "return_date": "2005-02-30"}, "return_date"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "bogus": "1"}, "bogus"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "carriers": "X"}, "carriers"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "origin ": "RUN"}, None),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "return_date": "2005-06-13"}, "return_date"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "adults": "1", "infants": "2"}, "infants"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "adults": "5", "children": "5"}, "children"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "min_connection_minutes": "100",
      "max_connection_minutes": "50"}, "min_connection_minutes"),
    ({"origin": "PAR", "destination": "CDG", "date": "2005-06-14"}, "destination"),
    ({"origin": "RUN", "destination": "CDG", "date": "2005-06-14", "max_connection_minutes": "2881"}, "max_connection_minutes"),
    ({"origin": "RUN", "destination": "RUN", "date": "2005-06-14"}, "destination"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", default="/tmp/oracle-feeds")
    ap.add_argument("--gna-url", default="http://127.0.0.1:19101")
    ap.add_argument("--nyc-url", default="http://127.0.0.1:19102")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--strict-metro", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="/tmp/oracle-report.json")
    ap.add_argument("--metro-variant", type=int, default=0, help="use gna-m feeds (extra metros RUZ, DZA)")
    ap.add_argument("--fare-airport-first", type=int, default=0,
                    help="1: mimic searchd's (diagnosed) reading of fares filed on a code that is both airport and metro")
    ap.add_argument("--tie-by-cabin", type=int, default=1,
                    help="0: equal-cost fares ordered (class, amount), the reading SEMANTICS.md gave before it named the cabin first")
    ap.add_argument("--utc-mode", type=int, default=0, help="oracle reads the U-mode twins in --feeds")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    F = a.feeds
    allres = {}
    if a.only in ("", "gna"):
        gs = F + "/gna_iata_sample_U.ssim" if a.utc_mode else FIX + "/gna_iata_sample.ssim"
        mf = F + "/gna-m/metros.csv" if a.metro_variant else FIX + "/metro_areas.csv"
        ff = F + "/gna-m/fares.csv" if a.metro_variant else F + "/gna/fares.csv"
        g = oracle.Feeds([gs], FIX + "/airports.csv", mf,
                         F + "/gna/mct.csv", ff, F + "/gna/availability.csv",
                         "2005-05-20T00:00:00Z", bool(a.fare_airport_first))
        c = Cmp("gna", a.gna_url, oracle.Oracle(g, bool(a.strict_metro), bool(a.tie_by_cabin)))
        for kind, p in gna_queries(rng, a.n, c.o):
            c.search(kind, p)
        for kind, p in edge_queries(rng, c.o, a.n // 3):
            c.search(kind, p)
        for kind, p in big_queries(rng):
            c.search(kind, p)
        for kind, p in fare_edge_queries(rng, F, "gna", a.n // 3):
            c.search(kind, p)
        for kind, p in pax_queries(rng, c.o, a.n // 4):
            c.search(kind, p)
        for p in QUIRKS:
            if p["origin"] == p["destination"]:
                c.error_case(p, "destination")
            else:
                c.search("quirk", dict(p, priced_only="false", limit="1000"))
        for params, want in ERROR_CASES:
            c.error_case(params, want)
        for i in range(12):
            o, d = rng.sample(["RUN", "MRU", "CDG", "DZA", "ZSE", "HAH", "TNR", "PAR"], 2)
            if {o, d} == {"CDG", "PAR"}:
                d = "RUN"
            f0 = dt.date(2005, 5, 22) + dt.timedelta(days=rng.randint(0, 140))
            p = {"origin": o, "destination": d, "from": f0.isoformat(),
                 "to": (f0 + dt.timedelta(days=rng.randint(0, 20))).isoformat()}
            if rng.random() < 0.5:
                p["max_connections"] = str(rng.randint(0, 2))
            if rng.random() < 0.4:
                p["adults"], p["children"] = "2", "1"
            if rng.random() < 0.3:
                p["cabin"] = "economy"
            c.calendar(p)
        c.error_case({"origin": "RUN", "destination": "CDG", "from": "2005-06-01", "to": "2005-08-10"}, "to",
                     path="/v1/calendar")
        allres["gna"] = c
    if a.only in ("", "nyc"):
        ns = F + "/nycflights13_2013_U.ssim" if a.utc_mode else FIX + "/nycflights13_2013.ssim"
        n = oracle.Feeds([ns], FIX + "/airports.csv", FIX + "/metro_areas.csv",
                         F + "/nyc/mct.csv", F + "/nyc/fares.csv", F + "/nyc/availability.csv",
                         "2013-01-01T00:00:00Z", bool(a.fare_airport_first))
        c = Cmp("nyc", a.nyc_url, oracle.Oracle(n, bool(a.strict_metro), bool(a.tie_by_cabin)))
        for kind, p in nyc_queries(rng, a.n, n):
            c.search(kind, p)
        for kind, p in fare_edge_queries(rng, F, "nyc", a.n // 3):
            c.search(kind, p)
        for i in range(6):
            d = rng.choice(["LAX", "BOS", "ATL", "ORD", "CHI", "SFO"])
            p = {"origin": rng.choice(["NYC", "JFK", "EWR"]), "destination": d, "from": "2013-03-01", "to": "2013-03-16"}
            c.calendar(p)
        allres["nyc"] = c
    report = {}
    for name, c in allres.items():
        print("==", name)
        for k in sorted(c.stats):
            print("  %-16s %-4s %d" % (k[0], k[1], c.stats[k]))
        for kind, fl in c.fails.items():
            for u, errs in fl[:8]:
                print("  FAIL", kind, u)
                for e in errs[:4]:
                    print("     ", e[:400])
        report[name] = {"stats": {"%s/%s" % k: v for k, v in c.stats.items()},
                        "fails": {k: v for k, v in c.fails.items()}}
    json.dump(report, open(a.out, "w"), indent=1, default=str)


if __name__ == "__main__":
    main()

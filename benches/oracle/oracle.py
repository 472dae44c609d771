#!/usr/bin/env python3
"""Independent reference implementation ("oracle") of searchd's search semantics.

Written from ../shared/spec/CONTRACT.md (sections 2-4), ssim-layout.md, the fixtures
README and the project's README/SEMANTICS "readings" only -- not from the Rust engine.
Standard library only.

Use as a module (see compare.py) or:
  python3 oracle.py --ssim F [--ssim F2] --airports A --metros M --mct C --fares F \
      --availability V --now 2013-01-01T00:00:00Z  origin=JFK destination=LAX date=2013-03-10 ...
"""
import bisect
import csv
import datetime as dt
import json
import sys
from collections import defaultdict
from zoneinfo import ZoneInfo

PASSENGER_TYPES = set("JSUQGBRCO")
CABINS = ["economy", "premium_economy", "business", "first"]
MONTHS = {m: i + 1 for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
EPOCH = dt.date(1970, 1, 1)


def ssim_date(s):
    return dt.date(2000 + int(s[5:7]), MONTHS[s[2:5]], int(s[0:2]))


def hhmm(s):
    return int(s[0:2]) * 60 + int(s[2:4])


def var_min(s):
    sign = -1 if s[0] == "-" else 1
    return sign * (int(s[1:3]) * 60 + int(s[3:5]))


def dvar(c):
    if c == " ":
        return None
    if c == "A":
        return -1
    return int(c)


def dmin(d):
    """minutes since epoch at 00:00 of date d"""
    return (d - EPOCH).days * 1440


def fmt_local(m):
    d = EPOCH + dt.timedelta(days=m // 1440)
    r = m % 1440
    return "%sT%02d:%02d" % (d.isoformat(), r // 60, r % 60)


def fmt_utc(m):
    return fmt_local(m) + ":00Z"


# --------------------------------------------------------------------------- SSIM


class Rec:
    __slots__ = ("suffix", "carrier", "number", "ivi", "seq", "stype", "pfrom", "pto",
                 "days", "freq", "dep", "std", "dvar_dep", "arr", "sta", "dvar_arr",
                 "aircraft", "dd", "da", "mode", "line")


def parse_ssim(path):
    recs = []
    mode = "L"
    valid_to = None
    with open(path, encoding="latin-1") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line or set(line) == {"0"}:
                continue
            t = line[0]
            if t == "2":
                mode = line[1]
                try:
                    valid_to = ssim_date(line[21:28])
                except Exception:
                    valid_to = None
                continue
            if t != "3":
                continue
            r = Rec()
            r.line = ln
            r.mode = mode
            r.suffix = line[1].strip()
            r.carrier = line[2:5].strip()
            r.number = int(line[5:9])
            ivi = int(line[9:11])
            ov = line[127] if len(line) > 127 else " "
            if ov.isdigit():
                ivi += int(ov) * 100
            r.ivi = ivi
            r.seq = int(line[11:13])
            r.stype = line[13]
            r.pfrom = ssim_date(line[14:21])
            if line[21:28] == "00XXX00":
                r.pto = valid_to or (r.pfrom + dt.timedelta(days=365))
            else:
                r.pto = ssim_date(line[21:28])
            r.days = {int(c) for c in line[28:35] if c.isdigit()}
            r.freq = line[35]
            r.dep = line[36:39]
            r.std = hhmm(line[39:43])
            r.dvar_dep = var_min(line[47:52])
            r.arr = line[54:57]
            r.sta = hhmm(line[61:65])
            r.dvar_arr = var_min(line[65:70])
            r.aircraft = line[72:75].strip()
            r.dd = dvar(line[192])
            r.da = dvar(line[193])
            recs.append(r)
    return recs


def group_flights(recs, warnings):
    """consecutive records join into a through flight when key matches, seq = prev+1 and
    departure station = previous arrival station (else: separate flight)."""
    flights = []
    seen = set()
    cur = None
    for r in recs:
        full = (r.suffix, r.carrier, r.number, r.ivi, r.seq, r.stype, r.pfrom, r.pto,
                tuple(sorted(r.days)), r.freq, r.dep, r.std, r.dvar_dep, r.arr, r.sta,
                r.dvar_arr, r.aircraft, r.dd, r.da)
        if full in seen:
            warnings.append("dup line %d" % r.line)
            continue
        seen.add(full)
        if (cur is not None and r.seq > 1 and cur[-1].seq == r.seq - 1
                and (cur[-1].suffix, cur[-1].carrier, cur[-1].number, cur[-1].ivi)
                == (r.suffix, r.carrier, r.number, r.ivi)
                and cur[-1].arr == r.dep):
            if (r.pfrom, r.pto, r.days) != (cur[0].pfrom, cur[0].pto, cur[0].days):
                warnings.append("joined leg with different period line %d" % r.line)
            cur.append(r)
        else:
            if r.seq > 1:
                warnings.append("non-joining leg line %d" % r.line)
            cur = [r]
            flights.append(cur)
    return flights


def flight_dates(r0):
    d = r0.pfrom
    week0 = r0.pfrom - dt.timedelta(days=r0.pfrom.weekday())
    while d <= r0.pto:
        if d.isoweekday() in r0.days:
            if r0.freq == "2":
                if ((d - week0).days // 7) % 2 == 0:
                    yield d
            else:
                yield d
        d += dt.timedelta(days=1)


class Leg:
    """one dated leg"""
    __slots__ = ("carrier", "number", "suffix", "fid", "idx", "dep", "arr", "dep_utc",
                 "arr_utc", "dep_off", "arr_off", "stype", "aircraft", "fdate", "dep_date",
                 "flight")

    @property
    def dep_local(self):
        return self.dep_utc + self.dep_off

    @property
    def arr_local(self):
        return self.arr_utc + self.arr_off


def expand(flights):
    legs_all = []
    dated_flights = []
    for fid, recs in enumerate(flights):
        for fd in flight_dates(recs[0]):
            legs = []
            prev_arr = None
            for i, r in enumerate(recs):
                base = dmin(fd)
                dd = r.dd if r.dd is not None else 0
                if r.mode == "U":
                    dep_utc = base + dd * 1440 + r.std
                else:
                    dep_utc = base + dd * 1440 + r.std - r.dvar_dep
                if r.dd is None and prev_arr is not None:
                    while dep_utc < prev_arr:
                        dep_utc += 1440
                da = r.da if r.da is not None else 0
                if r.mode == "U":
                    arr_utc = base + da * 1440 + r.sta
                else:
                    arr_utc = base + da * 1440 + r.sta - r.dvar_arr
                if r.da is None:
                    while arr_utc <= dep_utc:
                        arr_utc += 1440
                L = Leg()
                L.carrier, L.number, L.suffix = r.carrier, r.number, r.suffix
                L.fid, L.idx = fid, i
                L.dep, L.arr = r.dep, r.arr
                L.dep_utc, L.arr_utc = dep_utc, arr_utc
                L.dep_off, L.arr_off = r.dvar_dep, r.dvar_arr
                L.stype = r.stype
                L.aircraft = r.aircraft
                L.fdate = fd
                L.dep_date = EPOCH + dt.timedelta(days=(dep_utc + r.dvar_dep) // 1440)
                L.flight = legs
                legs.append(L)
                prev_arr = arr_utc
            dated_flights.append(legs)
            legs_all.extend(legs)
    return legs_all, dated_flights


# --------------------------------------------------------------------------- CSV feeds


def read_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def money(s):
    a, _, b = s.partition(".")
    b = (b + "00")[:2]
    return int(a) * 100 + int(b)


def parse_dow(s):
    if s == "":
        return set(range(1, 8))
    if len(s) == 7:
        return {i + 1 for i, c in enumerate(s) if c == str(i + 1)}
    return {int(c) for c in s}


class Fare:
    __slots__ = ("carrier", "origin", "destination", "basis", "cls", "cabin", "ptype",
                 "amount", "currency", "first", "last", "dow", "ap")


class Feeds:
    def __init__(self, ssims, airports, metros=None, mct=None, fares=None,
                 availability=None, now="2013-01-01T00:00:00Z", fare_airport_first=False):
        self.warnings = []
        recs = []
        for s in ssims:
            recs.extend(parse_ssim(s))
        self.flights = group_flights(recs, self.warnings)
        self.legs, self.dated_flights = expand(self.flights)
        self.country = {}
        self.tz = {}
        for row in read_csv(airports):
            self.country[row["iata"]] = row["country"]
            self.tz[row["iata"]] = row["tz"]
        self.metro = defaultdict(set)
        if metros:
            for row in read_csv(metros):
                self.metro[row["metro"]].add(row["iata"])
        self.mct = []
        if mct:
            for row in read_csv(mct):
                self.mct.append((row["station"], row["connection_type"], int(row["minutes"]),
                                 row["arrival_carrier"], row["departure_carrier"]))
        self.fares = defaultdict(list)  # (carrier, origin airport, dest airport) -> [Fare]
        if fares:
            for row in read_csv(fares):
                fa = Fare()
                fa.carrier = row["carrier"]
                fa.origin, fa.destination = row["origin"], row["destination"]
                fa.basis, fa.cls, fa.cabin = row["fare_basis"], row["booking_class"], row["cabin"]
                fa.ptype = row["passenger_type"]
                fa.amount = money(row["amount"])
                fa.currency = row["currency"]
                fa.first = dt.date.fromisoformat(row["first_travel_date"]) if row["first_travel_date"] else None
                fa.last = dt.date.fromisoformat(row["last_travel_date"]) if row["last_travel_date"] else None
                fa.dow = parse_dow(row["days_of_week"])
                fa.ap = int(row["advance_purchase_days"])
                ps = self.fare_place_set if fare_airport_first else self.place_set
                for o in ps(fa.origin):
                    for d in ps(fa.destination):
                        if o != d:
                            self.fares[(fa.carrier, o, d)].append(fa)
        self.avail = {}
        if availability:
            for row in read_csv(availability):
                self.avail[(row["carrier"], int(row["flight_number"]), row["date"],
                            row["origin"], row["booking_class"])] = int(row["seats"])
        self.now = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))
        self.today = self.now.date()
        # departures by airport, sorted by UTC; segments built on the fly
        self.by_airport = defaultdict(list)
        for L in self.legs:
            if L.stype in PASSENGER_TYPES:
                self.by_airport[L.dep].append(L)
        self.by_airport_key = {}
        for a, ls in self.by_airport.items():
            ls.sort(key=lambda L: L.dep_utc)
            self.by_airport_key[a] = [L.dep_utc for L in ls]

    # ------------------------------------------------------------------ places
    def place_set(self, code):
        s = set()
        if code in self.metro:
            s |= self.metro[code]
        if code in self.country:
            s.add(code)
        return s

    def query_sets(self, o, d):
        """origin/destination airport sets of a query (SEMANTICS.md, places): a code that is
        both a metro and an airport means the airport against another airport of its city"""
        O, D = self.place_set(o), self.place_set(d)
        if O & D:
            if d in self.metro and d in self.country:
                D = {a for a in D if a == d or a not in O}
            elif o in self.metro and o in self.country:
                O = {a for a in O if a == o or a not in D}
        return O, D

    def fare_place_set(self, code):
        """searchd/indexer behaviour (diagnosed): an airport code wins over a metro code"""
        return {code} if code in self.country else set(self.metro.get(code, ()))

    def is_known(self, code):
        return code in self.metro or code in self.country

    # ------------------------------------------------------------------ tz check
    def tz_mismatches(self, limit=10):
        out = []
        for L in self.legs:
            for ap, utc, off in ((L.dep, L.dep_utc, L.dep_off), (L.arr, L.arr_utc, L.arr_off)):
                z = ZoneInfo(self.tz[ap])
                t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=utc)
                real = int(t.astimezone(z).utcoffset().total_seconds() // 60)
                if real != off:
                    out.append((L.carrier, L.number, L.suffix, ap, fmt_utc(utc), off, real))
        return out

    # ------------------------------------------------------------------ MCT
    def domestic(self, a, b):
        return self.country.get(a) == self.country.get(b)

    def mct_minutes(self, station, arr_leg, dep_leg):
        t = ("D" if self.domestic(arr_leg.dep, arr_leg.arr) else "I") + \
            ("D" if self.domestic(dep_leg.dep, dep_leg.arr) else "I")
        best = None
        for st, ct, mins, ac, dc in self.mct:
            # A rule on a metro code (that is not also an airport code) applies at each of
            # its airports (CONTRACT 2: a metro code is accepted wherever an airport code is).
            on_metro = st not in self.country and station in self.metro.get(st, ())
            if st != "*" and st != station and not on_metro:
                continue
            if ct != "*" and ct != t:
                continue
            if ac and ac != arr_leg.carrier:
                continue
            if dc and dc != dep_leg.carrier:
                continue
            spec = (st != "*", (1 if ac else 0) + (1 if dc else 0), ct != "*", mins)
            if best is None or spec > best:
                best = spec
        return 60 if best is None else best[3]


# --------------------------------------------------------------------------- search

class Query:
    def __init__(self, **kw):
        self.origin = kw["origin"].upper()
        self.destination = kw["destination"].upper()
        self.date = dt.date.fromisoformat(kw["date"])
        self.return_date = dt.date.fromisoformat(kw["return_date"]) if kw.get("return_date") else None
        self.adults = int(kw.get("adults", 1))
        self.children = int(kw.get("children", 0))
        self.infants = int(kw.get("infants", 0))
        self.cabin = kw.get("cabin")
        self.max_connections = int(kw.get("max_connections", 1))
        self.min_conn = int(kw["min_connection_minutes"]) if "min_connection_minutes" in kw else None
        self.max_conn = int(kw.get("max_connection_minutes", 1440))
        self.carriers = set(kw["carriers"].split(",")) if kw.get("carriers") else None
        self.exclude = set(kw["exclude_carriers"].split(",")) if kw.get("exclude_carriers") else set()
        self.after = hhmm(kw["depart_after"].replace(":", "")) if kw.get("depart_after") else None
        self.before = hhmm(kw["depart_before"].replace(":", "")) if kw.get("depart_before") else None
        self.max_price = money(kw["max_price"]) if kw.get("max_price") is not None else None
        self.priced_only = kw.get("priced_only", "true") != "false"
        self.sort = kw.get("sort", "price")
        self.limit = int(kw.get("limit", 50))


class Oracle:
    def __init__(self, feeds, strict_metro_ends=True, tie_by_cabin=True):
        self.f = feeds
        # Equal component costs: SEMANTICS.md says "the first fare in fare order (class,
        # amount)"; True = searchd's diagnosed order (cabin, class, amount)
        self.tie_by_cabin = tie_by_cabin
        # README/SEMANTICS reading: no connection point / through stop may be one of the
        # query's origin or destination airports.  False = contract text only.
        self.strict_metro_ends = strict_metro_ends

    def carrier_ok(self, q, c):
        if q.carriers is not None and c not in q.carriers:
            return False
        return c not in q.exclude

    def segments_from(self, leg):
        """all segments boarding at this leg: lists of consecutive passenger legs"""
        fl = leg.flight
        out = []
        for j in range(leg.idx, len(fl)):
            if fl[j].stype not in PASSENGER_TYPES:
                break
            out.append(fl[leg.idx:j + 1])
        return out

    def slices(self, q, O, D, date, collect=None):
        f = self.f
        res = []
        forbidden_mid = (O | D) if self.strict_metro_ends else set()

        def extend(path, visited, conns):
            last = path[-1][-1]
            if collect is not None:
                collect.setdefault(last.arr, set()).add(len(path) - 1)
            if last.arr in D:
                res.append(list(path))
                if self.strict_metro_ends:
                    return  # reaching the destination ends the slice
            if conns == q.max_connections:
                return
            st = last.arr
            ls = f.by_airport.get(st)
            if not ls:
                return
            keys = f.by_airport_key[st]
            lo = bisect.bisect_left(keys, last.arr_utc)
            hi = bisect.bisect_right(keys, last.arr_utc + q.max_conn)
            for L in ls[lo:hi]:
                if not self.carrier_ok(q, L.carrier):
                    continue
                if L.flight is last.flight and L.idx == last.idx + 1:
                    continue  # own through legs
                gap = L.dep_utc - last.arr_utc
                mn = q.min_conn if q.min_conn is not None else f.mct_minutes(st, last, L)
                if gap < mn or gap > q.max_conn:
                    continue
                for seg in self.segments_from(L):
                    arrs = [x.arr for x in seg]
                    if any(a in visited for a in arrs):
                        break
                    if any(a in forbidden_mid for a in arrs[:-1]):
                        break
                    if arrs[-1] in O and self.strict_metro_ends:
                        break
                    path.append(seg)
                    extend(path, visited | set(arrs), conns + 1)
                    path.pop()

        for o in sorted(O):
            for L in f.by_airport.get(o, []):
                if L.dep_date != date:
                    continue
                if not self.carrier_ok(q, L.carrier):
                    continue
                lt = L.dep_local % 1440
                if q.after is not None and lt < q.after:
                    continue
                if q.before is not None and lt > q.before:
                    continue
                for seg in self.segments_from(L):
                    arrs = [x.arr for x in seg]
                    if o in arrs:
                        break
                    if any(a in forbidden_mid for a in arrs[:-1]):
                        break
                    if arrs[-1] in O and self.strict_metro_ends:
                        break
                    extend([seg], {o} | set(arrs), 0)
        return res

    # ------------------------------------------------------------------ pricing
    def fare_valid(self, fa, q, dep_date):
        if fa.first and dep_date < fa.first:
            return False
        if fa.last and dep_date > fa.last:
            return False
        if dep_date.isoweekday() not in fa.dow:
            return False
        if (dep_date - self.f.today).days < fa.ap:
            return False
        if q.cabin and fa.cabin != q.cabin:
            return False
        return True

    def seats(self, leg, cls):
        return self.f.avail.get((leg.carrier, leg.number, leg.dep_date.isoformat(), leg.dep, cls))

    def component_options(self, q, legs, carrier):
        """per currency: (cost, seats) of the component's chosen fare.  SEMANTICS.md: the
        cheapest valid ADT fare (with its CHD/INF companions of the same carrier, market,
        cabin, booking class and currency); equal costs: the first fare in fare order
        (cabin, class, amount).  Seats = fewest seats in that class over the component's legs."""
        o, d = legs[0].dep, legs[-1].arr
        dep_date = legs[0].dep_date
        fares = [fa for fa in self.f.fares.get((carrier, o, d), ()) if self.fare_valid(fa, q, dep_date)]
        seated = q.adults + q.children
        best = {}
        for fa in fares:
            if fa.ptype != "ADT":
                continue
            ss = [self.seats(L, fa.cls) for L in legs]
            if any(s is None or s < seated for s in ss):
                continue
            same = [g for g in fares if g.cls == fa.cls and g.cabin == fa.cabin
                    and g.currency == fa.currency]
            chd = [g.amount for g in same if g.ptype == "CHD"]
            inf = [g.amount for g in same if g.ptype == "INF"]
            cost = (q.adults * fa.amount + q.children * (min(chd) if chd else fa.amount)
                    + q.infants * (min(inf) if inf else 0))
            k = (cost, fa.cls, fa.amount) if not self.tie_by_cabin else (cost, CABINS.index(fa.cabin), fa.cls, fa.amount)
            if fa.currency not in best or k < best[fa.currency][0]:
                best[fa.currency] = (k, min(ss))
        return {c: (k[0], s) for c, (k, s) in best.items()}

    @staticmethod
    def partitions(n):
        if n == 0:
            yield []
            return
        for k in range(1, n + 1):
            for rest in Oracle.partitions(n - k):
                yield [(0, k)] + [(a + k, b + k) for a, b in rest]

    def price_slice_cur(self, q, segs):
        """per currency: (cost, set of seats_available the documented tie rules allow).
        A construction never mixes currencies; equal totals: fewer components; partitions
        with the same number of components are an undocumented tie (any of them)."""
        memo = {}
        per = {}  # cur -> (cost, ncomp, seats set)
        for part in self.partitions(len(segs)):
            opts = []
            ok = True
            for a, b in part:
                comp = segs[a:b]
                car = comp[0][0].carrier
                if any(x[0].carrier != car for x in comp):
                    ok = False
                    break
                if (a, b) not in memo:
                    memo[(a, b)] = self.component_options(q, [L for sg in comp for L in sg], car)
                opts.append(memo[(a, b)])
            if not ok or not opts:
                continue
            for cur in opts[0]:
                if not all(cur in o for o in opts):
                    continue
                cost = sum(o[cur][0] for o in opts)
                seats = min(o[cur][1] for o in opts)
                k = (cost, len(part))
                if cur not in per or k < per[cur][0]:
                    per[cur] = (k, {seats})
                elif k == per[cur][0]:
                    per[cur][1].add(seats)
        return {c: (k[0], s) for c, (k, s) in per.items()}

    @staticmethod
    def cheapest(per):
        """(cost, seats set, currency set) of the cheapest currency (amounts compared by
        value without conversion; equal values across currencies: the first currency code,
        SEMANTICS.md)"""
        if not per:
            return None
        m = min(v[0] for v in per.values())
        c = min(c for c, (cost, _) in per.items() if cost == m)
        return (m, set(per[c][1]), {c})

    def price_slice(self, q, segs):
        """returns (cost, set of seats_available, set of currencies) or None"""
        return self.cheapest(self.price_slice_cur(q, segs))

    # ------------------------------------------------------------------ top level
    def search(self, q, pruned_slices=None):
        f = self.f
        O, D = f.query_sets(q.origin, q.destination)
        out = self.slices(q, O, D, q.date)
        if q.return_date:
            out_items = [(s, self.price_slice_cur(q, s)) for s in out]
            inn = self.slices(q, D, O, q.return_date)
            in_items = [(s, self.price_slice_cur(q, s)) for s in inn]
            pairs = []
            for a in out_items:
                for b in in_items:
                    # The return leaves at least a connection's minimum after landing
                    # (searchd/SEMANTICS.md, round trips).
                    last, first = a[0][-1][-1], b[0][0][0]
                    mn = q.min_conn if q.min_conn is not None else f.mct_minutes(last.arr, last, first)
                    if first.dep_utc - last.arr_utc < mn:
                        continue
                    # priced in a currency both slices can be priced in (the cheapest such)
                    per = {c: (a[1][c][0] + b[1][c][0], {min(x, y) for x in a[1][c][1] for y in b[1][c][1]})
                           for c in a[1] if c in b[1]}
                    pairs.append(([a[0], b[0]], self.cheapest(per)))
            items = pairs
        else:
            items = [([s], self.price_slice(q, s)) for s in out]
        res = []
        for slices_, pr in items:
            if pr is None and q.priced_only:
                continue
            if q.max_price is not None and (pr is None or pr[0] > q.max_price):
                continue
            res.append(Itin(slices_, pr))
        return res

    def sort_key(self, q, it):
        dep = it.slices[0][0][0].dep_utc
        if q.sort == "price":
            return (0 if it.price is not None else 1, it.price[0] if it.price else 0, dep)
        if q.sort == "duration":
            return (it.duration(), dep)
        return (dep,)


class Itin:
    def __init__(self, slices_, price):
        self.slices = slices_
        self.price = price

    def duration(self):
        return sum(s[-1][-1].arr_utc - s[0][0].dep_utc for s in self.slices)

    def key(self):
        return tuple(tuple(seg_key(sg) for sg in s) for s in self.slices)


def seg_key(sg):
    L = sg[0]
    return (L.carrier, "%d%s" % (L.number, L.suffix), L.dep, sg[-1].arr, fmt_local(L.dep_local))


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssim", action="append", required=True)
    ap.add_argument("--airports", required=True)
    ap.add_argument("--metros")
    ap.add_argument("--mct")
    ap.add_argument("--fares")
    ap.add_argument("--availability")
    ap.add_argument("--now", default="2013-01-01T00:00:00Z")
    ap.add_argument("params", nargs="*")
    a = ap.parse_args(argv)
    feeds = Feeds(a.ssim, a.airports, a.metros, a.mct, a.fares, a.availability, a.now)
    q = Query(**dict(p.split("=", 1) for p in a.params))
    o = Oracle(feeds)
    res = o.search(q)
    res.sort(key=lambda it: o.sort_key(q, it))
    print(json.dumps({"total": len(res), "itineraries": [
        {"key": it.key(), "price": None if it.price is None else it.price[0] / 100,
         "seats": None if it.price is None else sorted(it.price[1])} for it in res[:q.limit]]},
        indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

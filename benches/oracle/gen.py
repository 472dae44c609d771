#!/usr/bin/env python3
"""Deterministic generator of fares, availability and MCT feeds for the two real SSIM
fixtures.  python3 gen.py OUTDIR  ->  OUTDIR/{gna,nyc}/{fares,availability,mct}.csv"""
import datetime as dt
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (only its SSIM parser, to know which legs exist)

FIX = os.environ.get("FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/fixtures"))
HDR_F = ("carrier,origin,destination,fare_basis,booking_class,cabin,passenger_type,amount,"
         "currency,first_travel_date,last_travel_date,days_of_week,advance_purchase_days,"
         "refundable,change_fee")
CLASSES = [("F", "first"), ("J", "business"), ("C", "business"), ("W", "premium_economy"),
           ("Y", "economy"), ("B", "economy"), ("M", "economy"), ("Q", "economy")]
DOWS = ["1234567", "1234567", "", "12345..", "     67", "1.3.5.7", "135", "67", " 2 4 6 "]


def amt(c):
    return "%d.%02d" % (c // 100, c % 100)


def fares_for(rng, carrier, o, d, cur, season, out, alt=None, rng2=None):
    ncls = rng.randint(1, 5)
    base = rng.randint(50, 900) * 100
    for cls, cabin in rng.sample(CLASSES, ncls):
        mult = {"first": 4, "business": 3, "premium_economy": 2, "economy": 1}[cabin]
        for k in range(rng.choice([1, 1, 1, 2])):
            a = base * mult + rng.randint(-40, 40) * 100 + rng.choice([0, 0, 50, 99])
            a = max(a, 1000)
            first = last = ""
            r = rng.random()
            if r < 0.3:
                s0, s1 = season
                span = (s1 - s0).days
                x = s0 + dt.timedelta(days=rng.randint(0, span))
                first = x.isoformat()
                last = (x + dt.timedelta(days=rng.randint(0, 60))).isoformat()
            elif r < 0.4:
                last = (season[0] + dt.timedelta(days=rng.randint(0, 120))).isoformat()
            dow = rng.choice(DOWS)
            ap = rng.choice([0, 0, 0, 3, 7, 14, 30])
            basis = "%s%s%dX" % (cls, "OW", k)
            ref = rng.choice(["true", "false"])
            fee = rng.choice(["", "50.00", "0.00"])
            out.append([carrier, o, d, basis, cls, cabin, "ADT", amt(a), cur, first, last, dow,
                        str(ap), ref, fee])
            if rng.random() < 0.5:
                # CHD fare: same class/cabin, sometimes different validity
                f2 = list(out[-1])
                f2[6] = "CHD"
                f2[3] = basis[:-1] + "CH"
                f2[7] = amt(a * rng.choice([50, 75, 90, 110]) // 100)
                if rng.random() < 0.3:
                    f2[11] = rng.choice(DOWS)
                if alt and rng2.random() < 0.15:
                    f2[8] = alt  # a CHD fare in another currency never prices the ADT one
                out.append(f2)
            if rng.random() < 0.4:
                f3 = list(out[-1] if out[-1][6] == "ADT" else out[-2])
                f3[6] = "INF"
                f3[3] = basis[:-1] + "IN"
                f3[7] = amt(a * rng.choice([0, 10, 25]) // 100)
                out.append(f3)


def dow_only(*dates):
    ds = {x.isoweekday() for x in dates}
    return "".join(str(i) if i in ds else "." for i in range(1, 8))


def edge_fares(rng, name, dated, today, avail_dates, cur, alt, rows, outdir, n=70):
    """Fares in class E (economy) at exact date boundaries for chosen components (a through
    segment of one flight boarded at leg i, left at leg j): advance purchase = days to the
    component's first local departure date (valid) / one more (invalid), first/last travel
    date = that date (valid) / one day off (invalid), days of week of the local date (valid)
    or of its UTC date or a later leg's local date (invalid).  Invalid fares are the cheaper
    ones, so accepting one shows in the price.  Writes OUTDIR/NAME/edge.json (queries) and
    returns the legs that need class-E availability."""
    import json
    cands = []
    for legs in dated:
        if not all(L.stype in oracle.PASSENGER_TYPES for L in legs):
            continue
        if avail_dates is not None and not avail_dates(legs[0].dep_date):
            continue
        for i in range(len(legs)):
            for j in range(i, len(legs)):
                if legs[i].dep != legs[j].arr:
                    cands.append((legs, i, j))
    # prefer components whose UTC date or later legs' dates differ from the local date
    def odd(c):
        legs, i, j = c
        L = legs[i]
        utc = oracle.EPOCH + dt.timedelta(days=L.dep_utc // 1440)
        return utc != L.dep_date or any(x.dep_date != L.dep_date for x in legs[i:j + 1])
    odd_c = [c for c in cands if odd(c)]
    pick = rng.sample(odd_c, min(len(odd_c), n // 2))
    pick += rng.sample(cands, min(len(cands), n - len(pick)))
    edge_legs, cases, seen = [], [], set()
    for legs, i, j in pick:
        L0, Lj = legs[i], legs[j]
        D = L0.dep_date
        key = (L0.carrier, L0.dep, Lj.arr, D)
        if key in seen:
            continue
        seen.add(key)
        days = (D - today).days
        if days < 1:
            continue
        utc = oracle.EPOCH + dt.timedelta(days=L0.dep_utc // 1440)
        later = [x.dep_date for x in legs[i + 1:j + 1] if x.dep_date != D]
        c = rng.choice([cur, cur, alt]) if alt else cur
        k = [0]

        def fare(ok, first="", last="", dow="", ap=0, ptype="ADT", cc=None):
            k[0] += 1
            a = rng.randint(100, 1500) if ok else rng.randint(1, 99)
            rows.append([L0.carrier, L0.dep, Lj.arr, "E%s%d%s" % (ptype[0], k[0], "V" if ok else "N"), "E",
                         "economy", ptype, amt(a), cc or c, first and first.isoformat(),
                         last and last.isoformat(), dow, str(ap), "false", ""])
        one = dt.timedelta(days=1)
        kinds = rng.sample(["ap", "ap1", "first", "first1", "last", "last1", "dow", "dowutc", "dowlater",
                            "chd", "inf", "tie", "tie"], rng.randint(2, 6))
        for kd in kinds:
            if kd == "tie":
                # equal amounts in two booking classes (seats_available follows the tie rule)
                fare(True)
                a = rng.randint(100, 400)
                rows[-1][7] = amt(a)
                cls, cabin = rng.choice(CLASSES)
                rows.append(rows[-1][:3] + [cls + "TIE", cls, cabin] + rows[-1][6:])
                continue
            if kd == "ap":
                fare(True, D - 3 * one, D + 3 * one, "", days)
            elif kd == "ap1":
                fare(False, D - 3 * one, D + 3 * one, "", days + 1)
            elif kd == "first":
                fare(True, D, D + 5 * one)
            elif kd == "first1":
                fare(False, D + one, D + 5 * one)
            elif kd == "last":
                fare(True, D - 5 * one, D)
            elif kd == "last1":
                fare(False, D - 5 * one, D - one)
            elif kd == "dow":
                fare(True, D - 9 * one, D + 9 * one, dow_only(D))
            elif kd == "dowutc" and utc != D:
                fare(False, D - 9 * one, D + 9 * one, dow_only(utc))
            elif kd == "dowlater" and later:
                fare(False, D - 9 * one, D + 9 * one, dow_only(*later))
            elif kd in ("chd", "inf"):
                # companion fares at the boundaries (valid or not), possibly in the other currency
                ok = rng.random() < 0.5
                cc = alt if (alt and rng.random() < 0.2) else c
                fare(True, D - 3 * one, D + 3 * one, "", days)  # an ADT fare to go with them
                rows[-1][7] = amt(rng.randint(100, 1500))
                fare(ok, D - 3 * one, D + 3 * one, "", days + (0 if ok else 1), "CHD" if kd == "chd" else "INF", cc)
        edge_legs.extend(legs)
        for dd in (D, D - one, D + one):
            cases.append({"origin": L0.dep, "destination": Lj.arr, "date": dd.isoformat()})
    with open(os.path.join(outdir, name, "edge.json"), "w") as f:
        json.dump(cases, f, indent=0)
    return edge_legs


def write(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def gen(outdir, name, ssim, cur, seed, avail_dates, metro_fares, mct_rows, alt=None,
        alt_carriers=(), today=None):
    rng = random.Random(seed)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    recs = oracle.parse_ssim(ssim)
    fl = oracle.group_flights(recs, [])
    legs, dated = oracle.expand(fl)
    season = (min(L.dep_date for L in legs), max(L.dep_date for L in legs))
    # markets: every (carrier, board, alight) of a through flight + 2-segment O&Ds at hubs
    markets = set()
    for recs_ in fl:
        for i in range(len(recs_)):
            for j in range(i, len(recs_)):
                if recs_[i].dep != recs_[j].arr:
                    markets.add((recs_[i].carrier, recs_[i].dep, recs_[j].arr))
    if name == "gna":
        sts = sorted({r.dep for r in recs} | {r.arr for r in recs})
        for a in sts:
            for b in sts:
                if a != b:
                    markets.add(("XX", a, b))
    rows = []
    # second currency (own random stream, so the first-currency fares stay as they were):
    # carriers in alt_carriers file only in `alt`; other markets: 15% only `alt`, 15% both
    rng2 = random.Random(seed + 100)
    for m in sorted(markets):
        if rng.random() < 0.12:
            continue  # unpriced market
        r2 = rng2.random() if alt else 1.0
        c0 = alt if (m[0] in alt_carriers or r2 < 0.15) else cur
        fares_for(rng, m[0], m[1], m[2], c0, season, rows, alt if c0 == cur else cur, rng2)
        if alt and 0.15 <= r2 < 0.3 and m[0] not in alt_carriers:
            fares_for(rng2, m[0], m[1], m[2], alt, season, rows, cur, rng2)
    for car, o, dd in metro_fares:
        fares_for(rng, car, o, dd, cur, season, rows)
    edge_legs = edge_fares(random.Random(seed + 200), name, dated, today, avail_dates, cur, alt, rows, outdir)
    write(os.path.join(d, "fares.csv"), HDR_F, rows)
    # availability
    av = []
    for L in legs:
        if avail_dates is not None and not avail_dates(L.dep_date):
            continue
        for cls, _ in CLASSES:
            if rng.random() < 0.25:
                continue  # no row: closed
            seats = rng.choice([0, 1, 2, 3, 4, 9, 9, 20, 50])
            av.append((L.carrier, L.number, L.dep_date.isoformat(), L.dep, cls, seats))
    rng_e = random.Random(seed + 300)
    for L in sorted(edge_legs, key=lambda L: (L.carrier, L.number, L.dep_date, L.dep)):
        av.append((L.carrier, L.number, L.dep_date.isoformat(), L.dep, "E", rng_e.choice([0, 1, 2, 3, 4, 9, 9, 9])))
    seen = set()
    with open(os.path.join(d, "availability.csv"), "w") as f:
        f.write("carrier,flight_number,date,origin,booking_class,seats\n")
        for r in sorted(av):
            k = r[:5]
            if k in seen:
                continue  # the feed key has no suffix (XX777A/B etc.)
            seen.add(k)
            num = ("%04d" % r[1]) if r[1] % 7 == 0 else str(r[1])  # some leading zeros
            f.write("%s,%s,%s,%s,%s,%d\n" % (r[0], num, r[2], r[3], r[4], r[5]))
    write(os.path.join(d, "mct.csv"), "station,connection_type,minutes,arrival_carrier,departure_carrier",
          [r.split(",") for r in mct_rows])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/oracle-feeds"
    gen(out, "gna", FIX + "/gna_iata_sample.ssim", "EUR", 1, None,
        [("XX", "PAR", "RUN"), ("XX", "RUN", "PAR"), ("XX", "PAR", "MRU")],
        ["RUN,DD,30,,", "RUN,DI,45,,", "RUN,ID,70,,", "RUN,II,95,,", "RUN,*,50,XX,XX",
         "RUN,II,40,XX,", "DZA,*,40,XX,", "DZA,*,55,,XX", "*,II,120,,", "*,*,75,,",
         "MRU,*,35,,", "CDG,*,90,,XX", "TNR,DD,25,,"], alt="GBP", today=dt.date(2005, 5, 20))

    def nyc_dates(d):
        return (dt.date(2013, 1, 1) <= d <= dt.date(2013, 1, 10)
                or dt.date(2013, 3, 6) <= d <= dt.date(2013, 3, 14)
                or dt.date(2013, 6, 28) <= d <= dt.date(2013, 7, 3)
                or dt.date(2013, 10, 30) <= d <= dt.date(2013, 11, 6)
                or dt.date(2013, 12, 28) <= d <= dt.date(2013, 12, 31))
    gen(out, "nyc", FIX + "/nycflights13_2013.ssim", "USD", 2, nyc_dates,
        [(c, "NYC", d) for c, d in [("AA", "LAX"), ("B6", "BOS"), ("DL", "ATL"), ("UA", "SFO"),
                                    ("UA", "ORD"), ("B6", "FLL"), ("EV", "DTW"), ("WN", "MDW")]]
        + [("AA", "NYC", "CHI"), ("UA", "NYC", "CHI"), ("UA", "NYC", "HOU"), ("UA", "NYC", "LON")],
        ["JFK,DD,60,,", "JFK,*,90,,", "LGA,*,45,,", "EWR,DD,50,UA,UA", "*,*,60,,"],
        alt="CAD", alt_carriers=("B6", "F9", "US"), today=dt.date(2013, 1, 1))



# ---------------------------------------------------------------- U-mode twin of a file
def to_utc_mode(src, dst):
    """Rewrite an L-mode SSIM file into the equivalent U-mode file (times in UTC, periods
    and days of operation as UTC dates of the flight's first departure, explicit date
    variations).  A correct reader must produce the same dated legs from both."""
    MON = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]

    def sd(d):
        return "%02d%s%02d" % (d.day, MON[d.month - 1], d.year % 100)

    lines = open(src, encoding="latin-1").read().split("\n")
    recs = oracle.parse_ssim(src)
    fl = oracle.group_flights(recs, [])
    by_line = {}
    for recs_ in fl:
        legs, _ = oracle.expand([recs_])
        if not legs:
            continue
        # one dated instance is enough: variations are constant within a record
        first = legs[:len(recs_)]
        fd = first[0].fdate
        utc_fd = oracle.EPOCH + dt.timedelta(days=first[0].dep_utc // 1440)
        shift = (utc_fd - fd).days
        for r, L in zip(recs_, first):
            by_line[r.line] = (shift, L, utc_fd)
    out = []
    for ln, line in enumerate(lines, 1):
        if line.startswith("2"):
            line = line[0] + "U" + line[2:]
        elif line.startswith("3") and ln in by_line:
            shift, L, utc_fd = by_line[ln]
            r = line
            pfrom = oracle.ssim_date(r[14:21]) + dt.timedelta(days=shift)
            pto = oracle.ssim_date(r[21:28]) + dt.timedelta(days=shift)
            days = "".join(str(((int(c) - 1 + shift) % 7) + 1) if c.isdigit() else " " for c in r[28:35])
            days = "".join(str(i + 1) if str(i + 1) in days else " " for i in range(7))
            base = oracle.dmin(utc_fd)
            std = (L.dep_utc - base)
            sta = (L.arr_utc - base)
            dvd, dva = std // 1440, sta // 1440

            def hm(m):
                m %= 1440
                return "%02d%02d" % (m // 60, m % 60)

            def dv(n):
                return "A" if n == -1 else str(n)
            r = (r[:14] + sd(pfrom) + sd(pto) + days + r[35:39] + hm(std) + hm(std) + r[47:57]
                 + hm(sta) + hm(sta) + r[65:192] + dv(dvd) + dv(dva) + r[194:])
            assert len(r) == len(line), (ln, len(r))
            line = r
        out.append(line)
    open(dst, "w", encoding="latin-1").write("\n".join(out))


def metro_variant(out):
    """gna-m: extra metros (RUZ = RUN+ZSE, a fake multi-airport city; DZA = DZA+HAH, a metro
    code that is also an airport code) and a few fares filed on those codes."""
    d = os.path.join(out, "gna-m")
    os.makedirs(d, exist_ok=True)
    src = open(FIX + "/metro_areas.csv").read().rstrip("\n")
    open(os.path.join(d, "metros.csv"), "w").write(src + "\nRUZ,RUN\nRUZ,ZSE\nDZA,DZA\nDZA,HAH\n")
    rows = open(os.path.join(out, "gna", "fares.csv")).read().rstrip("\n").split("\n")
    rng = random.Random(5)
    extra = []
    for o, dd in [("RUZ", "CDG"), ("CDG", "RUZ"), ("RUZ", "MRU"), ("MRU", "DZA"), ("DZA", "MRU"), ("DZA", "RUN"),
                  ("RUN", "DZA"), ("DZA", "CDG"), ("RUZ", "DZA")]:
        for cls, cabin in [("Y", "economy"), ("M", "economy"), ("J", "business")]:
            extra.append(",".join(["XX", o, dd, cls + "MET", cls, cabin, "ADT", "%d.00" % rng.randint(20, 90),
                                   "EUR", "", "", "", "0", "true", ""]))
    open(os.path.join(d, "fares.csv"), "w").write("\n".join(rows + extra) + "\n")


if __name__ == "__main__":
    main()
    to_utc_mode(FIX + "/gna_iata_sample.ssim", os.path.join(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oracle-feeds", "gna_iata_sample_U.ssim"))
    to_utc_mode(FIX + "/nycflights13_2013.ssim", os.path.join(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oracle-feeds", "nycflights13_2013_U.ssim"))
    metro_variant(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oracle-feeds")

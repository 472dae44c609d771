#!/usr/bin/env python3
"""Black-box audit of bookd's HTTP API against CONTRACT.md sections 1 and 4 and the
project's documented readings (README.md, bookd/README.md, bookd/openapi.json).

Run as root from anywhere:  python3 benches/bookd-audit/audit.py [--no-build]
Work dir: /tmp/bookd-audit/run (wiped at start).  Results: /tmp/bookd-audit/run/results.json
Ports: searchd 19201, bookd 19202 (QUIC 19203), bookd2 19205 (second instance, own state,
clock 2005-06-16T12:00Z, --hold-ttl-secs 3, snapshot without flight XX103).
Stdlib only.  Every process started here is stopped at the end (SIGTERM, then checked).
"""
import concurrent.futures as cf
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release")
DATA = os.path.join(ROOT, "fixtures", "data")
WORK = "/tmp/bookd-audit/run"
SEARCH = ("127.0.0.1", 19201)
BOOK = ("127.0.0.1", 19202)
BOOK2 = ("127.0.0.1", 19205)
QUIC = "127.0.0.1:19203"
NOW = "2005-06-01T08:00:00Z"
NOW2 = "2005-06-16T12:00:00Z"

RESULTS = []   # (section, name, ok, detail)
PROCS = []
BOOKD2_STARTED = [0.0]


def check(section, name, ok, detail=""):
    RESULTS.append({"section": section, "name": name, "ok": bool(ok), "detail": str(detail)[:600]})
    print(("PASS " if ok else "FAIL ") + f"[{section}] {name}" + ("" if ok else f"  -- {str(detail)[:400]}"),
          flush=True)
    return ok


# ------------------------------------------------------------------ HTTP

def http(addr, method, path, body=None, key=None, idem=None, headers=None, raw=None, ctype="application/json",
         timeout=60):
    h = {}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if idem is not None:
        h["Idempotency-Key"] = idem
    data = None
    if raw is not None:
        data = raw if isinstance(raw, bytes) else raw.encode()
    elif body is not None:
        data = json.dumps(body).encode()
    if data is not None and ctype:
        h["Content-Type"] = ctype
    h.update(headers or {})
    c = HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            js = json.loads(text)
        except ValueError:
            js = None
        return r.status, hdrs, js, text
    finally:
        c.close()


def err(js):
    try:
        return js["errors"][0]
    except (TypeError, KeyError, IndexError):
        return {}


def errshape_ok(js):
    e = err(js)
    return (isinstance(js, dict) and isinstance(js.get("errors"), list) and "code" in e and "title" in e
            and "detail" in e and "request_id" in (js.get("meta") or {}))


def search(q):
    s, _, js, t = http(SEARCH, "GET", "/v1/search?" + q)
    assert s == 200, (q, s, t)
    return js["data"]["itineraries"]


def first_offer(q, flight=None):
    for it in search(q):
        segs = [g for sl in it["slices"] for g in sl["segments"]]
        if flight is None or (len(segs) == 1 and segs[0]["flight_number"] == flight):
            return it
    raise RuntimeError(f"no offer for {q} {flight}")


def seats_avail(offer_id):
    s, _, js, t = http(SEARCH, "GET", "/v1/offers/" + offer_id)
    if s != 200:
        return None
    return js["data"].get("seats_available")


def wait_seats(offer_id, want, secs=3.0):
    end = time.time() + secs
    v = None
    while time.time() < end:
        v = seats_avail(offer_id)
        if v == want:
            return v
        time.sleep(0.05)
    return v


ADT = {"type": "adult", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1985-12-10"}
ADT2 = {"type": "adult", "given_name": "Charles", "family_name": "Babbage", "born_on": "1971-12-26"}
CHD = {"type": "child", "given_name": "Byron", "family_name": "King", "born_on": "2000-03-01"}
INF = {"type": "infant", "given_name": "Anne", "family_name": "King", "born_on": "2004-12-01"}
CONTACT = {"email": "ada@example.com"}


def hold_body(offer, pax=None):
    return {"offer_id": offer, "passengers": pax or [ADT], "contact": CONTACT}


def order_body(offer, price, token="tok_ok", pax=None):
    return {"offer_id": offer, "passengers": pax or [ADT], "contact": CONTACT,
            "payment": {"type": "card", "token": token}, "expected_total": price}


_idem_n = [0]
_idem_lock = threading.Lock()


def new_idem(p="k"):
    with _idem_lock:
        _idem_n[0] += 1
        return f"audit-{p}-{os.getpid()}-{_idem_n[0]}-{time.time_ns()}"


# ------------------------------------------------------------------ processes

def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def start(name, cmd):
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    PROCS.append((name, p))
    return p


def wait_ready(addr, name, secs=60):
    end = time.time() + secs
    while time.time() < end:
        try:
            s, _, _, _ = http(addr, "GET", "/readyz", timeout=2)
            if s == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready; see {WORK}/{name}.log")


def stop_all():
    for name, p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p in reversed(PROCS):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"{name} (pid {p.pid}) did not stop; killing it", flush=True)
            p.kill()
            p.wait()
    time.sleep(1)
    left = subprocess.run(["bash", "-c", "ps -eo pid,args | grep '[p]ostgres' | grep -- '/tmp/bookd-audit' || true"],
                          capture_output=True, text=True).stdout.strip()
    print("postgres processes left under /tmp/bookd-audit:", left or "none", flush=True)
    return left


def setup(build):
    if build:
        run(["flock", "/tmp/bench.lock", "cargo", "build", "--release", "-p", "indexer", "-p", "searchd",
             "-p", "bookd"], cwd=ROOT)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.chmod("/tmp/bookd-audit", 0o711)
    os.chmod(WORK, 0o711)   # the embedded cluster runs as the postgres user
    common = ["--airports", f"{DATA}/airports.csv", "--metros", f"{DATA}/metro_areas.csv",
              "--mct", f"{DATA}/small/mct.csv", "--fares", f"{DATA}/small/fares.csv",
              "--availability", f"{DATA}/small/availability.csv"]
    out = subprocess.DEVNULL
    run(["flock", "/tmp/bench.lock", f"{BIN}/indexer", "build", "--ssim", f"{DATA}/gna_iata_sample.ssim"]
        + common + ["--out", f"{WORK}/snap"], stdout=out, stderr=out)
    # Snapshot B: the same feeds without flight XX103 (its offers must be 410 offer_expired).
    with open(f"{DATA}/gna_iata_sample.ssim") as f, open(f"{WORK}/no103.ssim", "w") as g:
        g.writelines(line for line in f if not line.startswith("3 XX  103"))
    run(["flock", "/tmp/bench.lock", f"{BIN}/indexer", "build", "--ssim", f"{WORK}/no103.ssim"] + common
        + ["--lenient", "--out", f"{WORK}/snap-no103"], stdout=out, stderr=out)
    cl = f"{WORK}/cluster"
    run([f"{BIN}/bookd", "certs", "init", "--cluster-dir", cl], stdout=out)
    run([f"{BIN}/bookd", "certs", "issue", "--cluster-dir", cl, "--name", "node1"], stdout=out)
    # The main bookd: the demo's clock; rate limit raised so the load parts are not throttled
    # (429 is checked on bookd2, which keeps the defaults).
    start("bookd", [f"{BIN}/bookd", "--listen", "%s:%d" % BOOK, "--snapshot", f"{WORK}/snap",
                    "--state-dir", f"{WORK}/state", "--now", NOW, "--quic-listen", QUIC, "--cluster-dir", cl,
                    "--rate-limit", "100000", "--rate-burst", "100000"])
    BOOKD2_STARTED[0] = time.time()
    start("bookd2", [f"{BIN}/bookd", "--listen", "%s:%d" % BOOK2, "--snapshot", f"{WORK}/snap-no103",
                     "--state-dir", f"{WORK}/state2", "--now", NOW2, "--hold-ttl-secs", "3",
                     "--sweep-interval-ms", "500"])
    wait_ready(BOOK, "bookd")
    start("searchd", [f"{BIN}/searchd", "--snapshot", f"{WORK}/snap", "--listen", "%s:%d" % SEARCH, "--now", NOW,
                      "--bookd-quic", QUIC, "--cluster-dir", cl, "--name", "node1"])
    wait_ready(SEARCH, "searchd")
    wait_ready(BOOK2, "bookd2")
    keys = {}
    for name, st in [("audit", "state"), ("audit-b", "state"), ("audit-rev", "state"), ("audit2", "state2")]:
        keys[name] = subprocess.run([f"{BIN}/bookd", "keys", "create", "--name", name, "--state-dir",
                                     f"{WORK}/{st}"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([f"{BIN}/bookd", "keys", "revoke", "--name", "audit-rev", "--state-dir", f"{WORK}/state"],
                   check=True, capture_output=True)
    return keys


# ------------------------------------------------------------------ checks

def t_ops():
    S = "ops"
    for addr, nm in [(BOOK, "bookd")]:
        s, h, js, t = http(addr, "GET", "/healthz")
        check(S, f"{nm} /healthz 200", s == 200, (s, t))
        s, h, js, t = http(addr, "GET", "/readyz")
        check(S, f"{nm} /readyz 200", s == 200, (s, t))
        s, h, js, t = http(addr, "GET", "/metrics")
        check(S, f"{nm} /metrics 200 text/plain Prometheus", s == 200 and h.get("content-type", "").startswith(
            "text/plain") and "# TYPE bookd_holds_created_total counter" in t, (s, h.get("content-type")))


def t_auth(K):
    S = "auth"
    body = hold_body("x")
    s, h, js, t = http(BOOK, "POST", "/v1/holds", body)
    check(S, "no Authorization -> 401 unauthorized", s == 401 and err(js).get("code") == "unauthorized", (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", body, key="nope-not-a-key")
    check(S, "unknown key -> 401 unauthorized", s == 401 and err(js).get("code") == "unauthorized", (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/orders", key=K["audit-rev"])
    check(S, "revoked key -> 403 forbidden", s == 403 and err(js).get("code") == "forbidden", (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/orders", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    check(S, "Basic auth -> 401", s == 401, (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/orders", headers={"Authorization": "bearer " + K["audit"]})
    check(S, "lower-case scheme `bearer KEY` accepted (RFC 7235: scheme is case-insensitive) [minor]",
          s == 200, (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/orders/ord_x")
    check(S, "GET /v1/orders/{id} without key -> 401 (error shape)", s == 401 and errshape_ok(js), (s, t))


def t_hold_ok(K, offer):
    S = "holds"
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(offer["id"]), key=K["audit"])
    d = (js or {}).get("data") or {}
    ok = (s == 201 and d.get("status") == "held" and str(d.get("id", "")).startswith("hld_")
          and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", d.get("expires_at", ""))
          and d.get("price") == offer["price"] and isinstance(d.get("order"), dict)
          and "request_id" in js.get("meta", {}))
    check(S, "201 shape: id, status held, expires_at (RFC3339 Z), price == offer price, order", ok, (s, t))
    o = d.get("order") or {}
    check(S, "hold.order has offer_id, segments, passengers, contact, price",
          all(k in o for k in ("offer_id", "segments", "passengers", "contact", "price")), o)
    return d


def t_validation(K, offer):
    S = "validation"
    oid = offer["id"]
    good = hold_body(oid)
    cases = [
        ("missing offer_id", {"passengers": [ADT], "contact": CONTACT}, "offer_id"),
        ("missing passengers", {"offer_id": oid, "contact": CONTACT}, "passengers"),
        ("missing contact", {"offer_id": oid, "passengers": [ADT]}, "contact"),
        ("offer_id number", {**good, "offer_id": 123}, "offer_id"),
        ("offer_id garbage", {**good, "offer_id": "zz-not-an-offer"}, "offer_id"),
        ("offer_id bad checksum", {**good, "offer_id": oid[:-1] + ("0" if oid[-1] != "0" else "1")}, "offer_id"),
        ("passengers not array", {**good, "passengers": {"type": "adult"}}, "passengers"),
        ("passengers empty", {**good, "passengers": []}, "passengers"),
        ("passenger not object", {**good, "passengers": ["adult"]}, "passengers[0]"),
        ("missing type", {**good, "passengers": [{k: v for k, v in ADT.items() if k != "type"}]},
         "passengers[0].type"),
        ("unknown passenger type", {**good, "passengers": [{**ADT, "type": "senior"}]}, "passengers[0].type"),
        ("type wrong JSON type", {**good, "passengers": [{**ADT, "type": 1}]}, "passengers[0].type"),
        ("empty given_name", {**good, "passengers": [{**ADT, "given_name": ""}]}, "passengers[0].given_name"),
        ("blank given_name", {**good, "passengers": [{**ADT, "given_name": "   "}]}, "passengers[0].given_name"),
        ("empty family_name", {**good, "passengers": [{**ADT, "family_name": ""}]}, "passengers[0].family_name"),
        ("65-char family_name", {**good, "passengers": [{**ADT, "family_name": "A" * 65}]},
         "passengers[0].family_name"),
        ("digits in name", {**good, "passengers": [{**ADT, "given_name": "R2D2"}]}, "passengers[0].given_name"),
        ("missing born_on", {**good, "passengers": [{k: v for k, v in ADT.items() if k != "born_on"}]},
         "passengers[0].born_on"),
        ("born_on bad format", {**good, "passengers": [{**ADT, "born_on": "10/12/1985"}]}, "passengers[0].born_on"),
        ("born_on impossible date", {**good, "passengers": [{**ADT, "born_on": "1985-02-30"}]},
         "passengers[0].born_on"),
        ("born_on number", {**good, "passengers": [{**ADT, "born_on": 19851210}]}, "passengers[0].born_on"),
        ("born_on in the future", {**good, "passengers": [{**ADT, "born_on": "2005-07-01"}]},
         "passengers[0].born_on"),
        ("adult aged 5 (born 2000)", {**good, "passengers": [{**ADT, "born_on": "2000-01-01"}]},
         "passengers[0].born_on"),
        ("pax count differs from offer (2 adults on a 1-adult offer)", {**good, "passengers": [ADT, ADT2]},
         "passengers"),
        ("infant on a 1-adult offer (infants>adults not offered)", {**good, "passengers": [INF]}, "passengers"),
        ("10 passengers", {**good, "passengers": [ADT] * 10}, "passengers"),
        ("contact not object", {**good, "contact": "ada@example.com"}, "contact"),
        ("missing email", {**good, "contact": {}}, "contact.email"),
        ("bad email (no @)", {**good, "contact": {"email": "ada.example.com"}}, "contact.email"),
        ("bad email (no TLD)", {**good, "contact": {"email": "ada@example"}}, "contact.email"),
        ("bad email (space)", {**good, "contact": {"email": "a da@example.com"}}, "contact.email"),
        ("email number", {**good, "contact": {"email": 5}}, "contact.email"),
        ("body is an array", [good], "body"),
    ]
    for name, body, field in cases:
        s, h, js, t = http(BOOK, "POST", "/v1/holds", body, key=K["audit"])
        e = err(js)
        check(S, f"hold {name} -> 400 naming {field}",
              s == 400 and (e.get("source") or {}).get("parameter") == field and errshape_ok(js), (s, t))
    raws = [("invalid JSON", b'{"offer_id": "x",', "application/json", 400, "body"),
            ("trailing garbage", json.dumps(good).encode() + b"xx", "application/json", 400, "body"),
            ("not UTF-8", b'{"offer_id": "\xff"}', "application/json", 400, "body"),
            ("oversize body (70 KiB)", json.dumps({**good, "pad": "x" * 70000}).encode(), "application/json", 413,
             None)]
    for name, raw, ct, want, field in raws:
        s, h, js, t = http(BOOK, "POST", "/v1/holds", raw=raw, ctype=ct, key=K["audit"])
        ok = s == want and errshape_ok(js) and (field is None or (err(js).get("source") or {}).get("parameter") == field)
        check(S, f"hold {name} -> {want}" + (f" naming {field}" if field else ""), ok, (s, t))
    # Wrong content type with an otherwise valid body: the contract's API is JSON; a JSON API
    # (Duffel, Amadeus) answers 415/400. Use an offer of a different flight so no seat matters.
    s, h, js, t = http(BOOK, "POST", "/v1/holds", raw=json.dumps(good), ctype="text/plain", key=K["audit"])
    check(S, "hold with Content-Type: text/plain -> 400/415 (not 201)", s in (400, 415), (s, t[:200]))
    if s == 201:
        RESULTS[-1]["detail"] += " (hold made)"
    # orders
    ob = order_body(oid, offer["price"])
    ocases = [
        ("no hold_id nor offer_id", {"payment": ob["payment"]}, "hold_id"),
        ("missing payment", {k: v for k, v in ob.items() if k != "payment"}, "payment"),
        ("payment.type not card", {**ob, "payment": {"type": "cash", "token": "tok_ok"}}, "payment.type"),
        ("missing payment.token", {**ob, "payment": {"type": "card"}}, "payment.token"),
        ("payment.token number", {**ob, "payment": {"type": "card", "token": 7}}, "payment.token"),
        ("expected_total not object", {**ob, "expected_total": "180.00"}, "expected_total"),
        ("expected_total amount number", {**ob, "expected_total": {"amount": 180, "currency": "EUR"}},
         "expected_total.amount"),
        ("expected_total amount 3 decimals", {**ob, "expected_total": {"amount": "180.001", "currency": "EUR"}},
         "expected_total.amount"),
        ("expected_total negative", {**ob, "expected_total": {"amount": "-1.00", "currency": "EUR"}},
         "expected_total.amount"),
        ("expected_total bad currency", {**ob, "expected_total": {"amount": "180.00", "currency": "eur"}},
         "expected_total.currency"),
        ("hold_id and offer_id", {**ob, "hold_id": "hld_abc"}, "offer_id"),
        ("hold_id malformed", {"hold_id": "xyz", "payment": ob["payment"]}, "hold_id"),
        ("instant order bad email", {**ob, "contact": {"email": "x@"}}, "contact.email"),
        ("instant order unknown pax type", {**ob, "passengers": [{**ADT, "type": "ADT"}]}, "passengers[0].type"),
    ]
    for name, body, field in ocases:
        s, h, js, t = http(BOOK, "POST", "/v1/orders", body, key=K["audit"])
        check(S, f"order {name} -> 400 naming {field}",
              s == 400 and (err(js).get("source") or {}).get("parameter") == field and errshape_ok(js), (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": "hld_doesnotexist", "payment": ob["payment"]},
                       key=K["audit"])
    check(S, "order from unknown hold -> 404", s == 404 and errshape_ok(js), (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", raw="", ctype="application/json", key=K["audit"])
    check(S, "hold with empty body -> 400", s == 400, (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", good, key=K["audit"], idem="")
    check(S, "empty Idempotency-Key header -> 400 naming Idempotency-Key",
          s == 400 and (err(js).get("source") or {}).get("parameter") == "Idempotency-Key", (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", good, key=K["audit"], idem="k" * 256)
    check(S, "256-char Idempotency-Key -> 400", s == 400, (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/nothing", key=K["audit"])
    check(S, "unknown endpoint -> 404 error shape", s == 404 and errshape_ok(js), (s, t))
    s, h, js, t = http(BOOK, "DELETE", "/v1/orders", key=K["audit"])
    check(S, "DELETE /v1/orders -> 405", s == 405, (s, t))


def t_orders(K, y103):
    S = "orders"
    # XX109 MRU->RUN 2005-06-16: Y 180 EUR (YFLEX refundable), 5 seats
    off = first_offer("origin=MRU&destination=RUN&date=2005-06-16&max_connections=0", "109")
    oid, price = off["id"], off["price"]
    base = seats_avail(oid)
    check(S, "searchd sees XX109 Y with 5 seats before", base == 5, base)
    # from a hold
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(oid), key=K["audit"])
    hid = js["data"]["id"] if s == 201 else None
    check(S, "hold XX109 -> 201", s == 201, (s, t))
    v = wait_seats(oid, base - 1)
    check(S, "hold takes a seat (searchd live seats 5 -> 4)", v == base - 1, v)
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid, "payment": {"type": "card", "token": "tok_ok"},
                                                    "expected_total": price}, key=K["audit"])
    d = (js or {}).get("data") or {}
    check(S, "order from hold -> 201 confirmed with booking_reference, hold_id, price",
          s == 201 and d.get("status") == "confirmed" and d.get("booking_reference") and d.get("hold_id") == hid
          and d.get("price") == price and str(d.get("id", "")).startswith("ord_"), (s, t))
    ord1 = d.get("id")
    v = wait_seats(oid, base - 1)
    check(S, "ordering a hold does not take a second seat (still 4)", v == base - 1, v)
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid, "payment": {"type": "card", "token": "tok_ok"}},
                       key=K["audit"])
    check(S, "ordering the same hold again -> 409 hold_already_ordered",
          s == 409 and err(js).get("code") == "hold_already_ordered", (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid, "payment": {"type": "card", "token": "tok_ok"}},
                       key=K["audit-b"])
    check(S, "another key ordering my hold -> 404", s == 404, (s, t))
    # instant
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(oid, price), key=K["audit"])
    d = (js or {}).get("data") or {}
    check(S, "instant order from offer -> 201 confirmed", s == 201 and d.get("status") == "confirmed"
          and d.get("booking_reference"), (s, t))
    ord2 = d.get("id")
    v = wait_seats(oid, base - 2)
    check(S, "instant order takes a seat (4 -> 3)", v == base - 2, v)
    # GET
    s, h, js, t = http(BOOK, "GET", f"/v1/orders/{ord2}", key=K["audit"])
    check(S, "GET /v1/orders/{id} -> 200 same order", s == 200 and js["data"]["id"] == ord2
          and js["data"]["status"] == "confirmed" and js["data"]["passengers"][0]["family_name"] == "Lovelace", (s, t))
    s, h, js, t = http(BOOK, "GET", f"/v1/orders/{ord2}", key=K["audit-b"])
    check(S, "GET another key's order -> 404", s == 404, (s, t))
    s, h, js, t = http(BOOK, "GET", "/v1/orders/ord_doesnotexist", key=K["audit"])
    check(S, "GET unknown order -> 404", s == 404 and errshape_ok(js), (s, t))
    # expected_total mismatch
    wrong = {"amount": "179.99", "currency": "EUR"}
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(oid, wrong), key=K["audit"])
    check(S, "instant order with wrong expected_total -> 409 price_changed with meta.price",
          s == 409 and err(js).get("code") == "price_changed" and (err(js).get("meta") or {}).get("price") == price,
          (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(oid), key=K["audit"])
    hid2 = js["data"]["id"]
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid2, "payment": {"type": "card", "token": "tok_ok"},
                                                    "expected_total": {"amount": "180.00", "currency": "USD"}},
                       key=K["audit"])
    check(S, "hold order with wrong expected_total currency -> 409 price_changed",
          s == 409 and err(js).get("code") == "price_changed", (s, t))
    v = wait_seats(oid, base - 3)
    check(S, "the hold still holds its seat after the refused order (3 -> 2)", v == base - 3, v)
    # payments: decline, error, slow (on XX103 Y, 9 seats, so XX109's 5 are not exhausted)
    oid, price = y103["id"], y103["price"]
    for tok, want_s, want_c in [("tok_decline", 402, "payment_declined"), ("tok_error", 502, "order_not_created"),
                                ("tok_ok", 201, None), ("tok_slow", 502, "order_not_created"), ("tok_ok", 201, None)]:
        before = seats_avail(oid)
        t0 = time.time()
        s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(oid, price, tok), key=K["audit"], idem=new_idem(tok))
        dt = time.time() - t0
        ok = s == want_s and (want_c is None or err(js).get("code") == want_c)
        check(S, f"{tok} -> {want_s} {want_c or ''} ({dt:.1f}s)", ok, (s, t))
        if want_c:
            v = wait_seats(oid, before)
            check(S, f"{tok}: nothing kept, seats back ({before})", v == before, (before, v))
        else:
            wait_seats(oid, before - 1)
    # failed orders are not listed and 404 (README)
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(oid, price, "tok_decline"), key=K["audit"])
    s2, h, js2, t2 = http(BOOK, "GET", "/v1/orders?limit=200", key=K["audit"])
    ids = [o["id"] for o in js2["data"]]
    check(S, "declined orders are not listed", all(o["status"] != "failed" for o in js2["data"]), ids)
    # hold path, declined: the hold keeps its seat (bookd/README.md), and another card pays it
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(oid), key=K["audit"])
    hid3 = js["data"]["id"]
    time.sleep(0.5)   # let the hold's own invalidation reach searchd first
    before = seats_avail(oid)
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid3, "payment": {"type": "card",
                                                                                 "token": "tok_decline"}},
                       key=K["audit"])
    check(S, "order from hold, declined -> 402", s == 402 and err(js).get("code") == "payment_declined", (s, t))
    time.sleep(0.5)
    v = seats_avail(oid)
    check(S, "order from hold declined: the hold keeps its seat", v == before, (before, v))
    s, h, js, t = http(BOOK, "GET", f"/v1/holds/{hid3}", key=K["audit"])
    check(S, "order from hold declined: the hold is held again", s == 200 and js["data"]["status"] == "held", (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/orders", {"hold_id": hid3, "payment": {"type": "card", "token": "tok_ok"}},
                       key=K["audit"])
    check(S, "re-ordering a hold whose order was declined -> 201", s == 201, (s, t))
    # release: the seat is back on sale at once
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(oid), key=K["audit"])
    hid4 = js["data"]["id"]
    time.sleep(0.5)
    before = seats_avail(oid)
    s, h, js, t = http(BOOK, "POST", f"/v1/holds/{hid4}/cancel", {}, key=K["audit"])
    check(S, "releasing a hold -> 200 released", s == 200 and js["data"]["status"] == "released", (s, t))
    v = wait_seats(oid, before + 1)
    check(S, "a released hold's seat is back on sale", v == before + 1, (before, v))
    return {"refundable_order": ord1, "offer": off, "order2": ord2}


def t_cancel(K, ctx):
    S = "cancel"
    off = ctx["offer"]
    oid = off["id"]
    s, h, js, t = http(BOOK, "GET", f"/v1/orders/{ctx['refundable_order']}", key=K["audit"])
    before = seats_avail(oid)
    s, h, js, t = http(BOOK, "POST", f"/v1/orders/{ctx['refundable_order']}/cancel", key=K["audit-b"])
    check(S, "cancelling another key's order -> 404", s == 404, (s, t))
    s, h, js, t = http(BOOK, "POST", f"/v1/orders/{ctx['refundable_order']}/cancel", key=K["audit"])
    d = (js or {}).get("data") or {}
    check(S, "cancel refundable (YFLEX) -> 200 cancelled, refund_amount = price",
          s == 200 and d.get("status") == "cancelled" and d.get("refund_amount") == off["price"], (s, t))
    v = wait_seats(oid, before + 1)
    check(S, "cancel returns the seat to sale (searchd live seats +1)", v == before + 1, (before, v))
    s, h, js, t = http(BOOK, "POST", f"/v1/orders/{ctx['refundable_order']}/cancel", key=K["audit"])
    check(S, "cancelling twice -> 200 cancelled, no second seat", s == 200 and js["data"]["status"] == "cancelled",
          (s, t))
    v = wait_seats(oid, before + 1, 0.5)
    check(S, "second cancel does not return another seat", v == before + 1, (before, v))
    # non-refundable: XX102 RUN->MRU 2005-06-17 K KPROMO 89.50 (refundable false), 2 seats
    off2 = first_offer("origin=RUN&destination=MRU&date=2005-06-17&max_connections=0", "102")
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(off2["id"], off2["price"]), key=K["audit"])
    o2 = js["data"]["id"] if s == 201 else None
    check(S, "order non-refundable KPROMO -> 201", s == 201, (s, t))
    s, h, js, t = http(BOOK, "POST", f"/v1/orders/{o2}/cancel", key=K["audit"], idem=new_idem("c"))
    d = (js or {}).get("data") or {}
    check(S, "cancel non-refundable -> refund_amount 0.00",
          s == 200 and (d.get("refund_amount") or {}).get("amount") in ("0.00",), (s, t))
    s, h, js, t = http(BOOK, "POST", "/v1/orders/ord_nope/cancel", key=K["audit"])
    check(S, "cancel unknown order -> 404", s == 404, (s, t))


def t_idempotency(K):
    S = "idempotency"
    # XX975 RUN->CDG 2005-06-16 Y 980 (9 seats)
    off = first_offer("origin=RUN&destination=CDG&date=2005-06-16&max_connections=0", "975")
    oid, price = off["id"], off["price"]
    for path, body in [("/v1/holds", hold_body(oid)), ("/v1/orders", order_body(oid, price))]:
        k = new_idem()
        before = seats_avail(oid)
        r1 = http(BOOK, "POST", path, body, key=K["audit"], idem=k)
        r2 = http(BOOK, "POST", path, body, key=K["audit"], idem=k)
        check(S, f"{path}: same key+body -> same status and body", r1[0] == 201 and r1[0] == r2[0]
              and r1[2] == r2[2], (r1[0], r2[0], r1[3][:150], r2[3][:150]))
        check(S, f"{path}: replay carries Idempotent-Replayed: true", r2[1].get("idempotent-replayed") == "true",
              r2[1])
        v = wait_seats(oid, before - 1)
        time.sleep(0.2)
        v = seats_avail(oid)
        check(S, f"{path}: one effect only (one seat taken)", v == before - 1, (before, v))
        body2 = dict(body, contact={"email": "other@example.com"})
        r3 = http(BOOK, "POST", path, body2, key=K["audit"], idem=k)
        check(S, f"{path}: same key, different body -> 409/422 with a clear code", r3[0] in (409, 422)
              and err(r3[2]).get("code") == "idempotency_key_reused", (r3[0], r3[3]))
        r4 = http(BOOK, "POST", path, body2, key=K["audit-b"], idem=k)
        check(S, f"{path}: same key under another API key is independent -> 201", r4[0] == 201, (r4[0], r4[3]))
        # same JSON, keys reordered / whitespace: same request
        raw = json.dumps(dict(reversed(list(body.items()))), indent=2)
        r5 = http(BOOK, "POST", path, raw=raw, key=K["audit"], idem=k)
        check(S, f"{path}: same body re-serialised (key order, whitespace) -> replay", r5[0] == 201
              and r5[2] == r1[2], (r5[0], r5[3][:200]))
    # key used on a different endpoint
    k = new_idem()
    r1 = http(BOOK, "POST", "/v1/holds", hold_body(oid), key=K["audit"], idem=k)
    r2 = http(BOOK, "POST", "/v1/orders", order_body(oid, price), key=K["audit"], idem=k)
    check(S, "same key on another endpoint -> 422 idempotency_key_reused", r2[0] == 422, (r2[0], r2[3][:200]))
    # errors are replayed too
    k = new_idem()
    r1 = http(BOOK, "POST", "/v1/orders", order_body(oid, price, "tok_decline"), key=K["audit"], idem=k)
    r2 = http(BOOK, "POST", "/v1/orders", order_body(oid, price, "tok_decline"), key=K["audit"], idem=k)
    check(S, "402 replayed identically", r1[0] == 402 and r2[0] == 402 and r1[2] == r2[2], (r1[3], r2[3]))
    # a cancel with a key
    r = http(BOOK, "POST", "/v1/orders", order_body(oid, price), key=K["audit"])
    ordid = r[2]["data"]["id"]
    k = new_idem()
    c1 = http(BOOK, "POST", f"/v1/orders/{ordid}/cancel", key=K["audit"], idem=k)
    c2 = http(BOOK, "POST", f"/v1/orders/{ordid}/cancel", key=K["audit"], idem=k)
    check(S, "cancel with key replayed identically", c1[0] == 200 and c1[2] == c2[2]
          and c2[1].get("idempotent-replayed") == "true", (c1[0], c2[0]))
    # concurrent duplicates
    for path, mk in [("/v1/holds", lambda: hold_body(oid)), ("/v1/orders", lambda: order_body(oid, price))]:
        k = new_idem("conc")
        before = seats_avail(oid)
        with cf.ThreadPoolExecutor(16) as ex:
            rs = list(ex.map(lambda _: http(BOOK, "POST", path, mk(), key=K["audit"], idem=k), range(16)))
        ids = {(r[2] or {}).get("data", {}).get("id") for r in rs if r[0] == 201}
        sts = sorted(r[0] for r in rs)
        time.sleep(0.3)
        v = seats_avail(oid)
        check(S, f"{path}: 16 concurrent duplicates -> all 201 with one id, one seat taken",
              sts == [201] * 16 and len(ids) == 1 and v == before - 1, (sts, len(ids), before, v))


def t_overbooking(K):
    S = "overbooking"
    # XX102 RUN->MRU 2005-06-16: M 4 seats (120 EUR), Y 9 seats (180 EUR)
    offers = {}
    for n in (1, 2, 3):
        offers[n] = first_offer(f"origin=RUN&destination=MRU&date=2005-06-16&max_connections=0&adults={n}", "102")
    check(S, "XX102 06-16 priced in M (4 seats) before", all(o["fares"][0]["booking_class"] == "M"
                                                             for o in offers.values()),
          [(n, o["fares"][0]["booking_class"], o["price"]) for n, o in offers.items()])
    pax = {1: [ADT], 2: [ADT, ADT2], 3: [ADT, ADT2, {**ADT2, "given_name": "Mary"}]}
    jobs = []
    for i in range(48):
        n = (1, 2, 3)[i % 3]
        kind = "hold" if i % 2 == 0 else "order"
        jobs.append((n, kind))

    def go(job):
        n, kind = job
        o = offers[n]
        if kind == "hold":
            r = http(BOOK, "POST", "/v1/holds", hold_body(o["id"], pax[n]), key=K["audit"])
        else:
            r = http(BOOK, "POST", "/v1/orders", order_body(o["id"], o["price"], pax=pax[n]), key=K["audit"])
        return n, kind, r[0], (err(r[2]).get("code") if r[0] != 201 else None)
    with cf.ThreadPoolExecutor(48) as ex:
        res = list(ex.map(go, jobs))
    won = sum(n for n, k, s, c in res if s == 201)
    codes = {}
    for n, k, s, c in res:
        codes[(s, c)] = codes.get((s, c), 0) + 1
    check(S, "48 concurrent holds/orders on 4 M seats: sold+held <= 4", won <= 4,
          (won, codes))
    check(S, "losers get 409 seats_unavailable (no 5xx)", all(s in (201, 409) for n, k, s, c in res), codes)
    check(S, "the class is actually filled (4 seats taken)", won == 4, (won, codes))
    time.sleep(0.3)
    # searchd (live) now prices the next class
    o1 = first_offer("origin=RUN&destination=MRU&date=2005-06-16&max_connections=0", "102")
    check(S, "searchd re-prices XX102 in Y after M sold out (invalidations)",
          o1["fares"][0]["booking_class"] == "Y" and o1["price"]["amount"] == "180.00",
          (o1["fares"], o1["price"]))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(o1["id"]), key=K["audit"])
    check(S, "hold the Y offer searchd now shows (Y has 9 seats) -> 201 at 180.00",
          s == 201 and js["data"]["price"]["amount"] == "180.00", (s, t[:400]))
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(o1["id"], o1["price"]), key=K["audit"])
    check(S, "instant order of that Y offer at 180.00 -> 201", s == 201, (s, t[:400]))
    s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(o1["id"], {"amount": "120.00", "currency": "EUR"}),
                       key=K["audit"])
    check(S, "ordering it at the sold-out class's price (120.00) -> 409 price_changed to 180.00",
          s == 409 and err(js).get("code") == "price_changed"
          and err(js).get("meta", {}).get("price", {}).get("amount") == "180.00", (s, t[:300]))
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(offers[1]["id"]), key=K["audit"])
    check(S, "old M offer (120.00) after sell-out -> 409 price_changed to 180 or seats_unavailable",
          s == 409 and err(js).get("code") in ("price_changed", "seats_unavailable"), (s, t[:300]))


def t_list(K):
    S = "list"
    # key audit-b: make a known set of orders (instant, XX975 RUN->CDG 06-16 Y)
    off = first_offer("origin=RUN&destination=CDG&date=2005-06-16&max_connections=0", "975")
    s, h, js, t = http(BOOK, "GET", "/v1/orders?limit=200", key=K["audit-b"])
    prior = [o["id"] for o in js["data"]]
    made = []
    for i in range(3):
        s, h, js, t = http(BOOK, "POST", "/v1/orders", order_body(off["id"], off["price"]), key=K["audit-b"])
        if s == 201:
            made.append(js["data"]["id"])
    want = prior + made
    for limit in (1, 2, 3, 50):
        seen, cur, pages = [], None, 0
        while pages < 100:
            q = f"/v1/orders?limit={limit}" + (f"&after={cur}" if cur else "")
            s, h, js, t = http(BOOK, "GET", q, key=K["audit-b"])
            if s != 200:
                break
            pages += 1
            seen += [o["id"] for o in js["data"]]
            check(S, f"limit={limit} page size <= limit and meta.limit", len(js["data"]) <= limit
                  and js["meta"].get("limit") == limit, js["meta"]) if pages == 1 else None
            cur = js["meta"].get("after")
            if not cur:
                break
        check(S, f"limit={limit}: every order exactly once, oldest first", seen == want, (seen, want))
    s, h, js, t = http(BOOK, "GET", "/v1/orders", key=K["audit"])
    mine = {o["id"] for o in js["data"]}
    check(S, "another key's orders are not listed", not (mine & set(made)), mine & set(made))
    for q, name in [("limit=0", "limit=0"), ("limit=201", "limit=201"), ("limit=abc", "limit=abc"),
                    ("limit=-1", "limit=-1"), ("after=nope", "unknown cursor"), ("after=a%20b", "bad chars cursor"),
                    ("after=" + (made[0] if made else "x"), "")]:
        s, h, js, t = http(BOOK, "GET", "/v1/orders?" + q, key=K["audit"])
        if name == "":
            check(S, "another key's order id as cursor -> 400", s == 400, (s, t[:200]))
        else:
            param = q.split("=")[0]
            check(S, f"{name} -> 400 naming {param}", s == 400 and (err(js).get("source") or {}).get("parameter")
                  == param, (s, t[:200]))


def t_bookd2(K, pre102):
    S = "bookd2"
    k2 = K["audit2"]
    # 410: XX103 does not exist in bookd2's snapshot
    off103 = first_offer("origin=MRU&destination=RUN&date=2005-06-16&max_connections=0", "103")
    if off103:
        s, h, js, t = http(BOOK2, "POST", "/v1/holds", hold_body(off103["id"]), key=k2)
        check(S, "hold offer of a flight gone from the snapshot -> 410 offer_expired",
              s == 410 and err(js).get("code") == "offer_expired", (s, t[:300]))
    # departed: XX103 MRU->RUN 06-16 05:25Z... gone; use XX109 06-16 14:25Z? (not departed at 12:00Z)
    # XX102 RUN->MRU 2005-06-16 departs 04:00Z, bookd2's clock is 12:00Z: departed.
    dep = [pre102] if pre102["slices"][0]["segments"][0]["departure_utc"] < NOW2 else []
    if dep:
        o = dep[0]
        s, h, js, t = http(BOOK2, "POST", "/v1/holds", hold_body(o["id"]), key=k2)
        check(S, "hold on a flight that departed 8 h ago -> 410 offer_expired",
              s == 410 and err(js).get("code") == "offer_expired", (s, t[:400]))
        s, h, js, t = http(BOOK2, "POST", "/v1/orders", order_body(o["id"], o["price"]), key=k2)
        check(S, "instant order on a flight that departed -> 410 offer_expired (not a confirmed order)",
              s == 410 and err(js).get("code") == "offer_expired", (s, t[:400]))
    # price_changed on hold: XX102 06-17 K KPROMO 89.50 quoted at 06-01; at 06-16 its 14-day advance
    # purchase fails and M is closed that day -> Y 180.00
    o = first_offer("origin=RUN&destination=MRU&date=2005-06-17&max_connections=0", "102")
    s, h, js, t = http(BOOK2, "POST", "/v1/holds", hold_body(o["id"]), key=k2)
    check(S, "hold quoted 89.50, now 180.00 -> 409 price_changed with meta.price 180.00",
          s == 409 and err(js).get("code") == "price_changed"
          and (err(js).get("meta") or {}).get("price") == {"amount": "180.00", "currency": "EUR"}, (s, t[:300]))
    s, h, js, t = http(BOOK2, "POST", "/v1/orders", order_body(o["id"], o["price"]), key=k2)
    check(S, "instant order with stale expected_total -> 409 price_changed", s == 409
          and err(js).get("code") == "price_changed", (s, t[:300]))
    # hold expiry (TTL 3 s): XX975 RUN->CDG 06-17 Y 980
    o = first_offer("origin=RUN&destination=CDG&date=2005-06-17&max_connections=0", "975")
    s, h, js, t = http(BOOK2, "POST", "/v1/holds", hold_body(o["id"]), key=k2)
    if check(S, "hold on bookd2 -> 201", s == 201, (s, t[:300])):
        hid = js["data"]["id"]
        exp = js["data"]["expires_at"]
        import datetime as _dt
        clock = _dt.datetime(2005, 6, 16, 12, 0, 0, tzinfo=_dt.timezone.utc) + _dt.timedelta(
            seconds=time.time() - BOOKD2_STARTED[0])
        e = _dt.datetime.strptime(exp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
        # `clock` over-estimates bookd2's clock by its start-up time (the clock starts after PostgreSQL)
        d = (e - clock).total_seconds()
        check(S, "expires_at ~ bookd2 clock + 3 s (--hold-ttl-secs 3)", -1.5 <= d <= 3.5, (exp, clock, d))
        time.sleep(5)
        s, h, js, t = http(BOOK2, "POST", "/v1/orders", {"hold_id": hid, "payment": {"type": "card",
                                                                                     "token": "tok_ok"}}, key=k2)
        check(S, "order from an expired hold -> 410 offer_expired naming hold_id", s == 410
              and err(js).get("code") == "offer_expired" and (err(js).get("source") or {}).get("parameter")
              == "hold_id", (s, t[:300]))
        s, h, js, t = http(BOOK2, "GET", "/metrics")
        m = re.search(r"^bookd_holds_expired_total (\d+)", t, re.M)
        check(S, "sweeper released the expired hold (bookd_holds_expired_total >= 1)", m and int(m.group(1)) >= 1,
              m and m.group(0))
    # 429 with the default rate limit (burst 100, 50/s)
    codes = []
    for _ in range(130):
        s, h, js, t = http(BOOK2, "GET", "/v1/orders?limit=1", key=k2)
        codes.append(s)
        if s == 429:
            check(S, "rate limit -> 429 rate_limited with Retry-After", err(js).get("code") == "rate_limited"
                  and "retry-after" in h, (h, t[:200]))
            break
    check(S, "burst over the default limit eventually answers 429", 429 in codes, codes[-3:])


def t_big_party(K):
    # searchd offers 9 adults + 9 infants (contract: adults 1-9, infants <= adults); bookd caps passengers[] at 9
    its = search("origin=CDG&destination=RUN&date=2005-06-16&max_connections=0&adults=9&infants=9")
    if not check("validation", "searchd prices an offer for 9 adults + 9 infants (CDG->RUN 06-16)", its, its):
        return
    s, h, js, t = http(BOOK, "POST", "/v1/holds", hold_body(its[0]["id"], [ADT] * 9 + [INF] * 9), key=K["audit"])
    check("validation", "hold of that offer with its 18 passengers -> 201", s == 201, (s, t[:200]))


def t_metrics_after():
    s, h, js, t = http(BOOK, "GET", "/metrics")
    vals = dict(re.findall(r"^(bookd_[a-z_]+_total) (\d+)$", t, re.M))
    check("ops", "metrics counters moved (holds, orders confirmed/failed/cancelled, replays)",
          all(int(vals.get(k, 0)) > 0 for k in ("bookd_holds_created_total", "bookd_orders_confirmed_total",
                                                 "bookd_orders_failed_total", "bookd_orders_cancelled_total",
                                                 "bookd_idempotent_replays_total")), vals)


def main():
    build = "--no-build" not in sys.argv
    try:
        K = setup(build)
        t_ops()
        t_auth(K)
        y103 = first_offer("origin=MRU&destination=RUN&date=2005-06-16&max_connections=0", "103")
        pre102 = first_offer("origin=RUN&destination=MRU&date=2005-06-16&max_connections=0", "102")
        t_hold_ok(K, y103)
        t_validation(K, y103)
        ctx = t_orders(K, y103)
        t_cancel(K, ctx)
        t_idempotency(K)
        t_overbooking(K)
        t_list(K)
        t_big_party(K)
        t_bookd2(K, pre102)
        t_metrics_after()
    except Exception as e:  # report what ran
        import traceback
        traceback.print_exc()
        check("harness", "script ran to the end", False, repr(e))
    finally:
        left = stop_all()
        check("harness", "no postgres of ours left running", not left, left)
        with open(os.path.join(WORK, "results.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
        n_ok = sum(r["ok"] for r in RESULTS)
        print(f"\n{n_ok}/{len(RESULTS)} checks passed; failures:")
        for r in RESULTS:
            if not r["ok"]:
                print(f"  [{r['section']}] {r['name']}\n      {r['detail'][:300]}")
    return 0 if all(r["ok"] for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Black-box audit of searchd's HTTP surface (Python 3 stdlib only).

Usage (from the repository root, after `cargo build --release -p indexer -p searchd`):

    python3 benches/searchd-audit/audit.py [--bin target/release] [--work /tmp/searchd-audit]
        [--port 19301] [--big-snapshot DIR] [--skip-slow]

It indexes the bundled feeds (like scripts/demo.sh) into WORK/snap, starts searchd on
127.0.0.1:PORT (and short-lived extra instances on PORT+1..PORT+4), runs every check, prints
one line per check (PASS/FAIL) and a summary, stops every process it started and exits 1 when a
check failed. Indexer runs go through `flock /tmp/bench.lock` (the machine's benchmark lock).
--big-snapshot names a snapshot with slow (tens of ms or more) calendars for the graceful
shutdown test (for example one built from `fixtures generate --scale 0.1`); without it the
shutdown test uses many concurrent small calendars instead.
"""

import argparse
import base64
import concurrent.futures as cf
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "audit-admin-token-7f3a"
NOW = "2005-06-01T08:00:00Z"
# --big-snapshot: `fixtures generate --seed 1 --scale 0.1 --airports fixtures/data/airports.csv`
# indexed; these calendars take 0.2-0.4 s each there.
BIG_NOW = "2026-04-01T00:00:00Z"
BIG_TARGETS = ["/v1/calendar?origin=SLC&destination=SYD&from=2026-05-01&to=2026-07-01&max_connections=2",
               "/v1/calendar?origin=SDQ&destination=MEL&from=2026-05-01&to=2026-07-01&max_connections=2"]

RESULTS = []  # (ok, name, detail)
PROCS = []


def check(name, ok, detail=""):
    RESULTS.append((bool(ok), name, detail))
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else "  -- " + str(detail)[:600]), flush=True)
    return ok


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client (full control over the bytes sent)


class Resp:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body, self.raw_head = status, reason, headers, body, raw_head

    def h(self, name):
        return self.headers.get(name.lower())

    def json(self):
        try:
            return json.loads(self.body)
        except Exception:
            return None


class Conn:
    def __init__(self, port, timeout=15):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            k = k.strip().lower()
            headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
        body = b""
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._fill()
                body += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            try:
                while True:
                    self._fill()
            except (EOFError, ConnectionError):
                pass
            body, self.buf = self.buf, b""
        return Resp(status, reason, headers, body, head)

    def request(self, method, target, headers=None, body=None, head_only=None):
        self.send(build(method, target, headers, body))
        return self.read_response(head_only=(method == "HEAD") if head_only is None else head_only)

    def closed_by_peer(self, wait=3.0):
        """True when the server closes the connection (EOF or reset) within `wait` s."""
        self.s.settimeout(wait)
        try:
            d = self.s.recv(65536)
            return d == b""
        except socket.timeout:
            return False
        except ConnectionError:
            return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def build(method, target, headers=None, body=None, version="HTTP/1.1"):
    h = {"Host": "127.0.0.1"}
    h.update(headers or {})
    if body is not None and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    out = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return out.encode("latin-1") + (body or b"")


def req(port, method, target, headers=None, body=None):
    c = Conn(port)
    try:
        h = {"Connection": "close"}
        h.update(headers or {})
        return c.request(method, target, h, body)
    finally:
        c.close()


def get(port, target, headers=None):
    return req(port, "GET", target, headers)


# --------------------------------------------------------------------------------------------
# envelopes

RID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_success(name, r, data_type=None):
    j = r.json()
    ok = (r.status == 200 and r.h("content-type") == "application/json" and isinstance(j, dict)
          and set(j) == {"data", "meta"} and isinstance(j["meta"], dict)
          and (data_type is None or isinstance(j["data"], data_type))
          and j["meta"].get("request_id") == r.h("x-request-id") and RID_RE.match(r.h("x-request-id") or ""))
    return check(name + ": 200 {data,meta}, application/json, X-Request-Id = meta.request_id", ok,
                 f"status={r.status} ct={r.h('content-type')} rid={r.h('x-request-id')} body={r.body[:300]!r}")


def check_error(name, r, status, code=None, parameter=None, need_param=True):
    j = r.json()
    problems = []
    if r.status != status:
        problems.append(f"status {r.status} != {status}")
    if r.h("content-type") != "application/json":
        problems.append(f"content-type {r.h('content-type')}")
    rid = r.h("x-request-id")
    if not rid:
        problems.append("no X-Request-Id")
    if not isinstance(j, dict) or set(j) != {"errors", "meta"}:
        problems.append(f"not an error envelope: {r.body[:200]!r}")
    else:
        if j["meta"].get("request_id") != rid:
            problems.append("meta.request_id != X-Request-Id")
        errs = j["errors"]
        if not isinstance(errs, list) or not errs:
            problems.append("errors empty")
        else:
            for e in errs:
                for k in ("code", "title", "detail"):
                    if not isinstance(e.get(k), str) or not e.get(k):
                        problems.append(f"error.{k} missing")
            e = errs[0]
            if code and e.get("code") != code:
                problems.append(f"code {e.get('code')} != {code}")
            if need_param:
                got = (e.get("source") or {}).get("parameter")
                if parameter is not None and got != parameter:
                    problems.append(f"source.parameter {got!r} != {parameter!r}")
    return check(f"{name}: {status} {code or ''} param={parameter if need_param else '-'}", not problems,
                 "; ".join(problems) + f" | body={r.body[:300]!r}")


# --------------------------------------------------------------------------------------------
# processes


def run_indexer(bin_dir, feeds, out, lenient=False, use_flock=True):
    cmd = [os.path.join(bin_dir, "indexer"), "build", "--ssim", feeds["ssim"], "--airports", feeds["airports"],
           "--metros", feeds["metros"], "--mct", feeds["mct"], "--fares", feeds["fares"],
           "--availability", feeds["availability"], "--out", out]
    if lenient:
        cmd.insert(2, "--lenient")
    if use_flock and shutil.which("flock"):
        cmd = ["flock", "/tmp/bench.lock"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p


class Searchd:
    def __init__(self, bin_dir, snap, port, log_path, extra=(), token=TOKEN, now=NOW):
        env = dict(os.environ)
        env.pop("SEARCHD_ADMIN_TOKEN", None)
        if token:
            env["SEARCHD_ADMIN_TOKEN"] = token
        self.port = port
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen([os.path.join(bin_dir, "searchd"), "--snapshot", snap, "--listen",
                                   f"127.0.0.1:{port}", "--now", now, *extra], stdout=subprocess.DEVNULL,
                                  stderr=self.log, env=env)
        PROCS.append(self.p)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if get(port, "/readyz").status == 200:
                    return
            except OSError:
                pass
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"searchd on {port} did not become ready; see {log_path}")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.log.close()
        return rc

    def log_lines(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()


# --------------------------------------------------------------------------------------------
# the checks

SEARCH = "/v1/search?origin=RUN&destination=MRU&date=2005-06-16"


def t_endpoints(port, repo_openapi):
    r = get(port, SEARCH)
    check_success("GET /v1/search", r, dict)
    j = r.json()
    m = j["meta"]
    check("search meta has count, total, snapshot_id", all(k in m for k in ("count", "total", "snapshot_id")), m)
    check("search meta.count = len(itineraries) <= total",
          m.get("count") == len(j["data"]["itineraries"]) and m["count"] <= m["total"], m)
    oid = j["data"]["itineraries"][0]["id"]
    r = get(port, "/v1/offers/" + oid)
    check_success("GET /v1/offers/{id}", r, dict)
    d = r.json()["data"]
    check("offer of a fresh search: price_changed false, same id", d.get("price_changed") is False and d.get("id") == oid,
          {k: d.get(k) for k in ("id", "price_changed", "price")})
    r = get(port, "/v1/calendar?origin=RUN&destination=MRU&from=2005-06-10&to=2005-06-20")
    check_success("GET /v1/calendar", r, dict)
    check("calendar meta.count = 11 days", r.json()["meta"].get("count") == 11 and len(r.json()["data"]["days"]) == 11,
          r.json()["meta"])
    r = get(port, "/v1/places?q=paris&limit=3")
    check_success("GET /v1/places", r, list)
    check("places rows have type/iata/name/city/country",
          all(set(x) >= {"type", "iata", "name", "city", "country"} and x["type"] in ("airport", "metro")
              for x in r.json()["data"]) and r.json()["data"], r.body[:200])
    r = get(port, "/healthz")
    check_success("GET /healthz", r)
    r = get(port, "/readyz")
    check_success("GET /readyz", r, dict)
    check("readyz data.status ready with snapshot_id", r.json()["data"].get("status") == "ready"
          and r.json()["data"].get("snapshot_id"), r.body[:200])
    r = get(port, "/metrics")
    check("GET /metrics 200 text/plain version=0.0.4", r.status == 200 and (r.h("content-type") or "").startswith(
        "text/plain; version=0.0.4"), (r.status, r.h("content-type")))
    check("GET /metrics carries X-Request-Id (openapi: every response)", bool(r.h("x-request-id")), r.headers)
    r = get(port, "/openapi.json")
    check("GET /openapi.json 200 application/json", r.status == 200 and r.h("content-type") == "application/json",
          (r.status, r.h("content-type")))
    check("GET /openapi.json equals searchd/openapi.json byte for byte", r.body == repo_openapi,
          f"{len(r.body)} vs {len(repo_openapi)} bytes")
    check("GET /openapi.json carries X-Request-Id (openapi: every response)", bool(r.h("x-request-id")), r.headers)
    # incoming request ids
    r = get(port, "/healthz", {"X-Request-Id": "audit-Req_01"})
    check("X-Request-Id echoed when valid", r.h("x-request-id") == "audit-Req_01"
          and r.json()["meta"]["request_id"] == "audit-Req_01", r.headers)
    for bad in ("has space", "a" * 65, "x/y"):
        r = get(port, "/healthz", {"X-Request-Id": bad})
        check(f"X-Request-Id {bad[:10]!r}.. replaced by a generated one", r.h("x-request-id") not in (None, bad)
              and RID_RE.match(r.h("x-request-id")), r.headers)
    ids = {get(port, "/healthz").h("x-request-id") for _ in range(20)}
    check("generated request ids are unique", len(ids) == 20, ids)


def t_errors(port):
    base = SEARCH
    cases = [
        # (target, status, code, parameter)
        ("/v1/search?destination=MRU&date=2005-06-16", 400, "missing_parameter", "origin"),
        ("/v1/search?origin=RUN&date=2005-06-16", 400, "missing_parameter", "destination"),
        ("/v1/search?origin=RUN&destination=MRU", 400, "missing_parameter", "date"),
        ("/v1/search?origin=&destination=MRU&date=2005-06-16", 400, None, "origin"),
        ("/v1/search?origin=ZZZ&destination=MRU&date=2005-06-16", 400, None, "origin"),
        ("/v1/search?origin=RUN&destination=QQQ&date=2005-06-16", 400, None, "destination"),
        ("/v1/search?origin=JFK&destination=NYC&date=2005-06-16", 400, None, "destination"),
        ("/v1/search?origin=RUN&destination=MRU&date=2005-13-01", 400, None, "date"),
        ("/v1/search?origin=RUN&destination=MRU&date=16/06/2005", 400, None, "date"),
        (base + "&return_date=2005-02-30", 400, None, "return_date"),
        (base + "&adults=0", 400, None, "adults"),
        (base + "&adults=10", 400, None, "adults"),
        (base + "&adults=", 400, None, "adults"),
        (base + "&adults", 400, None, "adults"),
        (base + "&children=x", 400, None, "children"),
        (base + "&adults=5&children=5", 400, None, "children"),
        (base + "&infants=2", 400, None, "infants"),
        (base + "&cabin=coach", 400, None, "cabin"),
        (base + "&max_connections=3", 400, None, "max_connections"),
        (base + "&max_connections=-1", 400, None, "max_connections"),
        (base + "&min_connection_minutes=-5", 400, None, "min_connection_minutes"),
        (base + "&max_connection_minutes=2881", 400, None, "max_connection_minutes"),
        (base + "&carriers=X", 400, None, "carriers"),
        (base + "&carriers=XX%2BYY", 400, None, "carriers"),
        (base + "&exclude_carriers=ABCD", 400, None, "exclude_carriers"),
        (base + "&depart_after=24:00", 400, None, "depart_after"),
        (base + "&depart_before=7:5", 400, None, "depart_before"),
        (base + "&max_price=-1", 400, None, "max_price"),
        (base + "&max_price=abc", 400, None, "max_price"),
        (base + "&priced_only=maybe", 400, None, "priced_only"),
        (base + "&sort=cheapest", 400, None, "sort"),
        (base + "&limit=0", 400, None, "limit"),
        (base + "&limit=1001", 400, None, "limit"),
        (base + "&limit=5&limit=6", 400, None, "limit"),
        (base + "&origin=RUN", 400, None, "origin"),
        (base + "&foo=1", 400, None, "foo"),
        (base + "&=1", 400, None, ""),
        (base + "&%zz=1", 400, None, "%zz"),
        (base + "&carriers=%zz", 400, None, "carriers"),
        (base + "&carriers=%C3", 400, None, "carriers"),
        (base + "&carriers=%ff%fe", 400, None, "carriers"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-08-02", 400, None, "to"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-10&to=2005-06-01", 400, None, "to"),
        ("/v1/calendar?origin=RUN&destination=MRU&to=2005-06-01", 400, "missing_parameter", "from"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01", 400, "missing_parameter", "to"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-06-03&sort=price", 400, None, "sort"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-06-03&limit=5", 400, None, "limit"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-06-03&return_date=2005-06-09", 400, None,
         "return_date"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-06-03&priced_only=false", 400, None,
         "priced_only"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-06-03&adults=0", 400, None, "adults"),
        ("/v1/calendar?origin=RUN&destination=MRU&from=x&to=2005-06-03", 400, None, "from"),
        ("/v1/places", 400, "missing_parameter", "q"),
        ("/v1/places?q=", 400, None, "q"),
        ("/v1/places?q=par&limit=0", 400, None, "limit"),
        ("/v1/places?q=par&limit=51", 400, None, "limit"),
        ("/v1/places?q=par&q=lon", 400, None, "q"),
        ("/v1/places?q=par&x=1", 400, None, "x"),
        ("/v1/places?q=" + "a" * 65, 400, None, "q"),
        ("/v1/offers/zz", 400, "invalid_offer_id", "id"),
        ("/v1/offers/%zz", 400, None, "id"),
        ("/v1/offers/" + "0" * 40, 400, "invalid_offer_id", "id"),
        ("/v1/offers/" + "ab" * 300, 400, "invalid_offer_id", "id"),
    ]
    for target, status, code, param in cases:
        check_error("GET " + target[:90], get(port, target), status, code, param)
    many = "/v1/search?" + "&".join(f"p{i}=1" for i in range(65))
    check_error("GET /v1/search with 65 parameters", get(port, many), 400, "too_many_parameters", need_param=False)
    # percent-encoding and '+'
    ref = get(port, SEARCH).json()["data"]
    for t in ("/v1/search?origin=%52UN&destination=MRU&date=2005-06-16",
              "/v1/search?origin=run&destination=mru&date=2005-06-16",
              "/v1/search?%6Frigin=RUN&destination=MRU&date=2005%2D06%2D16",
              "/v1/search?origin=RUN&destination=MRU&date=2005-06-16&&",
              "/v1/search?origin=RUN&destination=MRU&date=2005-06-16&carriers=XX"):
        r = get(port, t)
        check(f"{t[10:70]} decodes to the same search", r.status == 200 and r.json()["data"] == ref,
              (r.status, r.body[:200]))
    a, b = get(port, "/v1/places?q=new+york&limit=5"), get(port, "/v1/places?q=new%20york&limit=5")
    check("'+' in a query value is a space (places q=new+york == new%20york)",
          a.status == b.status == 200 and a.json()["data"] == b.json()["data"] and a.json()["data"], a.body[:200])
    r = get(port, "/v1/places?q=S%C3%A3o+Paulo&limit=3")
    check("UTF-8 percent-escapes decode (q=São Paulo finds SAO/GRU)",
          r.status == 200 and any(x["iata"] in ("SAO", "GRU", "CGH") for x in r.json()["data"]), r.body[:300])
    r = get(port, "/v1/places?q=S%E3o")
    check_error("places q=%E3 (latin-1, not UTF-8)", r, 400, None, "q")
    # unknown paths
    for p in ("/", "/nope", "/v1/search/", "/v1/offers/", "/v1/offers/a/b", "/v1", "/V1/search", "/healthz/x",
              "/v2/search?origin=RUN"):
        check_error("GET " + p, get(port, p), 404, "not_found", need_param=False)
    check_error("POST /nope", req(port, "POST", "/nope", body=b"{}"), 404, "not_found", need_param=False)


def t_methods(port):
    gets = [SEARCH, "/v1/calendar?origin=RUN&destination=MRU&from=2005-06-10&to=2005-06-12", "/v1/places?q=par",
            "/healthz", "/readyz", "/openapi.json", "/metrics"]
    for t in gets:
        g = get(port, t)
        h = req(port, "HEAD", t)
        same = (h.status == g.status and h.body == b"" and h.h("content-type") == g.h("content-type")
                and h.h("content-length") == g.h("content-length") and bool(h.h("x-request-id")))
        if t == "/metrics":  # its length changes between the two requests
            same = h.status == 200 and h.body == b""
        check(f"HEAD {t[:50]}: same status/headers as GET, no body", same,
              (h.status, g.status, h.h("content-length"), g.h("content-length"), h.body[:50]))
    # HEAD on a keep-alive connection: the next response must parse (no stray body)
    c = Conn(port)
    try:
        c.request("HEAD", "/healthz")
        r = c.request("GET", "/healthz")
        check("HEAD then GET on one connection", r.status == 200 and r.json() is not None, r.body[:100])
    finally:
        c.close()
    for m in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for t in ("/v1/search", "/healthz", "/v1/offers/abc"):
            r = req(port, m, t, body=b"" if m in ("POST", "PUT", "PATCH") else None)
            check_error(f"{m} {t}", r, 405, "method_not_allowed", need_param=False)
            check(f"{m} {t}: Allow: GET, HEAD", r.h("allow") == "GET, HEAD", r.headers)
    for m in ("GET", "HEAD", "PUT"):
        r = req(port, m, "/admin/reload")
        check(f"{m} /admin/reload: 405 Allow: POST", r.status == 405 and r.h("allow") == "POST", (r.status, r.headers))


def t_limits(port):
    # the request target: 8 KiB
    def target_of(n):
        t = "/v1/places?q=par&limit=1&"
        return t + "z=" + "a" * (n - len(t) - 2)
    r = get(port, target_of(8192))
    check("request target of exactly 8192 bytes is not 414 (it is a 400 for the unknown z)", r.status == 400,
          r.status)
    r = get(port, target_of(8193))
    check_error("request target of 8193 bytes", r, 414, "uri_too_long", need_param=False)
    r = get(port, "/nope/" + "a" * 9000)
    check("long unknown path: 414 (the limit is checked before routing)", r.status == 414, r.status)
    r = get(port, "/healthz", {"X-Pad": "a" * 60000})
    check("60,000-byte header accepted (limit 64 KiB)", r.status == 200, r.status)
    r = get(port, "/healthz", {"X-Pad": "a" * 66000})
    check("66,000-byte header: 431", r.status == 431, r.status)
    # openapi: 431 and a request that is not HTTP are answered by hyper before routing, with
    # an empty body and no X-Request-Id (documented, not an envelope).
    check("431 answered by the HTTP layer: empty body, connection closed (documented)",
          not r.body and (r.h("connection") or "").lower() == "close", (r.headers, r.body[:100]))
    r = get(port, "/healthz", {f"X-H{i}": "v" for i in range(90)})
    check("90 headers accepted", r.status == 200, r.status)


def t_keepalive(port):
    c = Conn(port)
    ok = True
    try:
        for i in range(300):
            t = ["/healthz", SEARCH, "/v1/places?q=par&limit=2", "/nope"][i % 4]
            r = c.request("GET", t, {"X-Request-Id": f"ka-{i}"})
            if r.h("x-request-id") != f"ka-{i}" or r.status not in (200, 404):
                ok = False
                break
    except Exception as e:  # noqa
        ok, i = False, f"{i}: {e}"
    finally:
        c.close()
    check("300 requests on one keep-alive connection", ok, i)
    # pipelining
    c = Conn(port)
    try:
        n = 60
        targets = [["/healthz", SEARCH, "/v1/offers/zz", "/v1/places?q=lon&limit=1"][i % 4] for i in range(n)]
        c.send(b"".join(build("GET", t, {"X-Request-Id": f"pipe-{i}"}) for i, t in enumerate(targets)))
        got = [c.read_response() for _ in range(n)]
        order = [r.h("x-request-id") for r in got]
        check(f"{n} pipelined requests answered in order", order == [f"pipe-{i}" for i in range(n)], order[:10])
        check("pipelined statuses", [r.status for r in got] == [[200, 200, 400, 200][i % 4] for i in range(n)],
              [r.status for r in got][:12])
    except Exception as e:
        check("pipelined requests", False, e)
    finally:
        c.close()
    # Connection: close
    c = Conn(port)
    try:
        r = c.request("GET", "/healthz", {"Connection": "close"})
        check("Connection: close: answered with Connection: close, then closed",
              r.status == 200 and (r.h("connection") or "").lower() == "close" and c.closed_by_peer(), r.headers)
    finally:
        c.close()
    c = Conn(port)
    try:
        c.send(build("GET", "/healthz", version="HTTP/1.0"))
        r = c.read_response()
        check("HTTP/1.0 request: 200, then closed", r.status == 200 and c.closed_by_peer(), r.headers)
    finally:
        c.close()
    # bodies on GET
    for name, body in (("one-chunk", b"5\r\nhello\r\n0\r\n\r\n"),
                       ("two-chunk", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")):
        c = Conn(port)
        r1 = r2 = None
        try:
            c.send(build("GET", SEARCH, {"Transfer-Encoding": "chunked", "X-Request-Id": "chunk-1"}) + body)
            r1 = c.read_response()
            r2 = c.request("GET", "/healthz", {"X-Request-Id": "chunk-2"})
        except Exception as e:  # noqa
            r2 = e
        finally:
            c.close()
        reused = isinstance(r2, Resp) and r2.status == 200 and r2.h("x-request-id") == "chunk-2"
        ok = r1 is not None and r1.status == 200 and r1.h("x-request-id") == "chunk-1" and reused
        check(f"GET with a {name} chunked body: answered; connection reusable",
              ok, (r1 and r1.status, r1 and r1.h("connection"), r2 if not isinstance(r2, Resp) else r2.status))
    c = Conn(port)
    try:
        c.send(build("GET", "/healthz", {"X-Request-Id": "cl-1"}, body=b"x" * 1000))
        r3 = c.read_response()
        r4 = c.request("GET", "/healthz", {"X-Request-Id": "cl-2"})
        check("GET with a Content-Length body: answered, connection reusable",
              r3.status == 200 and r4.h("x-request-id") == "cl-2", (r3.status, r4.status))
    except Exception as e:
        check("GET with bodies", False, e)
    finally:
        c.close()
    # malformed request line
    c = Conn(port)
    try:
        c.send(b"GARBAGE\r\n\r\n")
        r = c.read_response()
        check("malformed request line: 400", r.status == 400, r.status)
        check("malformed request line: bare 400 from the HTTP layer, connection closed (documented)",
              not r.body and (r.h("connection") or "").lower() == "close", (r.headers, r.body[:100]))
    except Exception as e:
        check("malformed request line: 400 (or closed)", isinstance(e, (EOFError, ConnectionError)), e)
    finally:
        c.close()
    # many concurrent connections below the limit
    def one(i):
        cc = Conn(port)
        try:
            time.sleep(0.2)
            return cc.request("GET", SEARCH, {"X-Request-Id": f"cc-{i}"}).h("x-request-id") == f"cc-{i}"
        finally:
            cc.close()
    with cf.ThreadPoolExecutor(300) as ex:
        res = list(ex.map(one, range(300)))
    check("300 concurrent connections each answered", all(res), res.count(False))


# --- a minimal h2c (prior knowledge) client ----------------------------------------------------

def h2_frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    # literal header field without indexing, new name, no Huffman
    def s(x):
        b = x.encode()
        assert len(b) < 127
        return bytes([len(b)]) + b
    return b"\x00" + s(name) + s(value)


STATUS_STATIC = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}


def h2_get(port, paths):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        for i, (path, rid) in enumerate(paths):
            block = (b"\x82" + b"\x86" + hpack_literal(":path", path) + hpack_literal(":authority", "127.0.0.1")
                     + hpack_literal("x-request-id", rid))
            s.sendall(h2_frame(1, 0x5, 2 * i + 1, block))  # END_STREAM | END_HEADERS
        buf = b""
        out = {2 * i + 1: {"status": None, "body": b"", "done": False} for i in range(len(paths))}
        while not all(v["done"] for v in out.values()):
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                d = s.recv(65536)
                if not d:
                    raise EOFError("h2 connection closed")
                buf += d
            n = int.from_bytes(buf[:3], "big")
            ftype, flags = buf[3], buf[4]
            sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if ftype == 4 and not flags & 1:
                s.sendall(h2_frame(4, 1, 0, b""))
            elif ftype == 7:
                raise RuntimeError(f"GOAWAY {payload[:8].hex()} {payload[8:]!r}")
            elif ftype == 1 and sid in out:
                p = payload
                if flags & 0x8:
                    p = p[1:len(p) - p[0]]
                if flags & 0x20:
                    p = p[5:]
                out[sid]["status"] = STATUS_STATIC.get(p[0]) if p else None
                if flags & 1:
                    out[sid]["done"] = True
            elif ftype == 0 and sid in out:
                p = payload
                if flags & 0x8:
                    p = p[1:len(p) - p[0]]
                out[sid]["body"] += p
                if n:
                    s.sendall(h2_frame(8, 0, 0, struct.pack(">I", n)) + h2_frame(8, 0, sid, struct.pack(">I", n)))
                if flags & 1:
                    out[sid]["done"] = True
        return [out[2 * i + 1] for i in range(len(paths))]
    finally:
        s.close()


def t_h2c(port):
    try:
        res = h2_get(port, [(SEARCH, "h2-1"), ("/v1/offers/zz", "h2-2"), ("/nope", "h2-3"), ("/healthz", "h2-4")])
        want = [200, 400, 404, 200]
        check("h2c prior knowledge: 4 concurrent streams, statuses 200/400/404/200",
              [r["status"] for r in res] == want, [r["status"] for r in res])
        ok = all(json.loads(r["body"])["meta"]["request_id"] == f"h2-{i + 1}" for i, r in enumerate(res))
        check("h2c: bodies are envelopes with the sent request id", ok, [r["body"][:80] for r in res])
    except Exception as e:
        check("h2c prior knowledge", False, repr(e))


def t_slow_client(port, deadline_s=45):
    """Headers sent one byte every 0.5 s: when does the server give up?"""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    msg = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400 + b"\r\n\r\n"
    t0 = time.time()
    outcome = "still open"
    try:
        for i, byte in enumerate(msg):
            if time.time() - t0 > deadline_s:
                break
            try:
                s.sendall(bytes([byte]))
            except OSError as e:
                outcome = f"send failed after {time.time() - t0:.1f}s ({e.__class__.__name__})"
                break
            s.settimeout(0.5)
            try:
                d = s.recv(4096)
                outcome = (f"closed after {time.time() - t0:.1f}s" if not d else
                           f"answered after {time.time() - t0:.1f}s: {d.splitlines()[0]!r}")
                break
            except socket.timeout:
                pass
            except ConnectionError as e:
                outcome = f"reset after {time.time() - t0:.1f}s"
                break
    finally:
        s.close()
    return outcome, time.time() - t0


def t_default_conn_limit(port, n_extra=16):
    """The documented default: 1024 connections; extra ones are closed."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024 + n_extra + 200:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        except (ValueError, OSError):
            check("default connection limit (skipped: ulimit -n too small)", True)
            return
    before = metric_value(port, "searchd_connections_refused_total")
    conns, closed = [], 0
    try:
        for _ in range(1024 + n_extra):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)
        for s in conns:
            s.setblocking(False)
            try:
                d = s.recv(1)
                closed += d == b""
            except BlockingIOError:
                pass
            except ConnectionError:
                closed += 1
    finally:
        for s in conns:
            s.close()
    time.sleep(0.5)
    after = metric_value(port, "searchd_connections_refused_total")
    # other tests' connections (the slow client) may hold one more slot
    check(f"{1024 + n_extra} connections against the default limit 1024: the extra ~{n_extra} closed at once",
          n_extra <= closed <= n_extra + 2 and after - before == closed, (closed, after - before))
    check("served again after the flood", get(port, "/healthz").status == 200)


def t_request_timeout(bin_dir, snap, port, work):
    """--request-timeout 1 with more slow calendars than work permits: 503 request_timeout envelopes."""
    sd = Searchd(bin_dir, snap, port, os.path.join(work, "timeout.log"), ["--request-timeout", "1"], token=None,
                 now=BIG_NOW)
    try:
        with cf.ThreadPoolExecutor(48) as ex:
            rs = list(ex.map(lambda i: get(port, BIG_TARGETS[i % 2], {"X-Request-Id": f"to-{i}"}), range(48)))
        to = [r for r in rs if r.status == 503]
        check(f"--request-timeout 1 under 48 concurrent slow calendars: some 503 ({len(to)})", to,
              [r.status for r in rs])
        for r in to[:1]:
            check_error("timed-out request", r, 503, "request_timeout", need_param=False)
        check("other answers are 200", all(r.status in (200, 503) for r in rs), {r.status for r in rs})
        check("searchd_http_request_timeouts_total counts them",
              metric_value(port, "searchd_http_request_timeouts_total") == len(to),
              (metric_value(port, "searchd_http_request_timeouts_total"), len(to)))
    finally:
        rc = sd.stop()
    check("timeout searchd exits 0", rc == 0, rc)


def t_conn_limit(bin_dir, snap, port, work):
    sd = Searchd(bin_dir, snap, port, os.path.join(work, "limit.log"), ["--max-connections", "8"], token=None)
    try:
        conns = [Conn(port) for _ in range(8)]
        for c in conns:
            c.request("GET", "/healthz")
        extra = Conn(port)
        refused = False
        try:
            extra.send(build("GET", "/healthz"))
            refused = extra.closed_by_peer(3)
        except (ConnectionError, OSError):
            refused = True
        extra.close()
        check("9th connection over --max-connections 8 is closed", refused)
        for c in conns:
            c.close()
        time.sleep(0.3)
        r = get(port, "/metrics")
        m = re.search(r"^searchd_connections_refused_total (\d+)$", r.body.decode(), re.M)
        check("searchd_connections_refused_total counts it", m and int(m.group(1)) >= 1, m and m.group(0))
        check("new connections served again after the others closed", get(port, "/healthz").status == 200)
        r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
        check_error("POST /admin/reload with no admin token configured", r, 403, "forbidden", need_param=False)
    finally:
        rc = sd.stop()
    check("limited searchd exits 0 on SIGTERM", rc == 0, rc)


# --- metrics -------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                       r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*,?)?\})? (\S+)( -?\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Returns (families {name: {type, help, samples: [(name, labels, value)]}}, problems)."""
    fams, problems, order, cur = {}, [], [], None
    for ln in text.splitlines():
        if not ln:
            continue
        if ln.startswith("#"):
            parts = ln.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                key = parts[1].lower()
                if f[key] is not None:
                    problems.append(f"second {parts[1]} for {name}")
                if f["samples"]:
                    problems.append(f"{parts[1]} for {name} after its samples")
                f[key] = parts[3] if len(parts) > 3 else ""
                if name != cur:
                    if name in order:
                        problems.append(f"family {name} not contiguous")
                    order.append(name)
                    cur = name
            continue
        m = SAMPLE_RE.match(ln)
        if not m:
            problems.append(f"unparseable line {ln!r}")
            continue
        name, labels, value = m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), m.group(3)
        try:
            v = float(value)
        except ValueError:
            problems.append(f"bad value {ln!r}")
            continue
        fam = None
        for cand in (name, re.sub(r"_(bucket|sum|count)$", "", name)):
            if cand in fams:
                fam = cand
                break
        if fam is None:
            problems.append(f"sample {name} without HELP/TYPE")
            fams[name] = {"type": None, "help": None, "samples": []}
            fam = name
        if fam != cur:
            problems.append(f"sample {name} outside its family's group")
        ftype = fams[fam]["type"]
        if fam != name and ftype not in ("histogram", "summary"):
            problems.append(f"{name}: suffix on a {ftype}")
        if ftype == "counter" and not name.endswith("_total"):
            problems.append(f"counter {name} without _total")
        fams[fam]["samples"].append((name, labels, v))
    for n, f in fams.items():
        if f["type"] not in ("counter", "gauge", "histogram", "summary", "untyped"):
            problems.append(f"{n}: type {f['type']}")
        if f["help"] is None:
            problems.append(f"{n}: no HELP")
    return fams, problems


def t_metrics(port):
    r = get(port, "/metrics")
    fams, problems = parse_metrics(r.body.decode())
    check("metrics parse: every line a sample or HELP/TYPE, families grouped and typed", not problems, problems[:8])
    documented = ["searchd_http_requests_total", "searchd_http_request_duration_seconds",
                  "searchd_http_requests_in_flight", "searchd_http_request_timeouts_total", "searchd_connections_active",
                  "searchd_connections_accepted_total", "searchd_connections_refused_total",
                  "searchd_snapshot_generation", "searchd_snapshot_info", "searchd_snapshot_loaded_timestamp_seconds",
                  "searchd_snapshot_reloads_total", "searchd_snapshot_reload_failures_total",
                  "searchd_overlay_entries", "searchd_places_documents", "searchd_uptime_seconds",
                  "searchd_build_info"]
    missing = [n for n in documented if n not in fams]
    check(f"metrics: the {len(documented)} documented families are present", not missing, missing)

    def counts(f):
        return {(s[1].get("route"), s[1].get("status")): s[2] for s in f["searchd_http_requests_total"]["samples"]}
    before = counts(fams)
    for _ in range(7):
        get(port, SEARCH)
    for _ in range(3):
        get(port, "/v1/offers/zz")
    for _ in range(2):
        get(port, "/nope")
    get(port, "/v1/places?q=x&limit=1&limit=2")
    fams2, _ = parse_metrics(get(port, "/metrics").body.decode())
    after = counts(fams2)
    for key, n in ((("search", "200"), 7), (("offer", "400"), 3), (("unmatched", "404"), 2), (("places", "400"), 1)):
        check(f"requests_total{{route={key[0]},status={key[1]}}} grew by {n}",
              after.get(key, 0) - before.get(key, 0) == n, (before.get(key), after.get(key)))
    # histograms
    h = fams2["searchd_http_request_duration_seconds"]["samples"]
    series = {}
    for name, labels, v in h:
        key = (labels.get("route"), labels.get("status"))
        series.setdefault(key, {"b": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            series[key]["b"].append((labels.get("le"), v))
        elif name.endswith("_sum"):
            series[key]["sum"] = v
        elif name.endswith("_count"):
            series[key]["count"] = v
    bad = []
    for key, s in series.items():
        les = [le for le, _ in s["b"]]
        vals = [v for _, v in s["b"]]
        bounds = [float(le) for le in les]
        if not les or les[-1] != "+Inf":
            bad.append(f"{key}: last bucket {les[-1:]}")
        if bounds != sorted(bounds):
            bad.append(f"{key}: le not increasing")
        if vals != sorted(vals):
            bad.append(f"{key}: buckets not cumulative")
        if not vals or vals[-1] != s["count"]:
            bad.append(f"{key}: +Inf {vals[-1:]} != count {s['count']}")
        if s["sum"] is None or s["sum"] < 0:
            bad.append(f"{key}: sum {s['sum']}")
        if counts(fams2).get(key) != s["count"]:
            bad.append(f"{key}: _count != requests_total")
    check(f"histogram: {len(series)} series cumulative, end with +Inf = _count = requests_total", not bad and series,
          bad[:5])
    route_labels = {k[0] for k in counts(fams2)}
    check("route label is from a fixed set",
          route_labels <= {"search", "offer", "calendar", "places", "healthz", "readyz", "metrics", "openapi",
                           "admin_reload", "unmatched"}, route_labels)


# --- offers, reload ----------------------------------------------------------------------------

def tamper(oid):
    """Flips one hex digit in the middle (keeps it lowercase hex)."""
    i = len(oid) // 2
    c = "0" if oid[i] != "0" else "1"
    return oid[:i] + c + oid[i + 1:]


def search_ids(port, origin, dest, days, extra=""):
    out = []
    for d in days:
        r = get(port, f"/v1/search?origin={origin}&destination={dest}&date={d}&priced_only=false&limit=20{extra}")
        if r.status == 200:
            for it in r.json()["data"]["itineraries"]:
                flights = [s["flight_number"] for sl in it["slices"] for s in sl["segments"]]
                out.append((it["id"], flights, it["price"]))
    return out


def snapshot_id(port):
    return get(port, "/readyz").json()["data"]["snapshot_id"]


def t_offers_and_reload(port, bin_dir, work, feeds, use_flock):
    days = ["2005-06-%02d" % d for d in range(14, 21)]
    ids = search_ids(port, "RUN", "MRU", days) + search_ids(port, "MRU", "RUN", days)
    ids += search_ids(port, "RUN", "MRU", ["2005-06-16"], "&return_date=2005-06-18")
    check("searches gave offer ids", len(ids) >= 10, len(ids))
    bad = []
    for oid, flights, price in ids:
        r = get(port, "/v1/offers/" + oid)
        j = r.json() or {}
        d = j.get("data") or {}
        if r.status != 200 or d.get("price_changed") is not False or d.get("id") != oid or d.get("price") != price:
            bad.append((oid[:20], r.status, d.get("price_changed"), r.body[:120]))
    check(f"{len(ids)} offers re-priced: 200, price_changed false, same id and price", not bad, bad[:3])
    # offer ids survive percent-encoding of their characters
    oid = ids[0][0]
    enc = "".join("%%%02X" % ord(ch) for ch in oid[:6]) + oid[6:]
    r = get(port, "/v1/offers/" + enc)
    check("percent-encoded offer id decodes to the same offer", r.status == 200 and r.json()["data"]["id"] == oid,
          r.status)
    tampered = []
    for oid, _, _ in ids[:10]:
        for t in (tamper(oid), oid[:-2], oid + "00", oid.upper()):
            r = get(port, "/v1/offers/" + t)
            j = r.json() or {}
            e = (j.get("errors") or [{}])[0]
            if r.status != 400 or e.get("code") != "invalid_offer_id":
                tampered.append((t[:30], r.status, r.body[:100]))
    check("40 tampered/truncated/extended/uppercased ids: 400 invalid_offer_id", not tampered, tampered[:3])
    r = get(port, "/v1/offers/" + tamper(ids[0][0]))
    check_error("tampered offer id names the parameter (openapi: source.parameter = id)", r, 400,
                "invalid_offer_id", "id")

    # -- admin token
    r = req(port, "POST", "/admin/reload")
    check_error("POST /admin/reload without Authorization", r, 401, "unauthorized", need_param=False)
    check("401 carries WWW-Authenticate: Bearer", (r.h("www-authenticate") or "").startswith("Bearer"), r.headers)
    r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer wrong-token"})
    check_error("POST /admin/reload with a wrong token", r, 403, "forbidden", need_param=False)
    r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN + "x"})
    check_error("POST /admin/reload with the token plus one char", r, 403, "forbidden", need_param=False)
    r = req(port, "POST", "/admin/reload", {"Authorization": "Basic " + base64.b64encode(b"a:" + TOKEN.encode()).decode()})
    check("POST /admin/reload with Basic auth refused", r.status in (401, 403), r.status)
    r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
    check_success("POST /admin/reload, nothing new", r, dict)
    check("reload with nothing new: changed false", r.json()["data"].get("changed") is False, r.body[:200])

    # -- a second snapshot without flight 102 (RUN-MRU), published on the same path
    old_sid = snapshot_id(port)
    f2 = os.path.join(work, "feeds2")
    os.makedirs(f2, exist_ok=True)
    feeds2 = dict(feeds)
    with open(feeds["ssim"], "rb") as f:
        lines = f.read().split(b"\n")
    kept = [l for l in lines if not (l.startswith(b"3 XX  102") or l.startswith(b"4 XX  102"))]
    feeds2["ssim"] = os.path.join(f2, "sched.ssim")
    with open(feeds2["ssim"], "wb") as f:
        f.write(b"\n".join(kept))
    with open(feeds["availability"]) as f:
        av = [l for l in f if not l.startswith("XX,102,")]
    feeds2["availability"] = os.path.join(f2, "availability.csv")
    with open(feeds2["availability"], "w") as f:
        f.writelines(av)
    p = run_indexer(bin_dir, feeds2, feeds["out"], use_flock=use_flock)
    if p.returncode != 0:
        p = run_indexer(bin_dir, feeds2, feeds["out"], lenient=True, use_flock=use_flock)
    check("indexer publishes a schedule without XX 102 on the same --out", p.returncode == 0, p.stderr[-500:])
    r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
    check_success("POST /admin/reload after publishing", r, dict)
    new_sid = r.json()["data"].get("snapshot_id")
    check("reload swapped the snapshot (data.snapshot_id new)", new_sid and new_sid != old_sid, (old_sid, new_sid))
    sr = get(port, SEARCH)
    check("search meta.snapshot_id is the new one", sr.json()["meta"].get("snapshot_id") == new_sid,
          sr.json()["meta"])
    gone = [x for x in ids if "102" in x[1]]
    kept_ids = [x for x in ids if "102" not in x[1]]
    check("some offers used XX 102", gone, len(gone))
    bad = []
    for oid, _, _ in gone:
        r = get(port, "/v1/offers/" + oid)
        e = ((r.json() or {}).get("errors") or [{}])[0]
        if r.status != 410 or e.get("code") != "offer_expired" or r.h("x-request-id") != r.json()["meta"]["request_id"]:
            bad.append((r.status, r.body[:150]))
    check(f"{len(gone)} offers on XX 102 after its removal: 410 offer_expired envelope", not bad, bad[:3])
    bad = []
    for oid, _, price in kept_ids:
        r = get(port, "/v1/offers/" + oid)
        d = (r.json() or {}).get("data") or {}
        if r.status != 200 or d.get("price_changed") is not False:
            bad.append((r.status, r.body[:150]))
    check(f"{len(kept_ids)} offers on other flights still 200 after the reload (ids stable across reloads)", not bad,
          bad[:3])

    # -- a corrupt generation published on the path: refused, the old one keeps serving
    snap_link = feeds["out"]
    good_target = os.readlink(snap_link)
    good_dir = os.path.join(os.path.dirname(snap_link), good_target)
    bad_name = os.path.basename(good_target) + "-corrupt"
    bad_dir = os.path.join(os.path.dirname(snap_link), bad_name)
    shutil.rmtree(bad_dir, ignore_errors=True)
    shutil.copytree(good_dir, bad_dir)
    biggest = max((os.path.join(dp, fn) for dp, _, fns in os.walk(bad_dir) for fn in fns), key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.seek(os.path.getsize(biggest) // 2)
        b = f.read(16)
        f.seek(os.path.getsize(biggest) // 2)
        f.write(bytes(x ^ 0xFF for x in b))
    fails_before = metric_value(port, "searchd_snapshot_reload_failures_total")
    tmp_link = snap_link + ".audit-tmp"
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(bad_name, tmp_link)
    os.replace(tmp_link, snap_link)
    try:
        r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
        check_error(f"POST /admin/reload with a corrupt generation ({os.path.basename(biggest)})", r, 409,
                    "snapshot_rejected", need_param=False)
        sr = get(port, SEARCH)
        check("after the refused reload, the old snapshot still serves",
              sr.status == 200 and sr.json()["meta"].get("snapshot_id") == new_sid and snapshot_id(port) == new_sid,
              sr.body[:200])
        time.sleep(1.2)  # the watcher ticks every 500 ms
        check("the watcher does not swap the corrupt generation in either", snapshot_id(port) == new_sid)
        check("searchd_snapshot_reload_failures_total grew",
              metric_value(port, "searchd_snapshot_reload_failures_total") > fails_before)
        check("readyz still 200", get(port, "/readyz").status == 200)
        # a link naming nothing
        os.symlink(".does-not-exist", tmp_link)
        os.replace(tmp_link, snap_link)
        r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
        check("POST /admin/reload with the link naming a missing directory: 409 or 500, old one serves",
              r.status in (409, 500) and snapshot_id(port) == new_sid, (r.status, r.body[:200]))
    finally:
        os.symlink(good_target, tmp_link)
        os.replace(tmp_link, snap_link)
        shutil.rmtree(bad_dir, ignore_errors=True)
    r = req(port, "POST", "/admin/reload", {"Authorization": "Bearer " + TOKEN})
    check("link restored: reload 200, same snapshot", r.status == 200 and r.json()["data"]["snapshot_id"] == new_sid,
          r.body[:200])


def metric_value(port, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", get(port, "/metrics").body.decode(), re.M)
    return float(m.group(1)) if m else -1


# --- calendar -----------------------------------------------------------------------------------

def t_calendar(port):
    r = get(port, "/v1/calendar?origin=RUN&destination=MRU&from=2005-06-01&to=2005-08-01")
    days = r.json()["data"]["days"] if r.status == 200 else []
    check("calendar of 62 days (inclusive) accepted, 62 entries", r.status == 200 and len(days) == 62, r.status)
    r = get(port, "/v1/calendar?origin=RUN&destination=MRU&from=2005-06-05&to=2005-06-05")
    check("calendar from = to: one day", r.status == 200 and len(r.json()["data"]["days"]) == 1, r.status)
    queries = [("RUN", "MRU", ""), ("MRU", "RUN", ""), ("RUN", "CDG", "&max_connections=2"),
               ("MRU", "CDG", "&max_connections=2"), ("RUN", "MRU", "&adults=2&children=1"),
               ("RUN", "MRU", "&cabin=economy&depart_after=07:00"), ("CDG", "RUN", "&max_connections=2"),
               ("RUN", "ZSE", "&max_connections=1&carriers=XX"), ("DZA", "RUN", "&max_connections=2")]
    mism, compared, priced = [], 0, 0
    for o, dst, extra in queries:
        r = get(port, f"/v1/calendar?origin={o}&destination={dst}&from=2005-06-01&to=2005-07-15{extra}")
        if r.status != 200:
            mism.append((o, dst, extra, r.status, r.body[:200]))
            continue
        for day in r.json()["data"]["days"]:
            s = get(port, f"/v1/search?origin={o}&destination={dst}&date={day['date']}&sort=price&limit=1{extra}")
            its = s.json()["data"]["itineraries"]
            first = its[0] if its else None
            compared += 1
            if first is not None:
                priced += 1
            want = (first["id"] if first else None, first["price"] if first else None)
            if (day["itinerary_id"], day["lowest_price"]) != want:
                mism.append((o, dst, extra, day, want))
    check(f"calendar itinerary_id/lowest_price = first sort=price search ({compared} days, {priced} priced)",
          not mism and priced > 10, mism[:3])


# --- graceful shutdown --------------------------------------------------------------------------

def t_shutdown(bin_dir, snap, port, work, big):
    log = os.path.join(work, "shutdown.log")
    sd = Searchd(bin_dir, snap, port, log, token=None, now=BIG_NOW if big else NOW)
    if big:
        targets = big
    else:
        targets = ["/v1/calendar?origin=RUN&destination=CDG&from=2005-06-01&to=2005-08-01&max_connections=2"]
    t0 = time.time()
    r = get(port, targets[0])
    single = time.time() - t0
    results = []
    lock = threading.Lock()
    stop_at = [None]

    def worker(i):
        # keeps sending slow requests on one connection until the server closes it
        c = Conn(port, timeout=60)
        n = 0
        try:
            while True:
                t = targets[(i + n) % len(targets)]
                sent = time.time()
                try:
                    c.send(build("GET", t, {"X-Request-Id": f"sd-{i}-{n}"}))
                except OSError as e:
                    with lock:
                        results.append(("send-failed", sent, None))
                    return
                try:
                    rr = c.read_response()
                    with lock:
                        results.append(("ok" if rr.status == 200 else f"status {rr.status}", sent, rr))
                except (EOFError, ConnectionError) as e:
                    with lock:
                        results.append(("closed-unanswered", sent, repr(e)))
                    return
                n += 1
                if (rr.h("connection") or "").lower() == "close":
                    return
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    in_flight_before = metric_value(port, "searchd_http_requests_in_flight")
    sd.p.send_signal(signal.SIGTERM)
    sigterm = time.time()
    time.sleep(0.2)
    refused = False
    try:
        c = Conn(port, timeout=2)
        try:
            r = c.request("GET", "/healthz")
            refused = False
        except (EOFError, ConnectionError):
            refused = True
        c.close()
    except (ConnectionRefusedError, OSError):
        refused = True
    check("after SIGTERM new connections are refused", refused)
    try:
        rc = sd.p.wait(40)
    except subprocess.TimeoutExpired:
        rc = "timeout"
    exit_after = time.time() - sigterm
    for t in threads:
        t.join(30)
    sd.stop()
    unanswered = [r for r in results if r[0] == "closed-unanswered" and r[1] < sigterm]
    answered_after = [r for r in results if r[0] == "ok" and r[1] < sigterm and r[2] is not None]
    non200 = [r for r in results if r[0].startswith("status")]
    print(f"     shutdown: one slow request took {single * 1000:.0f} ms; {len(results)} requests, in flight at "
          f"SIGTERM ~{in_flight_before:.0f}, exit after {exit_after:.1f}s", flush=True)
    check("SIGTERM: requests sent before it were all answered (none cut)", not unanswered and answered_after,
          (len(unanswered), unanswered[:2]))
    check("SIGTERM: no non-200 answers to the slow requests", not non200, [(r[0], r[2].body[:100]) for r in non200[:2]])
    check("searchd exits 0 after SIGTERM", rc == 0, rc)
    lines = [l for l in open(log, encoding="utf-8", errors="replace").read().splitlines()]
    check("shutdown logged (draining, drained)", any("draining" in l for l in lines)
          and any("drained" in l for l in lines), lines[-3:])


# --- logs -------------------------------------------------------------------------------------

def t_logs(sd, port):
    r = get(port, "/v1/places?q=lon&limit=1", {"X-Request-Id": "log-probe-1"})
    r2 = get(port, "/v1/search?origin=RUN")
    time.sleep(1.5)  # access lines are batched
    lines = sd.log_lines()
    bad, objs = [], []
    for l in lines:
        try:
            o = json.loads(l)
            objs.append(o)
            if not all(k in o for k in ("timestamp", "level", "message")):
                bad.append(l[:120])
        except ValueError:
            bad.append(l[:120])
    check(f"stderr: all {len(lines)} lines are JSON objects with timestamp/level/message", not bad and lines, bad[:3])
    acc = {o.get("request_id"): o for o in objs if o.get("message") == "request"}
    o = acc.get("log-probe-1")
    check("access line for the caller's X-Request-Id with method/path/route/status/latency",
          o and o.get("status") == 200 and o.get("route") == "places" and o.get("method") == "GET"
          and o.get("path") == "/v1/places?q=lon&limit=1" and isinstance(o.get("latency_us"), int), o)
    o = acc.get(r2.h("x-request-id"))
    check("access line for a generated X-Request-Id (400)", o and o.get("status") == 400, o)


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--work", default="/tmp/searchd-audit")
    ap.add_argument("--port", type=int, default=19301)
    ap.add_argument("--big-snapshot", default=None)
    ap.add_argument("--no-flock", action="store_true")
    ap.add_argument("--skip-slow", action="store_true", help="skip the slow-client test (~45 s)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    D = os.path.join(ROOT, "fixtures", "data")
    feeds = {"ssim": f"{D}/gna_iata_sample.ssim", "airports": f"{D}/airports.csv", "metros": f"{D}/metro_areas.csv",
             "mct": f"{D}/small/mct.csv", "fares": f"{D}/small/fares.csv",
             "availability": f"{D}/small/availability.csv", "out": os.path.join(a.work, "snap")}
    p = run_indexer(a.bin, feeds, feeds["out"], use_flock=not a.no_flock)
    if p.returncode != 0:
        sys.exit("indexer failed: " + p.stderr)
    with open(os.path.join(ROOT, "searchd", "openapi.json"), "rb") as f:
        repo_openapi = f.read()
    port = a.port
    sd = Searchd(a.bin, feeds["out"], port, os.path.join(a.work, "searchd.log"))
    slow = {}
    try:
        if not a.skip_slow:
            th = threading.Thread(target=lambda: slow.update(r=t_slow_client(port)))
            th.start()
        t_endpoints(port, repo_openapi)
        t_errors(port)
        t_methods(port)
        t_limits(port)
        t_keepalive(port)
        t_h2c(port)
        t_metrics(port)
        t_calendar(port)
        t_logs(sd, port)
        t_conn_limit(a.bin, feeds["out"], port + 1, a.work)
        t_default_conn_limit(port)
        if a.big_snapshot:
            t_request_timeout(a.bin, a.big_snapshot, port + 3, a.work)
        big = BIG_TARGETS if a.big_snapshot else None
        t_shutdown(a.bin, a.big_snapshot if big else feeds["out"], port + 2, a.work, big)
        t_offers_and_reload(port, a.bin, a.work, feeds, not a.no_flock)
        if not a.skip_slow:
            th.join()
            outcome, secs = slow["r"]
            print(f"     slow client (1 header byte / 0.5 s): {outcome}", flush=True)
            check("a slow client sending headers byte by byte is cut off within 30 s",
                  not outcome.startswith("still open") and secs <= 30, outcome)
        r = get(port, "/healthz")
        check("server still healthy at the end", r.status == 200)
    finally:
        rc = sd.stop()
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
    check("main searchd exits 0 on SIGTERM", rc == 0, rc)
    # restore the bundled-feed snapshot for whoever runs next
    run_indexer(a.bin, feeds, feeds["out"], use_flock=not a.no_flock)
    failed = [r for r in RESULTS if not r[0]]
    print(f"\n{len(RESULTS)} checks, {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    for _, n, d in failed:
        print("  FAIL", n)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

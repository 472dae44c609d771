#!/usr/bin/env bash
# The main job on a fresh Debian machine (run as root): install PostgreSQL, build, index
# the feeds that ship in fixtures/data, start searchd and bookd (embedded PostgreSQL), and
# print a sample search and a sample booking. Stops both services on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${DEMO_DIR:-/tmp/appliance-demo}
SEARCH_ADDR=${SEARCH_ADDR:-127.0.0.1:18080}
BOOK_ADDR=${BOOK_ADDR:-127.0.0.1:18081}
# The Gna sample is a 2005 schedule: run the services' clock then.
NOW=2005-06-01T08:00:00Z

bash scripts/install-postgres.sh
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }

cargo build --release -p indexer -p searchd -p bookd
BIN=target/release
mkdir -p "$WORK"
chmod 711 "$WORK"   # the embedded cluster runs as the postgres user

D=fixtures/data
"$BIN/indexer" build \
  --ssim "$D/gna_iata_sample.ssim" --airports "$D/airports.csv" --metros "$D/metro_areas.csv" \
  --mct "$D/small/mct.csv" --fares "$D/small/fares.csv" --availability "$D/small/availability.csv" \
  --out "$WORK/snapshot"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$BIN/searchd" --snapshot "$WORK/snapshot" --listen "$SEARCH_ADDR" --now "$NOW" \
  >"$WORK/searchd.log" 2>&1 &
pids+=($!)
"$BIN/bookd" --listen "$BOOK_ADDR" --snapshot "$WORK/snapshot" --state-dir "$WORK/state" \
  --now "$NOW" >"$WORK/bookd.log" 2>&1 &
pids+=($!)

wait_ready() {
  for _ in $(seq 1 300); do
    if curl -fsS "http://$1/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: $2 did not become ready; its log:" >&2
  cat "$WORK/$2.log" >&2
  return 1
}
wait_ready "$SEARCH_ADDR" searchd
wait_ready "$BOOK_ADDR" bookd

KEY=$("$BIN/bookd" keys create --name "demo-$(date +%s%N)" --state-dir "$WORK/state")

echo
echo "== GET /v1/search?origin=RUN&destination=MRU&date=2005-06-16 (searchd at $SEARCH_ADDR)"
SEARCH=$(curl -fsS "http://$SEARCH_ADDR/v1/search?origin=RUN&destination=MRU&date=2005-06-16&limit=3")
echo "$SEARCH" | python3 -m json.tool

OFFER=$(echo "$SEARCH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["itineraries"][0]["id"])')
TOTAL=$(echo "$SEARCH" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["data"]["itineraries"][0]["price"]))')

echo
echo "== POST /v1/orders (bookd at $BOOK_ADDR) for offer $OFFER"
curl -fsS -X POST "http://$BOOK_ADDR/v1/orders" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -H "Idempotency-Key: demo-$(date +%s%N)" \
  -d "{\"offer_id\": \"$OFFER\",
       \"passengers\": [{\"type\": \"adult\", \"given_name\": \"Ada\", \"family_name\": \"Lovelace\", \"born_on\": \"1985-12-10\"}],
       \"contact\": {\"email\": \"ada@example.com\"},
       \"payment\": {\"type\": \"card\", \"token\": \"tok_ok\"},
       \"expected_total\": $TOTAL}" | python3 -m json.tool
echo
echo "demo: done (snapshot, logs and database under $WORK)"

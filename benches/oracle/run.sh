#!/bin/sh
# Rebuild feeds + snapshots, start 5 searchd (ports 19101-19105), compare searches and
# places, stop them.
set -e
cd "$(dirname "$0")/../.."
F=${FIXTURES:-../shared/fixtures}; O=/tmp/oracle-feeds; B=target/release
if [ ! -f "$F/nycflights13_2013.ssim" ]; then
  echo "skipped: $F/nycflights13_2013.ssim not found (set FIXTURES to the shared fixtures)"
  exit 0
fi
flock /tmp/bench.lock cargo build --release -p indexer -p searchd
python3 benches/oracle/gen.py $O
snap() { # name ssim metros fares
  rm -rf /tmp/oracle-snap-$1
  flock /tmp/bench.lock $B/indexer build --ssim $2 --airports $F/airports.csv --metros $3 --mct $O/$5/mct.csv \
    --fares $4 --availability $O/$5/availability.csv --out /tmp/oracle-snap-$1 >/dev/null
}
snap gna  $F/gna_iata_sample.ssim      $F/metro_areas.csv   $O/gna/fares.csv   gna
snap nyc  $F/nycflights13_2013.ssim    $F/metro_areas.csv   $O/nyc/fares.csv   nyc
snap gnaU $O/gna_iata_sample_U.ssim    $F/metro_areas.csv   $O/gna/fares.csv   gna
snap nycU $O/nycflights13_2013_U.ssim  $F/metro_areas.csv   $O/nyc/fares.csv   nyc
snap gnaM $F/gna_iata_sample.ssim      $O/gna-m/metros.csv  $O/gna-m/fares.csv gna
PIDS=""
start() { $B/searchd --snapshot /tmp/oracle-snap-$1 --listen 127.0.0.1:$2 --now $3 >/tmp/oracle-searchd-$1.log 2>&1 & PIDS="$PIDS $!"; }
start gna 19101 2005-05-20T00:00:00Z; start nyc 19102 2013-01-01T00:00:00Z
start gnaU 19103 2005-05-20T00:00:00Z; start nycU 19104 2013-01-01T00:00:00Z
start gnaM 19105 2005-05-20T00:00:00Z
trap 'kill $PIDS' EXIT
sleep 2
C="flock /tmp/bench.lock python3 benches/oracle/compare.py --feeds $O"
$C --seed 7 --n 600 --out /tmp/oracle-report-main.json
$C --seed 3 --n 600 --utc-mode 1 --gna-url http://127.0.0.1:19103 --nyc-url http://127.0.0.1:19104 --out /tmp/oracle-report-utc.json
$C --only gna --seed 5 --n 600 --metro-variant 1 --gna-url http://127.0.0.1:19105 --out /tmp/oracle-report-metro.json
P="flock /tmp/bench.lock python3 benches/oracle/places_check.py"
$P --url http://127.0.0.1:19102 --ssim $F/nycflights13_2013.ssim --seed 11 --n 300 --out /tmp/oracle-report-places-nyc.json
$P --url http://127.0.0.1:19101 --ssim $F/gna_iata_sample.ssim --seed 12 --n 150 --out /tmp/oracle-report-places-gna.json

#!/usr/bin/env bash
# Kills random containers of this compose project on a schedule, restarts them, and checks at the end what
# `islands chaos` checks for a local cluster: jobs completed, every published checkpoint verified, requests served and
# lost. Run it from the repository root with the project up (docker compose [--profile ha] up -d):
#   ISLANDS_API_KEY=... docker/chaos.sh [--kill-every 30] [--duration 600]
# Only containers of this project's island and serving services are touched (never postgres or data-prep).
set -euo pipefail
kill_every=30
duration=600
while [ $# -gt 0 ]; do
  case "$1" in
    --kill-every) kill_every=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    *) echo "usage: $0 [--kill-every SECONDS] [--duration SECONDS]" >&2; exit 2 ;;
  esac
done
: "${ISLANDS_API_KEY:?set ISLANDS_API_KEY to a key of the serving nodes}"
compose="docker compose"
$compose version >/dev/null 2>&1 || compose="docker-compose"
api=${ISLANDS_API_URL:-http://127.0.0.1:8080}
log=$(mktemp -d)
echo "chaos: logs in $log"

# Steady load: one client in a loop; every answer's HTTP code is recorded (000 = connection refused or dropped).
(
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 300 -H "Authorization: Bearer $ISLANDS_API_KEY" -H 'Content-Type: application/json' \
      -H "Idempotency-Key: chaos-$RANDOM-$RANDOM" -d '{"count":4,"steps":20}' "$api/v1/generations" || true)
    echo "$code" >> "$log/requests"
    sleep 1
  done
) &
load=$!
trap 'kill $load 2>/dev/null || true' EXIT

end=$(( $(date +%s) + duration ))
kills=0
while [ "$(date +%s)" -lt "$end" ]; do
  sleep "$kill_every"
  mapfile -t victims < <($compose ps --services --filter status=running | grep -E '^(expert-|router|serving-)' || true)
  [ ${#victims[@]} -gt 0 ] || continue
  victim=${victims[$((RANDOM % ${#victims[@]}))]}
  echo "$(date +%T) kill -9 $victim"
  $compose kill -s SIGKILL "$victim" >/dev/null
  kills=$((kills + 1))
  sleep 5
  $compose start "$victim" >/dev/null
  echo "$(date +%T) restarted $victim" >> "$log/kills"
done
kill $load 2>/dev/null || true

echo
echo "| check | result |"
echo "|---|---|"
echo "| kills | $kills |"
for island in expert-0 expert-1 expert-2 expert-3 router; do
  status=$($compose exec -T "$island" /app/islands status --url http://127.0.0.1:8080 --json 2>/dev/null || echo '{}')
  phase=$(echo "$status" | grep -o '"phase": *"[a-z-]*"' | head -1 | cut -d'"' -f4)
  recoveries=$(echo "$status" | grep -o '"recoveries": *[0-9]*' | head -1 | grep -o '[0-9]*$')
  echo "| $island | ${phase:-unreachable}, recoveries ${recoveries:-?} |"
done
verified=$($compose exec -T serving-0 sh -c 'ls /store/*/published.json 2>/dev/null | wc -l')
refused=$(curl -s -H "Authorization: Bearer $ISLANDS_API_KEY" "$api/v1/experts" | grep -o '"refused": *\[[^]]*\]' || true)
echo "| published checkpoints | $verified (registry: ${refused:-unknown}) |"
served=$(grep -c '^200$' "$log/requests" || true)
lost=$(grep -vc '^200$' "$log/requests" || true)
echo "| requests served | $served |"
echo "| requests not answered 200 | $lost (connection drops while the API node itself was killed are retried by real clients with the same Idempotency-Key) |"

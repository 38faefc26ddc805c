#!/usr/bin/env bash
# Islands against the PyTorch reference (docs/bench/pytorch_reference.py) on this machine, in alternating rounds
# (Islands, PyTorch, Islands, PyTorch, ...) so that drift in a shared VM's speed hits both alike. Both use Islands'
# malloc settings. Needs Debian's python3-torch (apt-get install python3-torch); it is not a dependency of Islands.
#   docs/bench/compare_pytorch.sh [rounds=3] [steps=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
steps=${2:-10}
out=$(mktemp -d)
export MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; ${rounds} rounds, ${steps} timed training steps, batch 128, 2 threads"
for r in $(seq "$rounds"); do
  ./islands --threads 2 --json bench train --steps "$steps" > "$out/islands-train-$r.json" 2>/dev/null
  ./islands --threads 2 --json bench sample --experts 0 > "$out/islands-sample-$r.json" 2>/dev/null
  /usr/bin/python3 docs/bench/pytorch_reference.py --steps "$steps" > "$out/pytorch-$r.txt"
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {k: ([], []) for k in ["train fp32", "train bf16", "sample fp32", "sample bf16"]}
path = None
for r in range(1, rounds + 1):
    t = json.load(open(f"{out}/islands-train-{r}.json"))
    s = json.load(open(f"{out}/islands-sample-{r}.json"))
    path = t["numerics"]["path"]
    for res in t["results"]:
        rows[f"train {res['precision']}"][0].append(res["imagesPerSecond"])
    rows["sample fp32"][0].append(s["single"]["imagesPerSecond"])
    rows["sample bf16"][0].append(s["bf16"]["imagesPerSecond"])
    for line in open(f"{out}/pytorch-{r}.txt"):
        m = re.match(r"(train|sample) (fp32|bf16): ([0-9.]+)", line)
        if m:
            rows[f"{m[1]} {m[2]}"][1].append(float(m[3]))
print(f"Islands kernel path: {path}")
print(f"{'images/s (median)':<20}{'Islands':>10}{'PyTorch':>10}{'ratio':>8}   per round Islands/PyTorch")
for k, (a, b) in rows.items():
    ratios = [x / y for x, y in zip(a, b)]
    print(f"{k:<20}{statistics.median(a):>10.1f}{statistics.median(b):>10.1f}{statistics.median(ratios):>8.2f}   {' '.join(f'{x:.2f}' for x in ratios)}")
PY

#!/usr/bin/env bash
# Embedding throughput on CPU: secvec's encoder against sentence-transformers, same model
# (all-MiniLM-L6-v2 from .models/minilm), same texts, same batch size, one after the other in
# one run. Run from the repo root after scripts/setup.sh:
#   model/bench/embed_vs_sentence_transformers.sh [TEXTS] [BATCH]
# TEXTS (default 512) functions from SVEN's train split in $SECVEC_DATA (else ../shared/data),
# each truncated by both sides at the model's 256 tokens.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
n=${1:-512}
batch=${2:-32}
data=${SECVEC_DATA:-$root/../shared/data}
work="$root/bench-work/embed"
mkdir -p "$work"
cargo build --release --quiet --example embed_bench -p secvec-model
.venv/bin/python - "$data" "$n" "$work/texts.json" <<'PY'
import glob, json, sys
data, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
texts = []
for f in sorted(glob.glob(f"{data}/sven/data_train_val/train/*.jsonl")):
    for line in open(f):
        texts.append(json.loads(line)["func_src_after"])
json.dump(texts[:n], open(out, "w"))
PY
echo "| side | texts | batch | load (s) | embed (s) | texts/s |"
echo "|---|---|---|---|---|---|"
out=$(target/release/examples/embed_bench .models/minilm "$work/texts.json" "$batch")
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"| secvec | {d['texts']} | {sys.argv[2]} | {d['load_s']:.2f} | {d['embed_s']:.2f} | {d['texts']/d['embed_s']:.1f} |\")" "$out" "$batch"
HF_HUB_OFFLINE=1 .venv/bin/python - "$work/texts.json" "$batch" <<'PY' 2>/dev/null
import json, sys, time
t = time.perf_counter()
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(".models/minilm", device="cpu")
load = time.perf_counter() - t
texts, batch = json.load(open(sys.argv[1])), int(sys.argv[2])
t = time.perf_counter()
m.encode(texts, batch_size=batch)
embed = time.perf_counter() - t
print(f"| sentence-transformers 6.2.0 | {len(texts)} | {batch} | {load:.2f} | {embed:.2f} | {len(texts)/embed:.1f} |")
PY

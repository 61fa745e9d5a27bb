#!/usr/bin/env bash
# BM25 index and query time: secvec's index against bm25s and rank_bm25 on the same corpus,
# one after another in one run. Run from the repo root after scripts/setup.sh:
#   retrieval/bench/bm25_vs_peers.sh
# The corpus: every function (before and after its fix) of SVEN's train split and SafeCoder's
# sec-new-desc.jsonl from $SECVEC_DATA (else ../shared/data); the queries: the first 30 tokens
# of each function. Every side scores every document for every query (no top-k shortcut).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
data=${SECVEC_DATA:-$root/../shared/data}
work="$root/bench-work/bm25"
mkdir -p "$work"
cargo build --release --quiet --example bm25_bench -p secvec-retrieval
.venv/bin/python - "$data" "$work/corpus.json" <<'PY'
import glob, json, re, sys
data, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{data}/sven/data_train_val/train/*.jsonl")) + [f"{data}/safecoder/data_train_val/train/sec-new-desc.jsonl"]
docs = []
for f in files:
    for line in open(f):
        r = json.loads(line)
        docs += [r["func_src_before"], r["func_src_after"]]
tok = lambda s: [t.decode() for t in re.findall(rb"[a-z0-9_]+", s.encode().lower())]
queries = [" ".join(tok(d)[:30]) for d in docs]
json.dump({"documents": docs, "queries": queries}, open(out, "w"))
PY
echo "| side | documents | queries | index (s) | all queries (s) | per query (ms) |"
echo "|---|---|---|---|---|---|"
out=$(target/release/examples/bm25_bench "$work/corpus.json")
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"| secvec (Okapi) | {d['documents']} | {d['queries']} | {d['index_s']:.3f} | {d['query_s']:.3f} | {1000*d['query_s']/d['queries']:.3f} |\")" "$out"
.venv/bin/python - "$work/corpus.json" <<'PY'
import json, re, sys, time
import numpy as np
import bm25s
from rank_bm25 import BM25Okapi
job = json.load(open(sys.argv[1]))
tok = lambda s: [t.decode() for t in re.findall(rb"[a-z0-9_]+", s.encode().lower())]
for name in ["bm25s (lucene)", "rank_bm25 (Okapi)"]:
    t = time.perf_counter()
    corpus = [tok(d) for d in job["documents"]]
    if name.startswith("bm25s"):
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
    else:
        index = BM25Okapi(corpus)
    index_s = time.perf_counter() - t
    queries = [tok(q) for q in job["queries"]]
    t = time.perf_counter()
    checksum = 0.0
    for q in queries:
        checksum += float(np.sum(index.get_scores(q)))
    query_s = time.perf_counter() - t
    print(f"| {name} | {len(corpus)} | {len(queries)} | {index_s:.3f} | {query_s:.3f} | {1000*query_s/len(queries):.3f} |")
PY

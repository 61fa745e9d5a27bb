#!/usr/bin/env bash
# Sets up secvec and runs the quickstart manifest end to end on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --locked
target/release/secvec run manifests/quickstart.yaml
echo
echo "Outputs are under out/quickstart/<stage>/; the reports:"
cat out/quickstart/report/report.md out/quickstart/model-report/report.md out/quickstart/training-report/report.md \
  out/quickstart/task-vector-report/report.md "out/quickstart/smollm2-report@method=llm-alone/report.md" out/quickstart/oracle-report/report.md \
  out/quickstart/kb-report/report.md out/quickstart/rescue-report/report.md

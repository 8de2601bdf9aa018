#!/usr/bin/env bash
# Time for the real StatefulSet controller to create 500 pods at once (one Parallel
# StatefulSet scaled from 0 to 500) with no webhook registered and with sts-guard (release
# build, cluster mode, as the chart's ServiceAccount) behind the chart's Service over HTTP/1.1,
# in turns on one control plane; prints the medians and their ratio.
#   bench/burst.sh                 # 3 rounds of each
#   ROUNDS=5 PODS=500 bench/burst.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(tests/e2e/build-control-plane.sh)
cargo build --release --locked --quiet --bin sts-guard
python=$(scripts/venv)
E2E_BIN_DIR="$bin_dir" STS_GUARD_BIN="$PWD/target/release/sts-guard" "$python" bench/burst.py

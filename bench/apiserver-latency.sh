#!/usr/bin/env bash
# The latency kube-apiserver adds per StatefulSet create and delete: no webhook, sts-guard (cluster
# mode, as the chart's ServiceAccount: the image behind the Service, the release build at the
# loopback URL) and the reference webhook
# ../shared/bench/peer-go, registered in turn on one real control plane (see scripts/e2e), in one
# run. Prints p50/p99 and ratios against the no-webhook baseline.
#   bench/apiserver-latency.sh                 # 5 rounds x 100 = 500 creates and deletes each
#   ROUNDS=10 PER_ROUND=100 bench/apiserver-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(tests/e2e/build-control-plane.sh)
cargo build --release --locked --quiet --bin sts-guard
image=$(scripts/image)
python=$(scripts/venv)
E2E_BIN_DIR="$bin_dir" STS_GUARD_BIN="$PWD/target/release/sts-guard" STS_GUARD_IMAGE="$image" \
  "$python" bench/apiserver_latency.py

#!/usr/bin/env bash
# Webhook load benchmark: the release server pinned to core 0, h2load pinned to core 1, over
# HTTP/2 with TLS on loopback. Reports rps, p50 and p99 for
#   /validate with a ~4 KB StatefulSet CREATE, /mutate with a ~4 KB Pod CREATE, and /validate
#   with that Pod CREATE (no validating rule reads it: passed through),
# next to a floor measured in the same run: the same TLS stack with a trivial handler
# (examples/bench_floor.rs). Also peak RSS of the server.
#
#   bench/webhook.sh            # defaults: 4 connections, 1 stream each, 100000 requests
#   CONNS=4 STREAMS=8 REQUESTS=200000 bench/webhook.sh
#
# Needs h2load (Debian package nghttp2-client) and taskset; installs h2load with apt-get
# when it is missing and apt-get is available.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-4}
STREAMS=${STREAMS:-1}
REQUESTS=${REQUESTS:-100000}
WARMUP=${WARMUP:-10000}
PORT_WEBHOOK=${PORT_WEBHOOK:-18443}
PORT_FLOOR=${PORT_FLOOR:-18444}

if ! command -v h2load >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --release --quiet --bin sts-guard --example bench_floor

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/sts-guard certs --dns localhost 127.0.0.1 --out "$work/certs" >/dev/null
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
last_applied = "x" * 2100  # kubectl's last-applied annotation makes real objects this large
def review(uid, kind, group, resource, name, obj):
    gv = {"group": group, "version": "v1"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": dict(gv, kind=kind), "resource": dict(gv, resource=resource),
        "requestKind": dict(gv, kind=kind), "requestResource": dict(gv, resource=resource),
        "name": name, "namespace": "demo", "operation": "CREATE",
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}
container = {"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.27",
    "ports": [{"containerPort": 80, "name": "web", "protocol": "TCP"}],
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}],
    "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5},
    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}
sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "nginx", "app.kubernetes.io/name": "web"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
    "spec": {"serviceName": "nginx", "replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
        "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [container],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}},
        "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}],
        "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}}
pod = {"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "demo", "generateName": "web-",
        "labels": {"app": "nginx", "apps.kubernetes.io/pod-index": "1", "statefulset.kubernetes.io/pod-name": "web-1"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "b1c9a0a4-5d7e-4a53-8f5f-3f8e6f3d2c11", "controller": True, "blockOwnerDeletion": True}]},
    "spec": {"hostname": "web-1", "subdomain": "nginx", "containers": [container], "restartPolicy": "Always",
        "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}],
        "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "serviceAccountName": "default"}}
for name, body in [("validate", review("3f6a1c52-2a9e-4c3e-9d57-0e5b1d7e2a10", "StatefulSet", "apps", "statefulsets", "web", sts)),
                   ("mutate", review("9a0e3b7d-41c2-4f0b-8a51-7c2d6e9f1b34", "Pod", "", "pods", "web-1", pod))]:
    with open(f"{work}/{name}.json", "w") as f:
        json.dump(body, f)
PY

wait_for() { for _ in $(seq 100); do grep -q "listening on" "$1" 2>/dev/null && return 0; sleep 0.1; done; cat "$1"; exit 1; }

RUST_LOG=${RUST_LOG:-info} taskset -c 0 target/release/sts-guard serve --addr "127.0.0.1:$PORT_WEBHOOK" \
  --manifests examples/manifests --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
  --log-format json 2>"$work/webhook.log" &
webhook_pid=$!; pids+=("$webhook_pid")
taskset -c 0 target/release/examples/bench_floor "127.0.0.1:$PORT_FLOOR" "$work/certs/tls.crt" "$work/certs/tls.key" 2>"$work/floor.log" &
pids+=("$!")
wait_for "$work/webhook.log"; wait_for "$work/floor.log"

# Prints "rps p50_ms p99_ms" for one h2load run.
load() {
  local port=$1 path=$2 body=$3
  taskset -c 1 h2load -n "$WARMUP" -c "$CONNS" -m "$STREAMS" -t 1 -d "$body" \
    -H 'content-type: application/json' "https://127.0.0.1:$port$path" >/dev/null
  local out; out=$(taskset -c 1 h2load -n "$REQUESTS" -c "$CONNS" -m "$STREAMS" -t 1 -d "$body" \
    -H 'content-type: application/json' --log-file="$work/h2load.log" "https://127.0.0.1:$port$path")
  grep -q "$REQUESTS succeeded" <<<"$out" || { echo "$out" >&2; exit 1; }
  local rps; rps=$(grep -oE 'finished in [0-9.]+[a-z]+, [0-9.]+ req/s' <<<"$out" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
  python3 - "$work/h2load.log" "$rps" <<'PY'
import sys
d = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
q = lambda p: d[min(len(d) - 1, int(p * len(d)))] / 1000.0
print(f"{float(sys.argv[2]):.0f} {q(0.50):.3f} {q(0.99):.3f}")
PY
}

printf '%s\n' "webhook benchmark: h2load -c $CONNS -m $STREAMS -n $REQUESTS over HTTP/2+TLS; server on core 0, load on core 1"
printf '%-10s %-9s %10s %9s %9s %12s\n' endpoint server rps p50_ms p99_ms "rps/floor"
# endpoint:body — the third row is the pod CREATE on /validate, which no validating rule reads:
# answered from the envelope (passed through).
for row in validate:validate mutate:mutate validate:mutate; do
  endpoint=${row%%:*} body=${row#*:}
  size=$(stat -c %s "$work/$body.json")
  note="body $size bytes"
  [ "$endpoint" != "$body" ] && note="$note, Pod CREATE passed through"
  read -r frps fp50 fp99 < <(load "$PORT_FLOOR" "/$endpoint" "$work/$body.json")
  read -r wrps wp50 wp99 < <(load "$PORT_WEBHOOK" "/$endpoint" "$work/$body.json")
  ratio=$(python3 -c "print(f'{$wrps/$frps:.2f}')")
  printf '%-10s %-9s %10s %9s %9s %12s\n' "/$endpoint" floor "$frps" "$fp50" "$fp99" "1.00"
  printf '%-10s %-9s %10s %9s %9s %12s   (%s)\n' "/$endpoint" sts-guard "$wrps" "$wp50" "$wp99" "$ratio" "$note"
done
decisions=$(grep -c '"admission decision"' "$work/webhook.log" || true)
printf 'sts-guard peak RSS: %s (VmHWM); decision log lines written: %s\n' \
  "$(grep VmHWM /proc/$webhook_pid/status | awk '{print $2, $3}')" "$decisions"

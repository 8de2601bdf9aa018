#!/usr/bin/env bash
# Points this module at a Kubernetes release: requires k8s.io/kubernetes@vVERSION and replaces
# every staging module that release lists at v0.0.0 with the matching v0.MINOR.PATCH (a
# dependency's own replace lines into ./staging are ignored by Go). Run from tests/e2e:
#   ./pin-kubernetes.sh 1.37.2
set -euo pipefail
cd "$(dirname "$0")"
version=${1:?usage: pin-kubernetes.sh MAJOR.MINOR.PATCH (e.g. 1.37.2)}
staging=v0.${version#*.}
gomod=$(go mod download -json "k8s.io/kubernetes@v$version" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
go mod edit -require="k8s.io/kubernetes@v$version"
awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | sort -u | while read -r module; do
  go mod edit -replace="$module=$module@$staging"
done
go mod tidy

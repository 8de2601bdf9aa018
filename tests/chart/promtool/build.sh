#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) at the version pinned in this
# module (go.mod/go.sum, fetched through the Go module proxy) into a cache outside the checkout,
# keyed by that version, the Go version and this recipe, and prints the binary's path. A later
# run reuses the binary. The chart tests run `promtool check rules` on the PrometheusRule.
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "tests/chart/promtool/build.sh: go is required to build promtool" >&2; exit 1; }
version=$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
go_version=$(go env GOVERSION)
# The recipe (this script and the module graph) is part of the key: changing either rebuilds.
recipe=$(cat build.sh go.sum | sha256sum | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/sts-guard-promtool/prometheus-$version-$go_version-$recipe"
binary="$dir/promtool"
if [ ! -x "$binary" ]; then
  mkdir -p "$dir"
  echo "building promtool (github.com/prometheus/prometheus $version) into $dir" >&2
  start=$SECONDS
  # Module v0.3XX.Y is Prometheus 3.XX.Y; stamped in as Prometheus' own build does, so
  # `promtool --version` names the release.
  release=${version#v0.3}; release="3.$((10#${release%%.*})).${release#*.}"
  ldflags="-X github.com/prometheus/common/version.Version=$release"
  ldflags+=" -X github.com/prometheus/common/version.Branch=module-$version"
  ldflags+=" -X github.com/prometheus/common/version.BuildDate=19700101-00:00:00"
  # Built to a temporary name and renamed, so an interrupted build never leaves a binary behind.
  CGO_ENABLED=0 GOFLAGS=-trimpath go build -mod=readonly -ldflags="$ldflags" -o "$dir/.promtool.partial" \
    github.com/prometheus/prometheus/cmd/promtool
  mv "$dir/.promtool.partial" "$binary"
  echo "built promtool in $((SECONDS - start)) s" >&2
fi
echo "$binary"

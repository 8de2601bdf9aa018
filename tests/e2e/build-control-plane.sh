#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the versions pinned in
# this module (go.mod/go.sum, fetched through the Go module proxy) into a cache outside the
# checkout, keyed by those versions, and prints the directory. A later run reuses the binaries.
set -euo pipefail
cd "$(dirname "$0")"

k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go_version=$(go env GOVERSION)
# The recipe (this script and the module graph) is part of the key: changing either rebuilds.
recipe=$(cat build-control-plane.sh go.sum | sha256sum | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/sts-guard-e2e/kubernetes-$k8s-etcd-$etcd-$go_version-$recipe"
# Kubernetes learns its own version from the linker, as its release build (hack/lib/version.sh)
# sets it; without it the apiserver reports v0.0.0-master and Helm refuses the chart's
# kubeVersion constraint.
minor=${k8s#v1.}; minor=${minor%%.*}
version_flags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $package.gitVersion=$k8s -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  version_flags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done
programs=(
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
  kubectl=k8s.io/kubernetes/cmd/kubectl
  etcd=go.etcd.io/etcd/server/v3
)

mkdir -p "$dir"
for entry in "${programs[@]}"; do
  name=${entry%%=*} package=${entry#*=}
  [ -x "$dir/$name" ] && continue
  echo "building $name ($package) into $dir" >&2
  start=$SECONDS
  # Built to a temporary name and renamed, so an interrupted build never leaves a binary behind.
  CGO_ENABLED=0 GOFLAGS=-trimpath go build -mod=readonly -ldflags="$version_flags" -o "$dir/.$name.partial" "$package"
  mv "$dir/.$name.partial" "$dir/$name"
  echo "built $name in $((SECONDS - start)) s" >&2
done
echo "$dir"

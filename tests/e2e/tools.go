//go:build tools

// Package tools pins the control-plane programs the end-to-end run builds: the module graph in
// go.mod/go.sum decides their exact versions, and scripts/e2e builds them with `go build`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

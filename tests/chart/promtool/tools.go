//go:build tools

// Package tools pins promtool, the Prometheus rule checker the chart tests run on the chart's
// PrometheusRule: the module graph in go.mod/go.sum decides its exact version, and build.sh
// builds it with `go build`.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)

//go:build tools

// Package build pins the kubelet for `go build k8s.io/kubernetes/cmd/kubelet`.
package build

import _ "k8s.io/kubernetes/cmd/kubelet"

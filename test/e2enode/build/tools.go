//go:build tools

// Package build pins what make e2e-node builds from k8s.io/kubernetes: the
// node e2e suite (a test package, built with go test -c), the ginkgo CLI
// that runs it in parallel, agnhost and nonewprivs (programs of its
// test images) and the kubelet.
package build

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
	_ "k8s.io/kubernetes/test/images/nonewprivs"
)

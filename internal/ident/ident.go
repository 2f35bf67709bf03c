// Package ident holds what pods and containers share about identity:
// how ids are made and how CRI label selectors match.
package ident

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewID returns a random 64-hex-digit id, the form CRI-O and containerd
// give pods and containers (and the kubelet shortens for display).
func NewID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// LabelsMatch reports whether labels hold every key=value of selector,
// as the CRI's label_selector filters mean it.
func LabelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if have, ok := labels[k]; !ok || have != v {
			return false
		}
	}
	return true
}

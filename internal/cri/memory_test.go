package cri

import (
	"context"
	"testing"

	"google.golang.org/grpc/stats"
)

// The releaser is asked to run once an RPC that carried a big message
// has ended, and not for small ones or before the end.
func TestMemoryReleaserAfterBigMessages(t *testing.T) {
	m := newMemoryReleaser()
	kicked := func() bool {
		select {
		case <-m.kick:
			return true
		default:
			return false
		}
	}
	for _, tc := range []struct {
		name    string
		payload stats.RPCStats
		want    bool
	}{
		{"small reply", &stats.OutPayload{Length: 100}, false},
		{"big reply", &stats.OutPayload{Length: bigMessage}, true},
		{"big request", &stats.InPayload{Length: 10 << 20}, true},
	} {
		ctx := m.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/x/ExecSync"})
		m.HandleRPC(ctx, tc.payload)
		if kicked() {
			t.Fatalf("%s: released before the RPC ended", tc.name)
		}
		m.HandleRPC(ctx, &stats.End{})
		if got := kicked(); got != tc.want {
			t.Errorf("%s: released %v, want %v", tc.name, got, tc.want)
		}
	}
	// Releases asked for while one is due are coalesced, never blocking.
	ctx := m.TagRPC(context.Background(), &stats.RPCTagInfo{})
	m.HandleRPC(ctx, &stats.OutPayload{Length: bigMessage})
	m.HandleRPC(ctx, &stats.End{})
	m.HandleRPC(ctx, &stats.End{})
	if !kicked() || kicked() {
		t.Error("two releases were not coalesced into one")
	}
}

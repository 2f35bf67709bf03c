package spec

import (
	"strings"
	"testing"
)

func TestHostLimitsNameWhatIsMissing(t *testing.T) {
	full := &Host{SwapAccounting: true}
	if got := full.Limits(); len(got) != 0 {
		t.Errorf("an unprobed, capable host should have no limits: %v", got)
	}
	poor := &Host{
		Bounding:    map[string]bool{"CAP_CHOWN": true},
		Controllers: map[string]bool{"cpu": true, "memory": true},
		OOMScoreAdj: 0,
	}
	got := strings.Join(poor.Limits(), "\n")
	for _, want := range []string{"hugetlb", "CAP_SYS_RESOURCE", "oom_score_adj below 0", "1 of", "swap"} {
		if !strings.Contains(got, want) {
			t.Errorf("limits should mention %q:\n%s", want, got)
		}
	}
}

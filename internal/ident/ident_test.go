package ident

import "testing"

func TestNewIDIsUniqueHex(t *testing.T) {
	a, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewID()
	if len(a) != 64 || a == b {
		t.Fatalf("ids %q and %q", a, b)
	}
}

func TestLabelsMatch(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		sel  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{"app": "web"}, true},
		{map[string]string{"app": "web", "tier": "front"}, true},
		{map[string]string{"app": "db"}, false},
		{map[string]string{"zone": ""}, false},
	} {
		if got := LabelsMatch(labels, tc.sel); got != tc.want {
			t.Errorf("LabelsMatch(%v) = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

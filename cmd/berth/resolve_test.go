package main

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResolve(t *testing.T) {
	all := []candidate{
		{id: "abc111", name: "web"},
		{id: "abc222", name: "db"},
		{id: "def333", name: "abc"},
		{id: "sha256:987654", name: "img"},
	}
	for _, tc := range []struct {
		ref  string
		want int
	}{
		{"abc111", 0},    // full ID
		{"abc2", 1},      // unique prefix
		{"d", 2},         // unique prefix
		{"web", 0},       // name
		{"sha256:98", 3}, // image ID prefix with its algorithm
		{"9876", 3},      // and without
		{" abc111 ", 0},  // stray spaces
		{"def333", 2},    // an exact ID beats a name
	} {
		got, err := resolve("container", tc.ref, all)
		if err != nil || got != tc.want {
			t.Errorf("resolve(%q) = %d, %v; want %d", tc.ref, got, err, tc.want)
		}
	}
}

func TestResolveAmbiguous(t *testing.T) {
	all := []candidate{{id: "abc111", name: "web"}, {id: "abc222", name: "db"}, {id: "fff", name: "x"}}
	_, err := resolve("container", "abc", all)
	var amb *ambiguousError
	if !errors.As(err, &amb) {
		t.Fatalf("want ambiguousError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{`container "abc" is ambiguous`, "abc111  web", "abc222  db"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "fff") {
		t.Errorf("error lists a candidate that does not match: %q", msg)
	}
}

func TestResolveNotFound(t *testing.T) {
	_, err := resolve("pod", "zzz", []candidate{{id: "abc", name: "web"}})
	var nf *notFoundError
	if !errors.As(err, &nf) || err.Error() != `no pod matches "zzz"` {
		t.Fatalf("got %v", err)
	}
	if _, err := resolve("pod", "", nil); err == nil {
		t.Fatal("empty reference accepted")
	}
}

func TestResolveAmbiguousName(t *testing.T) {
	all := []candidate{{id: "a1", name: "web"}, {id: "b2", name: "web"}}
	if _, err := resolve("pod", "web", all); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("two pods named web: got %v", err)
	}
}

func TestPickAndEachID(t *testing.T) {
	pods := []*runtimeapi.PodSandbox{{Id: "aaa1"}, {Id: "bbb2", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web"}}}
	find := func(ref string) (*runtimeapi.PodSandbox, error) {
		return pick("pod", ref, pods, func(p *runtimeapi.PodSandbox) candidate {
			return candidate{id: p.Id, name: p.GetMetadata().GetName()}
		})
	}
	if p, err := find("web"); err != nil || p.Id != "bbb2" {
		t.Fatalf("pick(web) = %v, %v", p, err)
	}
	var done []string
	err := eachID([]string{"aa", "nope", "web"}, find, func(id string) error {
		done = append(done, id)
		return nil
	})
	// A miss is reported but does not stop the others.
	if strings.Join(done, ",") != "aaa1,bbb2" || err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("eachID ran %v, err %v", done, err)
	}
}

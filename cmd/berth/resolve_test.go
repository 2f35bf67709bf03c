package main

import (
	"errors"
	"strings"
	"testing"
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

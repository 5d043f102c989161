package zkcoord

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultAssignmentAlternatesPrimaries(t *testing.T) {
	got := DefaultAssignment(4, "a", "b")
	want := Assignment{0: {"a", "b"}, 1: {"b", "a"}, 2: {"a", "b"}, 3: {"b", "a"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultAssignment(4) = %v, want %v", got, want)
	}
	if err := got.Validate(4, []string{"a", "b"}); err != nil {
		t.Fatalf("default assignment does not validate: %v", err)
	}
	if p := got.PartitionsOf("b"); !reflect.DeepEqual(p, []int32{0, 1, 2, 3}) {
		t.Fatalf("PartitionsOf(b) = %v: a partner is a candidate too", p)
	}
}

func TestAssignmentValidate(t *testing.T) {
	procs := []string{"a", "b", "c"}
	tests := []struct {
		name       string
		a          Assignment
		partitions int32
		processes  []string
		wantErrs   []string // substrings that must all appear; none = valid
	}{
		{name: "valid with two partners", a: Assignment{0: {"a", "b", "c"}, 1: {"b", "a"}}, partitions: 2, processes: procs},
		{name: "valid without partner", a: Assignment{0: {"a"}}, partitions: 1, processes: procs},
		{name: "partition without owner", a: Assignment{0: {"a", "b"}}, partitions: 2, processes: procs,
			wantErrs: []string{"partition 1 has no owner"}},
		{name: "empty candidate list", a: Assignment{0: {}}, partitions: 1, processes: procs,
			wantErrs: []string{"partition 0 has no owner"}},
		{name: "own partner", a: Assignment{0: {"a", "a"}}, partitions: 1, processes: procs,
			wantErrs: []string{`partition 0: process "a" is listed as its own partner`}},
		{name: "listed twice as partner", a: Assignment{0: {"a", "b", "b"}}, partitions: 1, processes: procs,
			wantErrs: []string{`partition 0: process "b" is listed twice`}},
		{name: "unknown process", a: Assignment{0: {"a", "zed"}}, partitions: 1, processes: procs,
			wantErrs: []string{`partition 0: unknown process "zed" (known: a, b, c)`}},
		{name: "partition outside topic", a: Assignment{0: {"a"}, 5: {"b"}}, partitions: 2, processes: procs,
			wantErrs: []string{"partition 5 is outside the topic (partitions 0..1)", "partition 1 has no owner"}},
		{name: "negative partition", a: Assignment{-1: {"a"}, 0: {"a"}}, partitions: 1, processes: procs,
			wantErrs: []string{"partition -1 is outside the topic"}},
		{name: "no partitions", a: Assignment{}, partitions: 0, processes: procs,
			wantErrs: []string{"at least one partition"}},
		{name: "bad process name", a: Assignment{0: {"a/b"}}, partitions: 1, processes: []string{"a/b"},
			wantErrs: []string{`process "a/b": invalid name`}},
		{name: "duplicate process", a: Assignment{0: {"a"}}, partitions: 1, processes: []string{"a", "a"},
			wantErrs: []string{`process "a" is configured twice`}},
		{name: "every problem reported at once", a: Assignment{0: {"a", "a"}, 3: {"x"}}, partitions: 2, processes: procs,
			wantErrs: []string{"own partner", "partition 1 has no owner", "partition 3 is outside", `unknown process "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Validate(tt.partitions, tt.processes)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestAssignmentJSON(t *testing.T) {
	var a Assignment
	if err := json.Unmarshal([]byte(`{"0":["a","b"],"1":["b","a"]}`), &a); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, DefaultAssignment(2, "a", "b")) {
		t.Fatalf("decoded %v", a)
	}
	if a.Primary(1) != "b" || a.Primary(7) != "" {
		t.Fatalf("Primary: %q %q", a.Primary(1), a.Primary(7))
	}
}

func TestResource(t *testing.T) {
	r := Routes("versioned_notifications.info")
	if r.Topic() != "versioned_notifications.info" || r.check() != nil || string(r) != "routes/versioned_notifications.info" {
		t.Errorf("Routes = %q, topic %q, check %v", r, r.Topic(), r.check())
	}
	if Requests.Topic() != "" || Requests.check() != nil || Requests.String() != "requests" {
		t.Errorf("Requests: topic %q, check %v", Requests.Topic(), Requests.check())
	}
	for _, bad := range []Resource{"partitions", Routes(""), Routes("a/b"), Routes("..")} {
		if bad.check() == nil {
			t.Errorf("resource %q accepted", bad)
		}
	}
}

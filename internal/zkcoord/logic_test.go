package zkcoord

import (
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func TestPreferredCandidate(t *testing.T) {
	cands := []string{"a", "b", "c"}
	tests := []struct {
		alive []string
		want  string
	}{
		{alive: []string{"a", "b", "c"}, want: "a"},
		{alive: []string{"c", "b", "a"}, want: "a"}, // ZooKeeper's child order means nothing
		{alive: []string{"b", "c"}, want: "b"},      // primary dead: first partner
		{alive: []string{"c"}, want: "c"},           // second partner when the first is dead too
		{alive: []string{"stranger", "c"}, want: "c"},
		{alive: []string{"stranger"}, want: ""},
		{alive: nil, want: ""},
	}
	for _, tt := range tests {
		if got := preferredCandidate(cands, tt.alive); got != tt.want {
			t.Errorf("preferredCandidate(%v, %v) = %q, want %q", cands, tt.alive, got, tt.want)
		}
	}
}

func TestElectionOrderSortsBySequenceNotByName(t *testing.T) {
	children := []string{
		"_c_ffff-n_0000000010",
		"_c_0000-n_0000000012",
		"_c_aaaa-n_0000000002",
		"junk",
	}
	got := electionOrder(children)
	want := []string{"_c_aaaa-n_0000000002", "_c_ffff-n_0000000010", "_c_0000-n_0000000012"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("electionOrder = %v, want %v", got, want)
	}
}

func TestOrderAlive(t *testing.T) {
	got := orderAlive([]string{"b", "a"}, []string{"z", "a", "b", "y"})
	if want := []string{"b", "a", "y", "z"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("orderAlive = %v, want %v", got, want)
	}
}

func TestConfigDefaultsAndConnectString(t *testing.T) {
	cfg, err := Config{Servers: []string{"zk1:2181,zk2:2181/cs/dev"}, ProcessID: "bridge-a"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Servers, []string{"zk1:2181", "zk2:2181"}) || cfg.Chroot != "/cs/dev" {
		t.Fatalf("servers %v chroot %q", cfg.Servers, cfg.Chroot)
	}
	if cfg.SessionTimeout != DefaultSessionTimeout || cfg.Logger == nil {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	cfg, err = Config{Servers: []string{"zk:2181"}, Chroot: "x/y/", SessionTimeout: 2 * time.Second}.withDefaults()
	if err != nil || cfg.Chroot != "/x/y" || cfg.SessionTimeout != 2*time.Second {
		t.Fatalf("chroot %q timeout %v err %v", cfg.Chroot, cfg.SessionTimeout, err)
	}
	for _, bad := range []Config{
		{},
		{Servers: []string{"zk:2181"}, Chroot: "/"},
		{Servers: []string{"zk:2181"}, Chroot: "/zookeeper/x"},
		{Servers: []string{"zk:2181"}, Chroot: "/a//b"},
		{Servers: []string{"zk:2181"}, ProcessID: "a/b"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestTokenIsAUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newToken(), newToken()
	if !re.MatchString(a) || a == b {
		t.Fatalf("tokens %q %q", a, b)
	}
}

// The session tracker is what makes an owner stop at once: every change of
// (session ID, usable) closes the channel its holders wait on.
func TestSessionTrackerSignalsEveryChange(t *testing.T) {
	s := newSessionTracker(discardLogger())
	v0 := s.view()
	s.handle(zk.Event{Type: zk.EventSession, State: zk.StateConnecting})
	assertOpen(t, v0.changed, "connecting before any session is no change")

	s.handle(zk.Event{Type: zk.EventSession, State: zk.StateHasSession}) // before bind: id resolved by bind
	v1 := s.view()
	assertClosed(t, v0.changed, "session established")
	if !v1.live || v1.id != 0 {
		t.Fatalf("view after HasSession before bind = %+v", v1)
	}
	s.mu.Lock()
	s.id = 7 // what bind reads from the connection
	s.mu.Unlock()

	s.handle(zk.Event{Type: zk.EventNodeDeleted, State: zk.StateHasSession, Path: "/x"})
	assertOpen(t, v1.changed, "node events are not session changes")

	s.handle(zk.Event{Type: zk.EventSession, State: zk.StateDisconnected})
	v2 := s.view()
	assertClosed(t, v1.changed, "disconnected")
	if v2.live {
		t.Fatal("still live after StateDisconnected")
	}
	s.handle(zk.Event{Type: zk.EventSession, State: zk.StateExpired})
	assertClosed(t, v2.changed, "expired")
	if v := s.view(); v.live || v.id != 0 {
		t.Fatalf("view after expiry = %+v", v)
	}
}

func assertClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatalf("%s: change channel not closed", what)
	}
}

func assertOpen(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: change channel closed", what)
	default:
	}
}

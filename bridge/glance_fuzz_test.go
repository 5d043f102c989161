package bridge

import (
	"path/filepath"
	"testing"

	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// FuzzGlance: whatever a record holds, what the router decides at a glance
// is what it would decide after decoding it: a record skipped as unrouted
// decodes to an event no saga waits for, and one skipped as foreign
// decodes to an event without the system's marks. (A record that does not
// decode may be skipped either way: nothing waits for it.)
func FuzzGlance(f *testing.F) {
	dirs, err := filepath.Glob(filepath.Join("..", "internal", "notification", "testdata", "*-*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range dirs {
		for _, b := range scenario(f, filepath.Base(d), "0190a5a0-0000-7000-8000-0000000000aa") {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := notification.Decode(b)
		if err != nil {
			return
		}
		if unroutedAtAGlance(b) && workflows.Routed(ev.EventType, ev.State) {
			t.Fatalf("skipped at a glance as unrouted, but %s (state %q) is routed", ev.EventType, ev.State)
		}
		if foreignAtAGlance(b) {
			if _, ours := ServerOf(ev); ours {
				t.Fatalf("skipped at a glance as foreign, but it is the system's own: %+v", ev)
			}
		}
	})
}

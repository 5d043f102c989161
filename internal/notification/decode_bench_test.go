package notification

import (
	"encoding/json"
	"os"
	"testing"
)

// BenchmarkDecode decodes a captured Nova notification (versioned
// instance.create.end, 3.4 kB in its oslo envelope), against a baseline that
// only unpacks the envelope and the message into maps with encoding/json,
// the least any decoder of this format must do.
func BenchmarkDecode(b *testing.B) {
	value, err := os.ReadFile("testdata/a-create/0022-versioned_notifications.info-instance.create.end.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline=json-envelope-and-message", func(b *testing.B) {
		b.SetBytes(int64(len(value)))
		b.ReportAllocs()
		for b.Loop() {
			var env map[string]string
			if err := json.Unmarshal(value, &env); err != nil {
				b.Fatal(err)
			}
			var msg map[string]any
			if err := json.Unmarshal([]byte(env["oslo.message"]), &msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(value)))
		b.ReportAllocs()
		for b.Loop() {
			ev, err := Decode(value)
			if err != nil || ev.InstanceID == "" {
				b.Fatal(ev, err)
			}
		}
	})
}

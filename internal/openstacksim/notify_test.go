package openstacksim

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

// The notification captures live with the decoder's tests.
const capturedNotifications = "../notification/testdata"

type decoded struct {
	ev  notification.Event
	raw map[string]any // the oslo message
}

func decodeValue(t *testing.T, value []byte) decoded {
	t.Helper()
	ev, err := notification.Decode(value)
	if err != nil {
		t.Fatalf("decode %s: %v", value, err)
	}
	var env map[string]string
	var msg map[string]any
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(env["oslo.message"]), &msg); err != nil {
		t.Fatal(err)
	}
	return decoded{ev, msg}
}

// capturedStream returns a scenario's notifications of one format in
// causal (timestamp) order.
func capturedStream(t *testing.T, scenario, format string) []decoded {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(capturedNotifications, scenario, "*.json"))
	var out []decoded
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := decodeValue(t, raw)
		if d.ev.Format == format {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ev.Timestamp.Before(out[j].ev.Timestamp) })
	return out
}

// simStream returns the simulator's notifications of one format about one
// instance, in publication order.
func simStream(t *testing.T, sent []SentNotification, instance, format string) []decoded {
	t.Helper()
	var out []decoded
	for _, n := range sent {
		if n.Format != format {
			continue
		}
		d := decodeValue(t, n.Value)
		if d.ev.InstanceID == instance {
			out = append(out, d)
		}
	}
	return out
}

// compareStreams checks that the simulator sent the captured event types
// in the captured causal order, with the routed fields the capture has,
// and payloads of the captured shape.
func compareStreams(t *testing.T, scenario, format string, got, want []decoded) {
	t.Helper()
	types := func(ds []decoded) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = d.ev.RawEventType
		}
		return out
	}
	if strings.Join(types(got), " ") != strings.Join(types(want), " ") {
		t.Errorf("%s %s event types:\n sim      %v\n captured %v", scenario, format, types(got), types(want))
		return
	}
	for i := range want {
		g, w := got[i].ev, want[i].ev
		where := scenario + " " + format + " #" + itoa(i+1) + " " + w.RawEventType
		check := func(field, gv, wv string) {
			if gv != wv {
				t.Errorf("%s: %s %q, captured %q", where, field, gv, wv)
			}
		}
		check("state", g.State, w.State)
		check("old_state", g.OldState, w.OldState)
		check("task_state", g.TaskState, w.TaskState)
		check("old_task_state", g.OldTaskState, w.OldTaskState)
		check("power_state", g.PowerState, w.PowerState)
		check("flavor", g.Flavor, w.Flavor)
		check("publisher", g.Publisher, w.Publisher)
		check("priority", g.Priority, w.Priority)
		check("fault_exception", g.FaultException, w.FaultException)
		check("has fault", yes(g.Fault), yes(w.Fault))
		check("has request id", yes(g.RequestID), yes(w.RequestID))
		check("has display name", yes(g.DisplayName), yes(w.DisplayName))
		check("tenant", g.TenantID, w.TenantID)
		check("ip count", itoa(len(g.IPAddresses)), itoa(len(w.IPAddresses)))
		check("metadata", mapString(g.Metadata), mapString(w.Metadata))
		for _, d := range sameShape(got[i].raw, want[i].raw) {
			t.Errorf("%s: %s", where, d)
		}
	}
}

func yes(s string) string {
	if s == "" {
		return "no"
	}
	return "yes"
}

func mapString(m map[string]string) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// TestNotificationsMatchCaptures runs the captured scenarios (create,
// reboot, resize+confirm, delete, No valid host, compute-side build
// failure, deletes of errored servers) and compares, per format, what the
// simulator published with what real Nova published.
func TestNotificationsMatchCaptures(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	// run resets the sent notifications, runs op (which returns the
	// instance it is about), waits for as many notifications as the capture
	// has, and compares.
	run := func(t *testing.T, scenario string, op func() string) {
		t.Helper()
		wantV := capturedStream(t, scenario, notification.FormatVersioned)
		wantL := capturedStream(t, scenario, notification.FormatLegacy)
		e.waitQuiet()
		e.sim.ResetNotifications()
		instance := op()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			sent := e.sim.Notifications()
			if len(simStream(t, sent, instance, notification.FormatVersioned)) >= len(wantV) &&
				len(simStream(t, sent, instance, notification.FormatLegacy)) >= len(wantL) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // let anything extra arrive, to be caught
		sent := e.sim.Notifications()
		compareStreams(t, scenario, "versioned", simStream(t, sent, instance, notification.FormatVersioned), wantV)
		compareStreams(t, scenario, "legacy", simStream(t, sent, instance, notification.FormatLegacy), wantL)
	}

	port, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "cap-vm-port", NetworkID: net1}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	create := func(t *testing.T, name, flavor string, nets []servers.Network, md map[string]string) string {
		t.Helper()
		s, err := servers.Create(ctx, e.compute, servers.CreateOpts{Name: name, FlavorRef: flavor, ImageRef: tinyImage,
			Networks: nets, Metadata: md}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var id, toobig, nobind string
	t.Run("a-create", func(t *testing.T) {
		run(t, "a-create", func() string {
			id = create(t, "cap-vm", tinyFlavor, []servers.Network{{Port: port.ID}}, map[string]string{"purpose": "capture"})
			return id
		})
	})
	t.Run("b-reboot-soft", func(t *testing.T) {
		e.waitStatus(id, "ACTIVE")
		// As in the capture, the server has a floating IP from here on.
		_, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet, PortID: port.ID}).Extract()
		must(t, err)
		run(t, "b-reboot-soft", func() string {
			must(t, servers.Reboot(ctx, e.compute, id, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr())
			return id
		})
	})
	t.Run("d-resize-confirm", func(t *testing.T) {
		e.waitStatus(id, "ACTIVE")
		run(t, "d-resize-confirm", func() string {
			must(t, servers.Resize(ctx, e.compute, id, servers.ResizeOpts{FlavorRef: smallFlavor}).ExtractErr())
			e.waitStatus(id, "VERIFY_RESIZE")
			must(t, servers.ConfirmResize(ctx, e.compute, id).ExtractErr())
			return id
		})
	})
	t.Run("e-delete", func(t *testing.T) {
		e.waitStatus(id, "ACTIVE")
		run(t, "e-delete", func() string {
			must(t, servers.Delete(ctx, e.compute, id).ExtractErr())
			return id
		})
	})
	t.Run("f-create-fail-novalidhost", func(t *testing.T) {
		run(t, "f-create-fail-novalidhost", func() string {
			toobig = create(t, "cap-vm-toobig", tooBig, []servers.Network{{UUID: net1}}, nil)
			return toobig
		})
	})
	t.Run("g-delete-errored-novalidhost", func(t *testing.T) {
		e.waitStatus(toobig, "ERROR")
		run(t, "g-delete-errored-novalidhost", func() string {
			must(t, servers.Delete(ctx, e.compute, toobig).ExtractErr())
			return toobig
		})
	})
	t.Run("h-create-fail-compute-portbinding", func(t *testing.T) {
		_, err := e.sim.Faults().FailBoot(BootFault{Mode: "compute", Count: 1})
		must(t, err)
		run(t, "h-create-fail-compute-portbinding", func() string {
			nobind = create(t, "cap-vm-nobind", tinyFlavor, []servers.Network{{UUID: net1}}, nil)
			return nobind
		})
	})
	t.Run("i-delete-errored-portbinding", func(t *testing.T) {
		e.waitStatus(nobind, "ERROR")
		run(t, "i-delete-errored-portbinding", func() string {
			must(t, servers.Delete(ctx, e.compute, nobind).ExtractErr())
			return nobind
		})
	})
}

package notification

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The captures in testdata/ are Kafka record values recorded from a real
// OpenStack Zed (see testdata/INDEX.md): one folder per scenario, one file per
// record, and a manifest.jsonl with the topic and event type of each.

type manifestLine struct {
	File        string `json:"file"`
	Topic       string `json:"topic"`
	EventType   string `json:"event_type"`
	PublisherID string `json:"publisher_id"`
	Priority    string `json:"priority"`
	MessageID   string `json:"message_id"`
}

type captured struct {
	manifestLine
	Scenario string
	Event    Event
}

func loadScenario(t *testing.T, scenario string) []captured {
	t.Helper()
	dir := filepath.Join("testdata", scenario)
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []captured
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m manifestLine
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s manifest: %v", scenario, err)
		}
		value, err := os.ReadFile(filepath.Join(dir, m.File))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := Decode(value)
		if err != nil {
			t.Fatalf("%s/%s: %v", scenario, m.File, err)
		}
		out = append(out, captured{manifestLine: m, Scenario: scenario, Event: ev})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func scenarios(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) < 9 {
		t.Fatalf("only %d scenarios in testdata", len(out))
	}
	return out
}

// scenarioInstance is the server each captured scenario is about.
var scenarioInstance = map[string]struct{ id, name string }{
	"a-create":                          {"fe487dca-a27c-4ace-a10b-791decd361ea", "cap-vm"},
	"b-reboot-soft":                     {"fe487dca-a27c-4ace-a10b-791decd361ea", "cap-vm"},
	"d-resize-confirm":                  {"fe487dca-a27c-4ace-a10b-791decd361ea", "cap-vm"},
	"e-delete":                          {"fe487dca-a27c-4ace-a10b-791decd361ea", "cap-vm"},
	"f-create-fail-novalidhost":         {"0e9e59eb-864f-435c-83cd-b6b9d2f6f699", "cap-vm-toobig"},
	"g-delete-errored-novalidhost":      {"0e9e59eb-864f-435c-83cd-b6b9d2f6f699", "cap-vm-toobig"},
	"h-create-fail-compute-portbinding": {"b169e5ae-3e89-49ac-81e9-71b64ec389a6", "cap-vm-nobind"},
	"i-delete-errored-portbinding":      {"b169e5ae-3e89-49ac-81e9-71b64ec389a6", "cap-vm-nobind"},
}

const captureTenant = "59056836ca1947739e778220431ee514"

// TestDecodeEveryCapture decodes every captured record and checks the fields
// the notification router routes on.
func TestDecodeEveryCapture(t *testing.T) {
	total := 0
	for _, scenario := range scenarios(t) {
		t.Run(scenario, func(t *testing.T) {
			recs := loadScenario(t, scenario)
			total += len(recs)
			want, isInstance := scenarioInstance[scenario]
			for _, r := range recs {
				ev := r.Event
				wantFormat := FormatLegacy
				if strings.HasPrefix(r.Topic, "versioned_") {
					wantFormat = FormatVersioned
				}
				if ev.Format != wantFormat || ev.RawEventType != r.EventType || ev.MessageID != r.MessageID ||
					ev.Publisher != r.PublisherID || ev.Priority != r.Priority {
					t.Errorf("%s: got format=%q raw=%q id=%q publisher=%q priority=%q, manifest says %+v",
						r.File, ev.Format, ev.RawEventType, ev.MessageID, ev.Publisher, ev.Priority, r.manifestLine)
				}
				if ev.Timestamp.Year() != 2026 || ev.Timestamp.Location() != time.UTC {
					t.Errorf("%s: timestamp %v", r.File, ev.Timestamp)
				}
				if strings.HasPrefix(ev.EventType, "compute.") {
					t.Errorf("%s: event type %q not normalised", r.File, ev.EventType)
				}
				if !isInstance {
					continue
				}
				if ev.InstanceID != want.id {
					t.Errorf("%s (%s): instance %q, want %q", r.File, ev.EventType, ev.InstanceID, want.id)
				}
				if ev.TenantID != captureTenant {
					t.Errorf("%s (%s): tenant %q", r.File, ev.EventType, ev.TenantID)
				}
				if ev.RequestID == "" && !strings.HasPrefix(ev.EventType, "scheduler.") {
					t.Errorf("%s (%s): no request id", r.File, ev.EventType)
				}
				if strings.HasPrefix(ev.EventType, "instance.") {
					if ev.DisplayName != want.name {
						t.Errorf("%s (%s): display name %q, want %q", r.File, ev.EventType, ev.DisplayName, want.name)
					}
					if ev.State == "" || ev.Flavor == "" {
						t.Errorf("%s (%s): state %q flavor %q", r.File, ev.EventType, ev.State, ev.Flavor)
					}
				}
				if strings.HasSuffix(ev.EventType, ".error") && ev.Fault == "" {
					t.Errorf("%s (%s): error event without fault", r.File, ev.EventType)
				}
				if !strings.HasSuffix(ev.EventType, ".error") && ev.Fault != "" {
					t.Errorf("%s (%s): fault %q on a non-error event", r.File, ev.EventType, ev.Fault)
				}
			}
		})
	}
	if total != 141 {
		t.Errorf("decoded %d records, the captures hold 141", total)
	}
}

// TestDecodeCapturedFields pins the decoded fields of the records a saga
// waits for.
func TestDecodeCapturedFields(t *testing.T) {
	const (
		vm      = "fe487dca-a27c-4ace-a10b-791decd361ea"
		toobig  = "0e9e59eb-864f-435c-83cd-b6b9d2f6f699"
		nobind  = "b169e5ae-3e89-49ac-81e9-71b64ec389a6"
		portMsg = "Binding failed for port 3e260c9e-81b1-41c3-8b50-731a7e7fd4c6, please check neutron logs for more information."
		retries = "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance b169e5ae-3e89-49ac-81e9-71b64ec389a6."
	)
	tests := []struct {
		file string
		want Event
	}{
		{"a-create/0022-versioned_notifications.info-instance.create.end.json", Event{
			Format: FormatVersioned, EventType: "instance.create.end", InstanceID: vm, DisplayName: "cap-vm",
			RequestID: "req-218e9337-e4bc-4df4-93df-a9c669ff87c7", State: "active", PowerState: "running",
			Flavor: "m1.tiny", Metadata: map[string]string{"purpose": "capture"}, IPAddresses: []string{"10.0.0.231"},
			Timestamp: time.Date(2026, 11, 25, 21, 4, 45, 783571000, time.UTC),
		}},
		{"a-create/0021-notifications.info-compute.instance.create.end.json", Event{
			Format: FormatLegacy, EventType: "instance.create.end", InstanceID: vm, DisplayName: "cap-vm",
			RequestID: "req-218e9337-e4bc-4df4-93df-a9c669ff87c7", State: "active", Flavor: "m1.tiny",
			Metadata: map[string]string{"purpose": "capture"}, IPAddresses: []string{"10.0.0.231"},
			Timestamp: time.Date(2026, 11, 25, 21, 4, 45, 776690000, time.UTC),
		}},
		{"a-create/0011-versioned_notifications.info-instance.update.json", Event{
			Format: FormatVersioned, EventType: "instance.update", InstanceID: vm, DisplayName: "cap-vm",
			RequestID: "req-218e9337-e4bc-4df4-93df-a9c669ff87c7", State: "building", OldState: "building",
			TaskState: "scheduling", OldTaskState: "scheduling", PowerState: "pending", Flavor: "m1.tiny",
			Metadata:  map[string]string{"purpose": "capture"},
			Timestamp: time.Date(2026, 11, 25, 21, 4, 43, 381909000, time.UTC),
		}},
		{"d-resize-confirm/0027-notifications.info-compute.instance.update.json", Event{
			Format: FormatLegacy, EventType: "instance.update", InstanceID: vm, DisplayName: "cap-vm",
			RequestID: "req-06126c69-cece-4665-b51a-7c6baeeb7c92", State: "resized", OldState: "active",
			OldTaskState: "resize_finish", Flavor: "m1.small", Metadata: map[string]string{"purpose": "capture"},
			Timestamp: time.Date(2026, 11, 25, 21, 5, 9, 883491000, time.UTC),
		}},
		{"f-create-fail-novalidhost/0003-notifications.error-compute_task.build_instances.json", Event{
			Format: FormatLegacy, EventType: "compute_task.build_instances.error", InstanceID: toobig,
			RequestID: "req-29594c87-89d5-4137-b9c3-9f49428c3cf5", State: "error", Flavor: "m1.toobig",
			Fault: "No valid host was found.", FaultException: "NoValidHost_Remote",
			Timestamp: time.Date(2026, 11, 25, 21, 5, 24, 602469000, time.UTC),
		}},
		{"f-create-fail-novalidhost/0004-versioned_notifications.error-compute_task.build_instances.error.json", Event{
			Format: FormatVersioned, EventType: "compute_task.build_instances.error", InstanceID: toobig,
			RequestID: "req-29594c87-89d5-4137-b9c3-9f49428c3cf5", State: "error", Flavor: "m1.toobig",
			Fault: "No valid host was found.", FaultException: "NoValidHost_Remote",
			Timestamp: time.Date(2026, 11, 25, 21, 5, 24, 620447000, time.UTC),
		}},
		{"h-create-fail-compute-portbinding/0034-versioned_notifications.error-instance.create.error.json", Event{
			Format: FormatVersioned, EventType: "instance.create.error", InstanceID: nobind, DisplayName: "cap-vm-nobind",
			RequestID: "req-eca4763e-b914-4594-af51-6b3f2e910883", State: "building", TaskState: "spawning",
			PowerState: "pending", Flavor: "m1.tiny", Fault: portMsg, FaultException: "PortBindingFailed",
			Timestamp: time.Date(2026, 11, 25, 21, 5, 36, 941770000, time.UTC),
		}},
		{"h-create-fail-compute-portbinding/0033-notifications.error-compute.instance.create.error.json", Event{
			Format: FormatLegacy, EventType: "instance.create.error", InstanceID: nobind, DisplayName: "cap-vm-nobind",
			RequestID: "req-eca4763e-b914-4594-af51-6b3f2e910883", State: "building", TaskState: "spawning",
			Flavor: "m1.tiny", Fault: portMsg, FaultException: "PortBindingFailed",
			Timestamp: time.Date(2026, 11, 25, 21, 5, 36, 911690000, time.UTC),
		}},
		{"h-create-fail-compute-portbinding/0032-versioned_notifications.error-compute_task.build_instances.error.json", Event{
			Format: FormatVersioned, EventType: "compute_task.build_instances.error", InstanceID: nobind,
			RequestID: "req-eca4763e-b914-4594-af51-6b3f2e910883", State: "error", Flavor: "m1.tiny",
			Fault: retries, FaultException: "MaxRetriesExceeded",
			Timestamp: time.Date(2026, 11, 25, 21, 5, 37, 380358000, time.UTC),
		}},
		{"e-delete/0012-versioned_notifications.info-instance.delete.end.json", Event{
			Format: FormatVersioned, EventType: "instance.delete.end", InstanceID: vm, DisplayName: "cap-vm",
			RequestID: "req-691f7939-2b63-434a-bfd4-51542d4bb949", State: "deleted", PowerState: "pending",
			Flavor: "m1.small", Metadata: map[string]string{"purpose": "capture"},
			Timestamp: time.Date(2026, 11, 25, 21, 5, 18, 779777000, time.UTC),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			value, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(value)
			if err != nil {
				t.Fatal(err)
			}
			// Envelope fields are checked by TestDecodeEveryCapture.
			got.RawEventType, got.MessageID, got.Publisher, got.Priority = "", "", "", ""
			tt.want.TenantID = captureTenant
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestNormalisedTypesAgree checks that, in every scenario, the legacy
// messages normalise to the same event types, in the same causal order, as
// the versioned ones: a consumer can match one set of names.
func TestNormalisedTypesAgree(t *testing.T) {
	for _, scenario := range scenarios(t) {
		if scenario == "00-setup" { // flavor.create has no legacy twin
			continue
		}
		t.Run(scenario, func(t *testing.T) {
			var legacy, versioned []Event
			for _, r := range loadScenario(t, scenario) {
				if r.Event.Format == FormatLegacy {
					legacy = append(legacy, r.Event)
				} else {
					versioned = append(versioned, r.Event)
				}
			}
			l, v := causalTypes(legacy), causalTypes(versioned)
			if !reflect.DeepEqual(l, v) {
				t.Errorf("legacy    %v\nversioned %v", l, v)
			}
		})
	}
}

func causalTypes(evs []Event) []string {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Timestamp.Before(evs[j].Timestamp) })
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType
	}
	return out
}

func TestNormalizeEventType(t *testing.T) {
	tests := map[string]string{
		"compute.instance.create.end":           "instance.create.end",
		"compute.instance.create.error":         "instance.create.error",
		"compute.instance.update":               "instance.update",
		"compute.instance.exists":               "instance.exists",
		"compute.instance.power_off.start":      "instance.power_off.start",
		"compute.instance.resize.prep.start":    "instance.resize_prep.start",
		"compute.instance.resize.start":         "instance.resize.start",
		"compute.instance.finish_resize.end":    "instance.resize_finish.end",
		"compute.instance.resize.confirm.start": "instance.resize_confirm.start",
		"compute.instance.resize.revert.end":    "instance.resize_revert.end",
		"compute_task.build_instances":          "compute_task.build_instances.error",
		"scheduler.select_destinations.start":   "scheduler.select_destinations.start",
		"instance.create.end":                   "instance.create.end",
		"compute_task.build_instances.error":    "compute_task.build_instances.error",
	}
	for in, want := range tests {
		if got := NormalizeEventType(in); got != want {
			t.Errorf("NormalizeEventType(%q) = %q, want %q", in, got, want)
		}
	}
}

// ceilometerEvent is a Ceilometer event as its event pipeline builds it from
// compute.instance.update with the stock event_definitions.yaml traits and
// the default ones (service, request_id, project_id, user_id, tenant_id).
const ceilometerEvent = `{"message_id": "d8402599-6cae-45b5-b7c6-cda70364fcb2",
 "event_type": "compute.instance.update",
 "generated": "2026-11-25T21:04:43.359433",
 "traits": [["service", 1, "compute"], ["request_id", 1, "req-218e9337-e4bc-4df4-93df-a9c669ff87c7"],
  ["project_id", 1, "59056836ca1947739e778220431ee514"], ["tenant_id", 1, "59056836ca1947739e778220431ee514"],
  ["user_id", 1, "1c8497d2d7aa4e36a49cb4c03ebfc605"], ["instance_id", 1, "fe487dca-a27c-4ace-a10b-791decd361ea"],
  ["resource_id", 1, "fe487dca-a27c-4ace-a10b-791decd361ea"], ["display_name", 1, "cap-vm"],
  ["host", 1, "probe"], ["memory_mb", 2, 64], ["vcpus", 2, 1], ["instance_type", 1, "m1.tiny"],
  ["state", 1, "active"], ["old_state", 1, "building"], ["launched_at", 4, "2026-11-25T21:04:45.723659"]],
 "raw": {}, "message_signature": "0d3f"}`

func TestDecodeCeilometer(t *testing.T) {
	want := Event{
		Format: FormatCeilometer, EventType: "instance.update", RawEventType: "compute.instance.update",
		MessageID: "d8402599-6cae-45b5-b7c6-cda70364fcb2", InstanceID: "fe487dca-a27c-4ace-a10b-791decd361ea",
		DisplayName: "cap-vm", TenantID: captureTenant, RequestID: "req-218e9337-e4bc-4df4-93df-a9c669ff87c7",
		State: "active", OldState: "building", Flavor: "m1.tiny",
		Timestamp: time.Date(2026, 11, 25, 21, 4, 43, 359433000, time.UTC),
	}
	t.Run("kafka publisher, bare event", func(t *testing.T) {
		got, err := Decode([]byte(ceilometerEvent))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("notifier publisher, enveloped batch", func(t *testing.T) {
		second := strings.Replace(ceilometerEvent, "compute.instance.update", "compute.instance.create.end", 1)
		msg := `{"message_id": "7c1e", "publisher_id": "telemetry.publisher.probe", "event_type": "event",
			"priority": "SAMPLE", "payload": [` + ceilometerEvent + `,` + second + `],
			"timestamp": "2026-11-25 21:04:44.000001", "_context": {}}`
		env, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": msg})
		got, err := DecodeAll(env)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		w.Publisher = "telemetry.publisher.probe"
		if len(got) != 2 || !reflect.DeepEqual(got[0], w) || got[1].EventType != "instance.create.end" {
			t.Errorf("got %+v", got)
		}
		first, err := Decode(env)
		if err != nil || !reflect.DeepEqual(first, w) {
			t.Errorf("Decode = %+v, %v", first, err)
		}
	})
}

func TestDecodeUnenveloped(t *testing.T) {
	value, err := os.ReadFile("testdata/a-create/0022-versioned_notifications.info-instance.create.end.json")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatal(err)
	}
	enveloped, err := Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := Decode([]byte(env["oslo.message"]))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(enveloped, bare) {
		t.Errorf("enveloped %+v\nbare      %+v", enveloped, bare)
	}
	// The AMQP drivers flatten the context into _context_* keys.
	flat := `{"event_type": "compute.instance.delete.end", "priority": "INFO", "message_id": "m1",
		"publisher_id": "compute.probe", "timestamp": "2026-11-25 21:05:18.776866",
		"_context_request_id": "req-1", "_context_project_id": "p1",
		"payload": {"instance_id": "i1", "display_name": "vm", "state": "deleted"}}`
	ev, err := Decode([]byte(flat))
	if err != nil {
		t.Fatal(err)
	}
	if ev.EventType != "instance.delete.end" || ev.RequestID != "req-1" || ev.TenantID != "p1" || ev.InstanceID != "i1" {
		t.Errorf("flattened context: %+v", ev)
	}
}

func TestDecodeMalformed(t *testing.T) {
	tests := map[string]string{
		"empty":                   ``,
		"not json":                `oslo`,
		"json list":               `[1, 2]`,
		"null":                    `null`,
		"oslo.message not string": `{"oslo.version": "2.0", "oslo.message": {"event_type": "x"}}`,
		"oslo.message not json":   `{"oslo.version": "2.0", "oslo.message": "{"}`,
		"oslo.message null":       `{"oslo.version": "2.0", "oslo.message": "null"}`,
		"no event_type":           `{"payload": {}}`,
		"payload not object":      `{"event_type": "instance.update", "payload": "x"}`,
		"bad timestamp":           `{"event_type": "instance.update", "payload": {}, "timestamp": "yesterday"}`,
		"ceilometer bad traits":   `{"event_type": "compute.instance.update", "traits": "x"}`,
		"ceilometer short trait":  `{"event_type": "compute.instance.update", "traits": [["state", 1]]}`,
		"ceilometer no type":      `{"traits": []}`,
		"ceilometer batch item":   `{"event_type": "event", "payload": [{"traits": []}, 3]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(in))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode(%q) error = %v, want ErrMalformed", in, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.json")
	for i, file := range files {
		if i%7 != 0 { // a spread of the captures is enough as seeds
			continue
		}
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(ceilometerEvent))
	f.Add([]byte(`{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"event\", \"payload\": [{\"traits\": [[\"a\", 1, null]], \"event_type\": \"x\"}]}"}`))
	f.Add([]byte(`{"event_type": "compute_task.build_instances", "priority": "ERROR", "payload": {"reason": "{'message': 'x', 'class': 'Y'}", "request_spec": {"instance_properties": {"uuid": 1}}}}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		events, err := DecodeAll(value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(events) == 0 {
			t.Fatal("no events and no error")
		}
	})
}

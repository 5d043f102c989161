package notification

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Formats of Event.Format.
const (
	FormatVersioned  = "versioned"
	FormatLegacy     = "legacy"
	FormatCeilometer = "ceilometer"
)

// ErrMalformed is wrapped by every error Decode returns: the record is not a
// notification this package understands. Callers log and skip such records;
// retrying cannot fix them.
var ErrMalformed = errors.New("malformed notification")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Decode decodes one Kafka record value. It accepts the oslo.messaging
// envelope ({"oslo.version": "2.0", "oslo.message": "<json>"}), a bare oslo
// message (what the rabbit driver without envelope or a test writes), and
// Ceilometer events, either published by Ceilometer's notifier publisher (an
// oslo message whose payload is a list of events) or by its kafka publisher
// (one bare event per record). When a record carries several Ceilometer
// events, Decode returns the first; use DecodeAll to get every one.
func Decode(value []byte) (Event, error) {
	events, err := DecodeAll(value)
	if err != nil {
		return Event{}, err
	}
	return events[0], nil
}

// DecodeAll is Decode for records that may carry more than one event (a
// Ceilometer notifier batch). It returns at least one event or an error.
func DecodeAll(value []byte) ([]Event, error) {
	var top map[string]any
	if err := json.Unmarshal(value, &top); err != nil {
		return nil, malformed("not a JSON object: %v", err)
	}
	msg := top
	if raw, ok := top["oslo.message"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, malformed("oslo.message is %s, want a JSON string", jsonType(raw))
		}
		msg = nil
		if err := json.Unmarshal([]byte(s), &msg); err != nil {
			return nil, malformed("oslo.message is not a JSON object: %v", err)
		}
		if msg == nil {
			return nil, malformed("oslo.message is null")
		}
	}
	if _, ok := msg["traits"]; ok {
		// Ceilometer's kafka publisher: one serialized event per record.
		ev, err := decodeCeilometerEvent(msg, "")
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	}
	eventType := str(msg["event_type"])
	if eventType == "" {
		return nil, malformed("no event_type")
	}
	if list, ok := msg["payload"].([]any); ok && isCeilometerBatch(list) {
		return decodeCeilometerBatch(msg, list)
	}
	payload, ok := msg["payload"].(map[string]any)
	if !ok {
		return nil, malformed("%s: payload is %s, want an object", eventType, jsonType(msg["payload"]))
	}
	ev := Event{
		RawEventType: eventType,
		MessageID:    str(msg["message_id"]),
		Publisher:    str(msg["publisher_id"]),
		Priority:     strings.ToUpper(str(msg["priority"])),
	}
	if ts, ok := msg["timestamp"]; ok {
		t, err := parseTime(str(ts))
		if err != nil {
			return nil, malformed("%s: timestamp: %v", eventType, err)
		}
		ev.Timestamp = t
	}
	if data, ok := payload["nova_object.data"].(map[string]any); ok {
		ev.Format = FormatVersioned
		ev.EventType = eventType
		decodeVersioned(&ev, data)
	} else {
		ev.Format = FormatLegacy
		ev.EventType = NormalizeEventType(eventType)
		decodeLegacy(&ev, payload)
	}
	if ev.RequestID == "" {
		ev.RequestID = contextRequestID(msg)
	}
	if ev.TenantID == "" {
		ev.TenantID = contextProject(msg)
	}
	return []Event{ev}, nil
}

// NormalizeEventType maps a legacy (unversioned) Nova event type to its
// versioned name, so that consumers match one name whatever format arrived.
// Versioned names are returned unchanged.
func NormalizeEventType(t string) string {
	if t == "compute_task.build_instances" {
		// The legacy twin of compute_task.build_instances.error carries no
		// phase; it is only ever sent at ERROR priority.
		return "compute_task.build_instances.error"
	}
	rest, ok := strings.CutPrefix(t, "compute.instance.")
	if !ok {
		return t
	}
	for legacy, versioned := range legacyActions {
		if r, ok := strings.CutPrefix(rest, legacy+"."); ok {
			return "instance." + versioned + "." + r
		}
	}
	return "instance." + rest
}

// legacyActions are the legacy action names whose versioned names differ.
var legacyActions = map[string]string{
	"resize.prep":    "resize_prep",
	"finish_resize":  "resize_finish",
	"resize.confirm": "resize_confirm",
	"resize.revert":  "resize_revert",
}

// decodeVersioned reads the nova_object payloads: the instance payloads
// (InstanceActionPayload and its relatives, InstanceUpdatePayload) carry the
// instance in uuid; ComputeTaskPayload and RequestSpecPayload in
// instance_uuid.
func decodeVersioned(ev *Event, d map[string]any) {
	ev.InstanceID = firstStr(d["uuid"], d["instance_uuid"])
	ev.DisplayName = str(d["display_name"])
	ev.TenantID = firstStr(d["tenant_id"], d["project_id"])
	ev.RequestID = str(d["request_id"])
	ev.State = str(d["state"])
	ev.TaskState = str(d["task_state"])
	ev.PowerState = str(d["power_state"])
	ev.Flavor = str(novaData(d["flavor"])["name"])
	if su := novaData(d["state_update"]); su != nil {
		ev.OldState = str(su["old_state"])
		ev.OldTaskState = str(su["old_task_state"])
		if s := str(su["state"]); s != "" {
			ev.State = s
		}
		if _, ok := su["new_task_state"]; ok {
			ev.TaskState = str(su["new_task_state"])
		}
	}
	ev.Metadata = strMap(d["metadata"])
	if ips, ok := d["ip_addresses"].([]any); ok {
		for _, ip := range ips {
			if a := str(novaData(ip)["address"]); a != "" {
				ev.IPAddresses = append(ev.IPAddresses, a)
			}
		}
	}
	// An instance action carries its exception in fault; ComputeTaskPayload
	// in reason.
	fault := novaData(d["fault"])
	if fault == nil {
		fault = novaData(d["reason"])
	}
	if fault != nil {
		ev.Fault = faultMessage(str(fault["exception_message"]))
		ev.FaultException = str(fault["exception"])
	}
	if spec := novaData(d["request_spec"]); spec != nil {
		if ev.InstanceID == "" {
			ev.InstanceID = str(spec["instance_uuid"])
		}
		if ev.TenantID == "" {
			ev.TenantID = str(spec["project_id"])
		}
		if ev.Flavor == "" {
			ev.Flavor = str(novaData(spec["flavor"])["name"])
		}
	}
}

// decodeLegacy reads the unversioned payloads. Instance payloads carry
// instance_id; compute_task.build_instances and scheduler.select_destinations
// carry the instance only inside request_spec/instance_properties.
func decodeLegacy(ev *Event, p map[string]any) {
	ev.InstanceID = str(p["instance_id"])
	ev.DisplayName = str(p["display_name"])
	ev.TenantID = str(p["tenant_id"])
	ev.State = str(p["state"])
	ev.OldState = str(p["old_state"])
	ev.TaskState = str(p["state_description"])
	if _, ok := p["new_task_state"]; ok {
		ev.TaskState = str(p["new_task_state"])
	}
	ev.OldTaskState = str(p["old_task_state"])
	ev.PowerState = str(p["power_state"])
	ev.Flavor = str(p["instance_type"])
	ev.Metadata = strMap(p["metadata"])
	if ips, ok := p["fixed_ips"].([]any); ok {
		for _, ip := range ips {
			m, _ := ip.(map[string]any)
			if a := str(m["address"]); a != "" {
				ev.IPAddresses = append(ev.IPAddresses, a)
			}
			if fl, ok := m["floating_ips"].([]any); ok {
				for _, f := range fl {
					if a := firstStr(f, mapGet(f, "address")); a != "" {
						ev.IPAddresses = append(ev.IPAddresses, a)
					}
				}
			}
		}
	}
	props, _ := p["instance_properties"].(map[string]any)
	spec, _ := p["request_spec"].(map[string]any)
	if props == nil && spec != nil {
		props, _ = spec["instance_properties"].(map[string]any)
	}
	if props != nil {
		if ev.InstanceID == "" {
			ev.InstanceID = str(props["uuid"])
		}
		if ev.TenantID == "" {
			ev.TenantID = str(props["project_id"])
		}
	}
	if ev.Flavor == "" && spec != nil {
		if it, ok := spec["instance_type"].(map[string]any); ok {
			ev.Flavor = str(it["name"])
		}
	}
	// Legacy *.error payloads carry the exception's text in message and its
	// repr in exception; compute_task.build_instances in reason. A
	// successful create.end also has message ("Success"), which is no fault.
	if isError(ev) {
		if msg := str(p["message"]); msg != "" {
			ev.Fault = faultMessage(msg)
		}
		for _, k := range []string{"exception", "reason"} {
			repr := str(p[k])
			if repr == "" {
				continue
			}
			if ev.Fault == "" {
				ev.Fault = faultMessage(pyReprField(repr, "message"))
			}
			if ev.FaultException == "" {
				ev.FaultException = pyReprField(repr, "class")
			}
		}
	}
}

func isError(ev *Event) bool {
	return ev.Priority == "ERROR" || strings.HasSuffix(ev.EventType, ".error")
}

// isCeilometerBatch tells a notifier publisher's event batch (a list of
// serialized events) from other list payloads.
func isCeilometerBatch(list []any) bool {
	if len(list) == 0 {
		return false
	}
	m, ok := list[0].(map[string]any)
	if !ok {
		return false
	}
	_, ok = m["traits"]
	return ok
}

func decodeCeilometerBatch(msg map[string]any, list []any) ([]Event, error) {
	publisher := str(msg["publisher_id"])
	events := make([]Event, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, malformed("ceilometer event %d is %s, want an object", i, jsonType(item))
		}
		ev, err := decodeCeilometerEvent(m, publisher)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}

// decodeCeilometerEvent reads one serialized Ceilometer event:
// {"message_id", "event_type", "generated", "traits": [[name, dtype, value]...], "raw"}.
// The trait names are those of Ceilometer's event_definitions.yaml for
// compute.instance.* plus its default traits (request_id, tenant_id...).
func decodeCeilometerEvent(m map[string]any, publisher string) (Event, error) {
	eventType := str(m["event_type"])
	if eventType == "" {
		return Event{}, malformed("ceilometer event without event_type")
	}
	list, ok := m["traits"].([]any)
	if !ok && m["traits"] != nil {
		return Event{}, malformed("%s: traits is %s, want a list", eventType, jsonType(m["traits"]))
	}
	traits := make(map[string]any, len(list))
	for i, t := range list {
		switch t := t.(type) {
		case []any:
			if len(t) != 3 {
				return Event{}, malformed("%s: trait %d has %d elements, want [name, type, value]", eventType, i, len(t))
			}
			traits[str(t[0])] = t[2]
		case map[string]any: // the storage API's {"name", "type", "value"} form
			traits[str(t["name"])] = t["value"]
		default:
			return Event{}, malformed("%s: trait %d is %s", eventType, i, jsonType(t))
		}
	}
	ev := Event{
		Format:       FormatCeilometer,
		RawEventType: eventType,
		EventType:    NormalizeEventType(eventType),
		MessageID:    str(m["message_id"]),
		Publisher:    publisher,
		InstanceID:   firstStr(traits["instance_id"], traits["resource_id"]),
		DisplayName:  str(traits["display_name"]),
		TenantID:     firstStr(traits["tenant_id"], traits["project_id"]),
		RequestID:    str(traits["request_id"]),
		State:        str(traits["state"]),
		OldState:     str(traits["old_state"]),
		TaskState:    str(traits["task_state"]),
		PowerState:   str(traits["power_state"]),
		Flavor:       str(traits["instance_type"]),
		Fault:        faultMessage(firstStr(traits["fault"], traits["message"])),
	}
	if strings.HasSuffix(ev.EventType, ".error") {
		ev.Priority = "ERROR"
	}
	if g := str(m["generated"]); g != "" {
		t, err := parseTime(g)
		if err != nil {
			return Event{}, malformed("%s: generated: %v", eventType, err)
		}
		ev.Timestamp = t
	}
	return ev, nil
}

// contextRequestID finds the request id in the oslo message context: the
// kafka driver nests it (_context.request_id), the AMQP drivers flatten it
// (_context_request_id).
func contextRequestID(msg map[string]any) string {
	if c, ok := msg["_context"].(map[string]any); ok {
		if id := str(c["request_id"]); id != "" {
			return id
		}
	}
	return str(msg["_context_request_id"])
}

func contextProject(msg map[string]any) string {
	if c, ok := msg["_context"].(map[string]any); ok {
		if id := firstStr(c["project_id"], c["project"], c["tenant"]); id != "" {
			return id
		}
	}
	return firstStr(msg["_context_project_id"], msg["_context_tenant"])
}

// timeLayouts are the timestamp forms OpenStack notifications use: oslo's
// "2026-11-25 20:49:37.102609" (UTC, no zone), isoformat() without zone, and
// RFC 3339.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised time %q", s)
}

// faultMessage keeps the first line of an exception message: Nova appends
// the remote traceback to a re-raised exception's message.
func faultMessage(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first)
}

// pyReprField extracts a string field from the Python repr of an exception
// dict as Nova writes it in legacy payloads:
// "{'kwargs': {...}, 'message': 'No valid host was found. ', 'class': 'NoValidHost_Remote'}".
func pyReprField(repr, field string) string {
	re := reprFieldRes[field]
	if re == nil {
		return ""
	}
	m := re.FindStringSubmatch(repr)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		return m[1]
	}
	return m[2]
}

var reprFieldRes = map[string]*regexp.Regexp{
	"message": regexp.MustCompile(`'message': (?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")`),
	"class":   regexp.MustCompile(`'class': (?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")`),
}

// novaData unwraps a nova_object; it returns nil for anything else.
func novaData(v any) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	d, _ := m["nova_object.data"].(map[string]any)
	return d
}

func mapGet(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}

// str renders a JSON scalar as a string; null, objects and lists become "".
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	default:
		return ""
	}
}

func firstStr(vs ...any) string {
	for _, v := range vs {
		if s := str(v); s != "" {
			return s
		}
	}
	return ""
}

func strMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = str(v)
	}
	return out
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// Package notification decodes OpenStack notifications as they arrive on
// Kafka: Nova's versioned and legacy notifications inside the oslo.messaging
// envelope, and Ceilometer events (traits format).
package notification

import "time"

// Event is a decoded notification, reduced to what the system routes and
// decides on. EventType is normalised to the versioned name
// ("compute.instance.create.end" becomes "instance.create.end").
type Event struct {
	Format       string    `json:"format"` // "versioned", "legacy" or "ceilometer"
	EventType    string    `json:"event_type"`
	RawEventType string    `json:"raw_event_type"`
	MessageID    string    `json:"message_id"`
	Publisher    string    `json:"publisher"`
	Priority     string    `json:"priority,omitempty"` // INFO, ERROR...; set for error events in every format
	Timestamp    time.Time `json:"timestamp"`
	InstanceID   string    `json:"instance_id"`
	DisplayName  string    `json:"display_name"`
	TenantID     string    `json:"tenant_id"`
	RequestID    string    `json:"request_id"`
	State        string    `json:"state"`     // vm_state after the event: active, stopped, resized, error, deleted...
	OldState     string    `json:"old_state"` // from instance.update
	TaskState    string    `json:"task_state"`
	OldTaskState string    `json:"old_task_state"`
	PowerState   string    `json:"power_state"`
	Flavor       string    `json:"flavor"` // flavor name
	Fault        string    `json:"fault"`  // fault message, when the event carries one
	// FaultException is the exception class behind Fault when the event
	// names it ("NoValidHost_Remote", "PortBindingFailed",
	// "MaxRetriesExceeded"): a saga can tell a capacity failure from others.
	FaultException string            `json:"fault_exception,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	IPAddresses    []string          `json:"ip_addresses,omitempty"`
}

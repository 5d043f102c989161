// Package cloudservers holds the domain types shared by every part of the
// system: the request a customer's mutation becomes, and the server and
// operation records the workflows publish for the read model.
//
// The types here are the wire contract on Kafka (JSON); change them only in
// ways old readers tolerate (add fields, never rename).
package cloudservers

import (
	"encoding/json"
	"time"
)

// Kafka topic names. The requests topic is keyed by the customer's bucket;
// the state topics are compacted and keyed by record ID.
const (
	TopicRequests   = "cloudservers.requests"
	TopicServers    = "cloudservers.servers"
	TopicOperations = "cloudservers.operations"
	TopicDeadLetter = "cloudservers.deadletter"
	// TopicAPIKeys holds customers' API keys (hashed), keyed by hash.
	TopicAPIKeys = "cloudservers.apikeys"
	// TopicIdempotency holds the API's idempotency records, keyed by
	// customer and Idempotency-Key.
	TopicIdempotency = "cloudservers.idempotency"
	// TopicSSHKeys holds customers' SSH public keys, keyed by key ID.
	TopicSSHKeys = "cloudservers.sshkeys"
	// TopicInstances maps Nova instances to servers (InstanceRecord),
	// keyed by instance UUID: the notification router reads it to route
	// the notifications that carry only an instance's UUID.
	TopicInstances = "cloudservers.instances"
)

// StateTopics are the compacted topics the API materializes.
var StateTopics = []string{TopicServers, TopicOperations, TopicAPIKeys, TopicIdempotency}

// NotificationTopics are the topics oslo.messaging's Kafka driver writes
// Nova's notifications to (<topic>.<priority>), plus Ceilometer's notifier
// publisher topic, with OpenStack's stock topic names.
var NotificationTopics = NotificationTopicsOf("versioned_notifications", "notifications", "ceilometer.event.sample")

// NotificationTopicsOf lists the notification topics of a deployment whose
// Nova sends versioned notifications to versioned (nova.conf's
// versioned_notifications_topics) and legacy ones to legacy
// ([oslo_messaging_notifications] topics), each with the .info and .error
// priorities, and whose Ceilometer publishes events to ceilometer.
func NotificationTopicsOf(versioned, legacy, ceilometer string) []string {
	return []string{versioned + ".info", versioned + ".error", legacy + ".info", legacy + ".error", ceilometer}
}

// OperationType names an operation a customer can ask for. Operations
// describes each; the workflows registry maps each to its saga.
type OperationType string

const (
	OpCreate   OperationType = "create"
	OpDelete   OperationType = "delete"
	OpReboot   OperationType = "reboot"
	OpPowerOff OperationType = "power_off"
	OpPowerOn  OperationType = "power_on"
	OpResize   OperationType = "resize"
	OpRebuild  OperationType = "rebuild"
	OpRename   OperationType = "rename"
	OpReap     OperationType = "reap"
)

// Request is the message the API publishes to the requests topic for every
// mutation. OperationID is the deduplication key end to end.
//
// It is also the mutation's initial state: the API's read models
// materialize it as the operation pending (and, for a create, the server
// queued, from the CreateParams) and, with Idempotency, as the
// Idempotency-Key's record, until the lifecycle's records (version 1 and
// up, on the state topics) supersede them.
type Request struct {
	OperationID string          `json:"operation_id"`
	ServerID    string          `json:"server_id"`
	CustomerID  string          `json:"customer_id"`
	Operation   OperationType   `json:"operation"`
	Params      json.RawMessage `json:"params,omitempty"`
	RequestedAt time.Time       `json:"requested_at"`
	// Idempotency is the Idempotency-Key the request was made with, if
	// any (absent from requests of earlier API versions).
	Idempotency *RequestIdempotency `json:"idempotency,omitempty"`
	// BucketMapVersion is the version of the bucket map the API routed
	// the request by (0: the initial spread without ZooKeeper, or an
	// earlier API version).
	BucketMapVersion int64 `json:"bucket_map_version,omitempty"`
}

// RequestIdempotency is what the API needs to answer a repeat of a request
// made with an Idempotency-Key, on any replica, until ExpiresAt.
type RequestIdempotency struct {
	Key       string    `json:"key"`       // the Idempotency-Key header
	BodyHash  string    `json:"body_hash"` // of the method, path and canonical body
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateParams are the parameters of a create request.
type CreateParams struct {
	Name    string `json:"name"`
	Size    string `json:"size"`
	Image   string `json:"image"`
	Region  string `json:"region"`
	SSHKey  string `json:"ssh_key,omitempty"`
	KeyName string `json:"key_name,omitempty"` // Nova keypair name, when an SSH key was given
}

// RebootParams are the parameters of a reboot request.
type RebootParams struct {
	Type string `json:"reboot_type,omitempty" enums:"soft,hard" example:"soft" doc:"default soft"`
}

// ResizeParams are the parameters of a resize request.
type ResizeParams struct {
	Size string `json:"size" example:"s-1vcpu-128mb" doc:"see GET /v1/sizes"`
}

// RebuildParams are the parameters of a rebuild request.
type RebuildParams struct {
	Image string `json:"image" example:"tiny" doc:"see GET /v1/images"`
}

// RenameParams are the parameters of a rename request.
type RenameParams struct {
	Name string `json:"name" example:"web-2"`
}

// ServerStatus is the customer-visible status of a server.
type ServerStatus string

const (
	StatusQueued     ServerStatus = "queued"
	StatusCreating   ServerStatus = "creating"
	StatusActive     ServerStatus = "active"
	StatusOff        ServerStatus = "off"
	StatusRebooting  ServerStatus = "rebooting"
	StatusStopping   ServerStatus = "stopping"
	StatusStarting   ServerStatus = "starting"
	StatusResizing   ServerStatus = "resizing"
	StatusRebuilding ServerStatus = "rebuilding"
	StatusDeleting   ServerStatus = "deleting"
	StatusDeleted    ServerStatus = "deleted"
	StatusError      ServerStatus = "error"
)

// Server is the read-model record of a server, published by its lifecycle
// workflow (the single writer) to TopicServers, keyed by ID. Version grows
// with every publication so readers can drop stale records.
type Server struct {
	ID             string       `json:"id"`
	CustomerID     string       `json:"customer_id"`
	Name           string       `json:"name"`
	Status         ServerStatus `json:"status"`
	Size           string       `json:"size"`
	Image          string       `json:"image"`
	Region         string       `json:"region"`
	PrivateIPv4    string       `json:"private_ipv4,omitempty"`
	PublicIPv4     string       `json:"public_ipv4,omitempty"`
	NovaInstanceID string       `json:"nova_instance_id,omitempty"`
	PortID         string       `json:"port_id,omitempty"`
	FloatingIPID   string       `json:"floating_ip_id,omitempty"`
	OperationID    string       `json:"operation_id,omitempty"` // the operation in flight
	Error          string       `json:"error,omitempty"`
	CreatedAt      time.Time    `json:"created_at"`
	UpdatedAt      time.Time    `json:"updated_at"`
	Version        int64        `json:"version"`
}

// OperationStatus is the status of an operation.
type OperationStatus string

const (
	OperationPending   OperationStatus = "pending"
	OperationRunning   OperationStatus = "running"
	OperationSucceeded OperationStatus = "succeeded"
	OperationFailed    OperationStatus = "failed"
)

// Operation is the read-model record of one operation, published to
// TopicOperations keyed by ID.
type Operation struct {
	ID          string          `json:"id"`
	ServerID    string          `json:"server_id"`
	CustomerID  string          `json:"customer_id"`
	Type        OperationType   `json:"type"`
	Status      OperationStatus `json:"status"`
	Error       string          `json:"error,omitempty"`
	FailedStep  string          `json:"failed_step,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	Version     int64           `json:"version"`
}

// NovaServerName is the name given to a server's Nova instance. The
// notification router recognises our instances by this prefix: it is the
// display_name every Nova notification carries.
func NovaServerName(serverID string) string { return NovaNamePrefix + serverID }

// InstanceRecord says which server a Nova instance belongs to. The create
// saga's CreateNovaServer publishes it as soon as Nova has answered, before
// the instance can have notified about anything that carries only its UUID.
type InstanceRecord struct {
	InstanceID string    `json:"instance_id"`
	ServerID   string    `json:"server_id"`
	CustomerID string    `json:"customer_id"`
	At         time.Time `json:"at"`
}

// NovaNamePrefix marks Nova instances (and ports) created by this system.
const NovaNamePrefix = "cs-"

// MetadataServerID and MetadataCustomerID are the Nova metadata keys (also
// carried by notifications) that tie an instance to its server.
const (
	MetadataServerID   = "cloudservers_server_id"
	MetadataCustomerID = "cloudservers_customer_id"
)

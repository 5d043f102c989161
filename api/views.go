package api

import (
	"time"

	"github.com/cloudservers/cloudservers"
)

// ServerView is a server as customers see it.
type ServerView struct {
	ID          string        `json:"id" example:"01937c3e-7f7a-7b6e-9a51-6a1f2b3c4d5e"`
	Name        string        `json:"name" example:"web-1"`
	Status      string        `json:"status" example:"active" enums:"queued,creating,active,off,rebooting,stopping,starting,resizing,rebuilding,deleting,deleted,error" enumsof:"server_status"`
	Size        string        `json:"size" example:"s-1vcpu-64mb"`
	Image       string        `json:"image" example:"tiny"`
	Region      string        `json:"region" example:"region-one"`
	PrivateIPv4 string        `json:"private_ipv4,omitempty" example:"10.0.0.12"`
	PublicIPv4  string        `json:"public_ipv4,omitempty" example:"172.24.4.20"`
	OperationID string        `json:"operation_id,omitempty" example:"01937c3e-7f7b-7b6e-9a51-6a1f2b3c4d5e"` // the operation in flight
	Operation   *OperationRef `json:"operation,omitempty"`                                                   // the operation in flight
	Error       string        `json:"error,omitempty" example:"no valid host was found"`                     // why the last operation failed
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
	Links       Links         `json:"links"`
} // @name Server

// OperationRef is the operation in flight on a server, in brief.
type OperationRef struct {
	ID     string `json:"id"`
	Type   string `json:"type" enums:"create,delete,reboot,power_off,power_on,resize,rebuild,rename" enumsof:"operation_type"`
	Status string `json:"status" enums:"pending,running,succeeded,failed" enumsof:"operation_status"`
	Link   string `json:"link"`
} // @name OperationRef

// OperationView is an asynchronous operation.
type OperationView struct {
	ID          string     `json:"id" example:"01937c3e-7f7b-7b6e-9a51-6a1f2b3c4d5e"`
	Type        string     `json:"type" enums:"create,delete,reboot,power_off,power_on,resize,rebuild,rename" enumsof:"operation_type" example:"create"`
	Status      string     `json:"status" enums:"pending,running,succeeded,failed" enumsof:"operation_status" example:"pending"`
	ServerID    string     `json:"server_id" example:"01937c3e-7f7a-7b6e-9a51-6a1f2b3c4d5e"`
	Error       string     `json:"error,omitempty"`       // why it failed
	FailedStep  string     `json:"failed_step,omitempty"` // the saga step that failed
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	Links       Links      `json:"links"`
} // @name Operation

// Links are related resources.
type Links struct {
	Self      string `json:"self"`
	Server    string `json:"server,omitempty"`
	Operation string `json:"operation,omitempty"`
} // @name Links

// ServerList is a page of servers.
type ServerList struct {
	Servers []ServerView `json:"servers"`
	Next    string       `json:"next,omitempty"` // link to the next page; absent on the last
} // @name ServerList

// OperationList is a page of a server's operations, oldest first.
type OperationList struct {
	Operations []OperationView `json:"operations"`
	Next       string          `json:"next,omitempty"` // link to the next page; absent on the last
} // @name OperationList

// CreateServerRequest is the body of POST /v1/servers.
type CreateServerRequest struct {
	Name   string `json:"name" example:"web-1"`               // 1-63 letters, digits, dots or hyphens, starting and ending with a letter or digit
	Size   string `json:"size" example:"s-1vcpu-64mb"`        // see GET /v1/sizes
	Image  string `json:"image" example:"tiny"`               // see GET /v1/images
	Region string `json:"region" example:"region-one"`        // see GET /v1/regions
	SSHKey string `json:"ssh_key,omitempty" example:"laptop"` // an SSH key's ID or name (see /v1/ssh_keys)
	// SSHKeys is the list form of ssh_key (give one or the other); a server
	// takes one key, the Nova keypair it boots with.
	SSHKeys []string `json:"ssh_keys,omitempty" example:"laptop"`
} // @name CreateServerRequest

// UpdateServerRequest is the body of PUT and PATCH /v1/servers/{id}.
type UpdateServerRequest struct {
	Name string `json:"name" example:"web-2"` // 1-63 letters, digits, dots or hyphens, starting and ending with a letter or digit; unique among your servers
} // @name UpdateServerRequest

func serverView(s cloudservers.Server, inFlight *cloudservers.Operation) ServerView {
	v := ServerView{
		ID: s.ID, Name: s.Name, Status: string(s.Status), Size: s.Size, Image: s.Image, Region: s.Region,
		PrivateIPv4: s.PrivateIPv4, PublicIPv4: s.PublicIPv4, OperationID: s.OperationID, Error: s.Error,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		Links: Links{Self: "/v1/servers/" + s.ID},
	}
	if inFlight != nil {
		v.OperationID = inFlight.ID
		v.Operation = &OperationRef{ID: inFlight.ID, Type: string(inFlight.Type), Status: string(inFlight.Status), Link: "/v1/operations/" + inFlight.ID}
	}
	if v.OperationID != "" {
		v.Links.Operation = "/v1/operations/" + v.OperationID
	}
	return v
}

func operationView(o cloudservers.Operation) OperationView {
	return OperationView{
		ID: o.ID, Type: string(o.Type), Status: string(o.Status), ServerID: o.ServerID,
		Error: o.Error, FailedStep: o.FailedStep, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, CompletedAt: o.CompletedAt,
		Links: Links{Self: "/v1/operations/" + o.ID, Server: "/v1/servers/" + o.ServerID},
	}
}

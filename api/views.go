package api

import (
	"time"

	"github.com/cloudservers/cloudservers"
)

// ServerView is a server as customers see it.
type ServerView struct {
	ID          string    `json:"id" example:"01937c3e-7f7a-7b6e-9a51-6a1f2b3c4d5e"`
	Name        string    `json:"name" example:"web-1"`
	Status      string    `json:"status" example:"active" enums:"queued,creating,active,off,rebooting,stopping,starting,resizing,deleting,deleted,error"`
	Size        string    `json:"size" example:"s-1vcpu-64mb"`
	Image       string    `json:"image" example:"tiny"`
	Region      string    `json:"region" example:"region-one"`
	PrivateIPv4 string    `json:"private_ipv4,omitempty" example:"10.0.0.12"`
	PublicIPv4  string    `json:"public_ipv4,omitempty" example:"172.24.4.20"`
	OperationID string    `json:"operation_id,omitempty"` // the operation in flight
	Error       string    `json:"error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Links       Links     `json:"links"`
} // @name Server

// OperationView is an asynchronous operation.
type OperationView struct {
	ID          string     `json:"id"`
	Type        string     `json:"type" enums:"create,delete,reboot,power_off,power_on,resize"`
	Status      string     `json:"status" enums:"pending,running,succeeded,failed"`
	ServerID    string     `json:"server_id"`
	Error       string     `json:"error,omitempty"`
	FailedStep  string     `json:"failed_step,omitempty"`
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

// OperationList is a server's operations, oldest first.
type OperationList struct {
	Operations []OperationView `json:"operations"`
} // @name OperationList

// CreateServerRequest is the body of POST /v1/servers.
type CreateServerRequest struct {
	Name   string `json:"name" example:"web-1"`
	Size   string `json:"size" example:"s-1vcpu-64mb"`
	Image  string `json:"image" example:"tiny"`
	Region string `json:"region" example:"region-one"`
} // @name CreateServerRequest

// ActionRequest is the body of POST /v1/servers/{id}/actions.
type ActionRequest struct {
	Type       string `json:"type" enums:"reboot,power_off,power_on,resize" example:"reboot"`
	RebootType string `json:"reboot_type,omitempty" enums:"soft,hard" example:"soft"` // reboot only; default soft
	Size       string `json:"size,omitempty" example:"s-1vcpu-128mb"`                 // resize only
} // @name ActionRequest

func serverView(s cloudservers.Server) ServerView {
	v := ServerView{
		ID: s.ID, Name: s.Name, Status: string(s.Status), Size: s.Size, Image: s.Image, Region: s.Region,
		PrivateIPv4: s.PrivateIPv4, PublicIPv4: s.PublicIPv4, OperationID: s.OperationID, Error: s.Error,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		Links: Links{Self: "/v1/servers/" + s.ID},
	}
	if s.OperationID != "" {
		v.Links.Operation = "/v1/operations/" + s.OperationID
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

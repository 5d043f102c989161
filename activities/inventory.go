package activities

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/cloudservers/cloudservers"
)

// Kinds of marked resources.
const (
	KindNovaServer = "nova_server"
	KindPort       = "port"
	KindFloatingIP = "floating_ip"
)

// MarkedResource is an OpenStack resource that carries this system's mark
// and so belongs to one of its servers: a Nova instance named
// cs-<server id> (or with the cloudservers_server_id metadata), a port
// named cs-<server id>, a floating IP described cs-<server id>.
type MarkedResource struct {
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	Name      string    `json:"name"` // the name (or a floating IP's description) that carries the mark
	ServerID  string    `json:"server_id"`
	CreatedAt time.Time `json:"created_at"`
	// Detail says what a support engineer wants to know before it goes:
	// the instance's status, the port's device, the floating IP's address.
	Detail string `json:"detail,omitempty"`
}

// ListMarkedInput asks for the marked resources created before a time.
type ListMarkedInput struct {
	CreatedBefore time.Time `json:"created_before"`
}

// ListMarkedResources lists the Nova instances, ports and floating IPs that
// carry this system's mark and were created before in.CreatedBefore, in
// that order (instances, ports, floating IPs; each by creation time). Only
// marks naming a well-formed server ID count: a resource someone named
// "cs-web" by hand is not ours.
func (a *Activities) ListMarkedResources(ctx context.Context, in ListMarkedInput) ([]MarkedResource, error) {
	out := []MarkedResource{}
	old := func(t time.Time) bool { return !t.IsZero() && t.Before(in.CreatedBefore) }

	pages, err := servers.List(a.clients.Compute, servers.ListOpts{Name: "^" + regexp.QuoteMeta(cloudservers.NovaNamePrefix)}).AllPages(ctx)
	if err != nil {
		return nil, classify("list Nova servers named "+cloudservers.NovaNamePrefix+"*", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, classify("list Nova servers named "+cloudservers.NovaNamePrefix+"*", err)
	}
	var found []MarkedResource
	for _, s := range all {
		id := s.Metadata[cloudservers.MetadataServerID]
		if id == "" {
			id = markedServerID(s.Name)
		}
		if !isServerID(id) || !old(s.Created) {
			continue
		}
		found = append(found, MarkedResource{Kind: KindNovaServer, ID: s.ID, Name: s.Name, ServerID: id, CreatedAt: s.Created, Detail: "status " + s.Status})
	}
	out = append(out, byCreation(found)...)

	pages, err = ports.List(a.clients.Network, ports.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, classify("list ports", err)
	}
	allPorts, err := ports.ExtractPorts(pages)
	if err != nil {
		return nil, classify("list ports", err)
	}
	found = nil
	for _, p := range allPorts {
		id := markedServerID(p.Name)
		if !isServerID(id) || !old(p.CreatedAt) {
			continue
		}
		detail := "unattached"
		if p.DeviceID != "" {
			detail = "device " + p.DeviceID
		}
		found = append(found, MarkedResource{Kind: KindPort, ID: p.ID, Name: p.Name, ServerID: id, CreatedAt: p.CreatedAt, Detail: detail})
	}
	out = append(out, byCreation(found)...)

	pages, err = floatingips.List(a.clients.Network, floatingips.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, classify("list floating IPs", err)
	}
	allFIPs, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		return nil, classify("list floating IPs", err)
	}
	found = nil
	for _, f := range allFIPs {
		id := markedServerID(f.Description)
		if !isServerID(id) || !old(f.CreatedAt) {
			continue
		}
		found = append(found, MarkedResource{Kind: KindFloatingIP, ID: f.ID, Name: f.Description, ServerID: id, CreatedAt: f.CreatedAt, Detail: "address " + f.FloatingIP})
	}
	out = append(out, byCreation(found)...)
	return out, nil
}

// markedServerID returns the server ID in a cs-<server id> mark, or "".
func markedServerID(name string) string {
	id, ok := strings.CutPrefix(name, cloudservers.NovaNamePrefix)
	if !ok {
		return ""
	}
	return id
}

// isServerID reports whether id is a server ID as the API assigns them (a
// UUID in its canonical form).
func isServerID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

func byCreation(rs []MarkedResource) []MarkedResource {
	sort.SliceStable(rs, func(i, j int) bool {
		if !rs[i].CreatedAt.Equal(rs[j].CreatedAt) {
			return rs[i].CreatedAt.Before(rs[j].CreatedAt)
		}
		return rs[i].ID < rs[j].ID
	})
	return rs
}

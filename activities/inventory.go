package activities

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"go.temporal.io/sdk/temporal"

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
// "cs-web" by hand is not ours. Its result grows with the cloud: the reap
// workflow lists page by page (ListMarkedPage); this serves reaps started
// before that.
func (a *Activities) ListMarkedResources(ctx context.Context, in ListMarkedInput) ([]MarkedResource, error) {
	out := []MarkedResource{}
	for _, kind := range []string{KindNovaServer, KindPort, KindFloatingIP} {
		var found []MarkedResource
		marker := ""
		for {
			page, err := a.ListMarkedPage(ctx, ListMarkedPageInput{Kind: kind, CreatedBefore: in.CreatedBefore, Marker: marker, Limit: 1000})
			if err != nil {
				return nil, err
			}
			found = append(found, page.Resources...)
			if page.Next == "" {
				break
			}
			marker = page.Next
		}
		out = append(out, byCreation(found)...)
	}
	return out, nil
}

// ListMarkedPageInput asks for one page of one kind of resource.
type ListMarkedPageInput struct {
	Kind          string    `json:"kind"` // KindNovaServer, KindPort or KindFloatingIP
	CreatedBefore time.Time `json:"created_before"`
	// Marker is the Next of the page before; "" starts at the beginning.
	Marker string `json:"marker,omitempty"`
	// Limit is how many resources OpenStack lists in the page (marked or
	// not); 0 means DefaultMarkedPageSize.
	Limit int `json:"limit,omitempty"`
}

// DefaultMarkedPageSize keeps a page's result far below Temporal's 2 MB
// payload limit (a MarkedResource is about 250 bytes).
const DefaultMarkedPageSize = 500

// MarkedPage is one page of a listing: the marked resources in it older
// than the time asked, and the marker of the next page.
type MarkedPage struct {
	Resources []MarkedResource `json:"resources"`
	// Listed is how many resources OpenStack listed in the page.
	Listed int `json:"listed"`
	// Next is the marker of the next page; "" when this was the last.
	Next string `json:"next,omitempty"`
}

// ListMarkedPage lists one page of the Nova instances (named cs-*), ports or
// floating IPs, OpenStack's limit/marker paging, and returns those that
// carry this system's mark and were created before in.CreatedBefore (see
// ListMarkedResources). A page that lists Limit resources has a Next.
func (a *Activities) ListMarkedPage(ctx context.Context, in ListMarkedPageInput) (MarkedPage, error) {
	limit := in.Limit
	if limit <= 0 {
		limit = DefaultMarkedPageSize
	}
	old := func(t time.Time) bool { return !t.IsZero() && t.Before(in.CreatedBefore) }
	out := MarkedPage{Resources: []MarkedResource{}}
	// first fetches the first page of a pager and stops: the marker, not
	// the next link, says where the following page starts.
	first := func(p pagination.Pager, what string, extract func(pagination.Page) error) error {
		err := p.EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
			return false, extract(page)
		})
		if err != nil {
			return classify(what, err)
		}
		return nil
	}
	var lastID string
	switch in.Kind {
	case KindNovaServer:
		what := "list Nova servers named " + cloudservers.NovaNamePrefix + "*"
		err := first(servers.List(a.clients.Compute, servers.ListOpts{Name: "^" + regexp.QuoteMeta(cloudservers.NovaNamePrefix), Limit: limit, Marker: in.Marker}), what, func(page pagination.Page) error {
			all, err := servers.ExtractServers(page)
			for _, s := range all {
				out.Listed++
				lastID = s.ID
				id := s.Metadata[cloudservers.MetadataServerID]
				if id == "" {
					id = markedServerID(s.Name)
				}
				if isServerID(id) && old(s.Created) {
					out.Resources = append(out.Resources, MarkedResource{Kind: KindNovaServer, ID: s.ID, Name: s.Name, ServerID: id, CreatedAt: s.Created, Detail: "status " + s.Status})
				}
			}
			return err
		})
		if err != nil {
			return MarkedPage{}, err
		}
	case KindPort:
		err := first(ports.List(a.clients.Network, ports.ListOpts{Limit: limit, Marker: in.Marker}), "list ports", func(page pagination.Page) error {
			all, err := ports.ExtractPorts(page)
			for _, p := range all {
				out.Listed++
				lastID = p.ID
				id := markedServerID(p.Name)
				if !isServerID(id) || !old(p.CreatedAt) {
					continue
				}
				detail := "unattached"
				if p.DeviceID != "" {
					detail = "device " + p.DeviceID
				}
				out.Resources = append(out.Resources, MarkedResource{Kind: KindPort, ID: p.ID, Name: p.Name, ServerID: id, CreatedAt: p.CreatedAt, Detail: detail})
			}
			return err
		})
		if err != nil {
			return MarkedPage{}, err
		}
	case KindFloatingIP:
		err := first(floatingips.List(a.clients.Network, floatingips.ListOpts{Limit: limit, Marker: in.Marker}), "list floating IPs", func(page pagination.Page) error {
			all, err := floatingips.ExtractFloatingIPs(page)
			for _, f := range all {
				out.Listed++
				lastID = f.ID
				id := markedServerID(f.Description)
				if isServerID(id) && old(f.CreatedAt) {
					out.Resources = append(out.Resources, MarkedResource{Kind: KindFloatingIP, ID: f.ID, Name: f.Description, ServerID: id, CreatedAt: f.CreatedAt, Detail: "address " + f.FloatingIP})
				}
			}
			return err
		})
		if err != nil {
			return MarkedPage{}, err
		}
	default:
		return MarkedPage{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("list marked resources: unknown kind %q (want %s, %s or %s)", in.Kind, KindNovaServer, KindPort, KindFloatingIP), ErrInvalidRequest, nil)
	}
	if out.Listed >= limit {
		out.Next = lastID
	}
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

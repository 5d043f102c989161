package activities

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
)

// CreatePortInput asks for the network port of a server.
type CreatePortInput struct {
	ServerID   string `json:"server_id"`
	CustomerID string `json:"customer_id"`
	Region     string `json:"region"`
}

// Port is a Neutron port with its fixed IPv4 address.
type Port struct {
	ID string `json:"id"`
	IP string `json:"ip"`
}

// CreatePort creates the server's port on the region's tenant network. It
// is named cs-<server id>, so a retry finds the port an earlier attempt
// created instead of making a second one.
func (a *Activities) CreatePort(ctx context.Context, in CreatePortInput) (Port, error) {
	name := cloudservers.NovaServerName(in.ServerID)
	region, ok := a.catalog.Region(in.Region)
	if !ok {
		return Port{}, temporal.NewNonRetryableApplicationError("unknown region "+in.Region, ErrInvalidRequest, nil)
	}
	netID, err := a.networkID(ctx, region.Network)
	if err != nil {
		return Port{}, err
	}
	pages, err := ports.List(a.clients.Network, ports.ListOpts{Name: name, NetworkID: netID}).AllPages(ctx)
	if err != nil {
		return Port{}, classify("look up port "+name, err)
	}
	existing, err := ports.ExtractPorts(pages)
	if err != nil {
		return Port{}, classify("look up port "+name, err)
	}
	for _, p := range existing {
		if p.Name == name {
			return portOf(p), nil
		}
	}
	p, err := ports.Create(ctx, a.clients.Network, ports.CreateOpts{
		Name:        name,
		NetworkID:   netID,
		Description: "cloudservers server " + in.ServerID + " customer " + in.CustomerID,
	}).Extract()
	if err != nil {
		return Port{}, classify(fmt.Sprintf("create port %s on network %s for server %s", name, region.Network, in.ServerID), err)
	}
	return portOf(*p), nil
}

func portOf(p ports.Port) Port {
	out := Port{ID: p.ID}
	if len(p.FixedIPs) > 0 {
		out.IP = p.FixedIPs[0].IPAddress
	}
	return out
}

// DeletePort deletes a port; a port that is already gone has been deleted.
func (a *Activities) DeletePort(ctx context.Context, portID string) error {
	err := ports.Delete(ctx, a.clients.Network, portID).ExtractErr()
	if err == nil || gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return classify("delete port "+portID, err)
}

func (a *Activities) networkID(ctx context.Context, name string) (string, error) {
	return a.cached("network/"+name, func() (string, error) {
		pages, err := networks.List(a.clients.Network, networks.ListOpts{Name: name}).AllPages(ctx)
		if err != nil {
			return "", classify("look up network "+name, err)
		}
		all, err := networks.ExtractNetworks(pages)
		if err != nil {
			return "", classify("look up network "+name, err)
		}
		for _, n := range all {
			if n.Name == name {
				return n.ID, nil
			}
		}
		return "", temporal.NewNonRetryableApplicationError("network "+name+" not found", ErrInvalidRequest, nil)
	})
}

// AllocateFloatingIPInput asks for a server's public address.
type AllocateFloatingIPInput struct {
	ServerID string `json:"server_id"`
	Region   string `json:"region"`
}

// FloatingIP is an allocated public address.
type FloatingIP struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// AllocateFloatingIP allocates a floating IP on the region's external
// network, described as cs-<server id> so that a retry finds it.
func (a *Activities) AllocateFloatingIP(ctx context.Context, in AllocateFloatingIPInput) (FloatingIP, error) {
	desc := cloudservers.NovaServerName(in.ServerID)
	if fip, err := a.FindFloatingIP(ctx, in.ServerID); err != nil || fip.ID != "" {
		return fip, err
	}
	region, ok := a.catalog.Region(in.Region)
	if !ok {
		return FloatingIP{}, temporal.NewNonRetryableApplicationError("unknown region "+in.Region, ErrInvalidRequest, nil)
	}
	netID, err := a.networkID(ctx, region.ExternalNetwork)
	if err != nil {
		return FloatingIP{}, err
	}
	fip, err := floatingips.Create(ctx, a.clients.Network, floatingips.CreateOpts{
		FloatingNetworkID: netID,
		Description:       desc,
	}).Extract()
	if err != nil {
		return FloatingIP{}, classify(fmt.Sprintf("allocate floating IP on %s for server %s", region.ExternalNetwork, in.ServerID), err)
	}
	return FloatingIP{ID: fip.ID, Address: fip.FloatingIP}, nil
}

// FindFloatingIP returns the floating IP allocated for a server, or a zero
// FloatingIP when there is none.
func (a *Activities) FindFloatingIP(ctx context.Context, serverID string) (FloatingIP, error) {
	desc := cloudservers.NovaServerName(serverID)
	pages, err := floatingips.List(a.clients.Network, floatingips.ListOpts{Description: desc}).AllPages(ctx)
	if err != nil {
		return FloatingIP{}, classify("look up floating IP "+desc, err)
	}
	all, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		return FloatingIP{}, classify("look up floating IP "+desc, err)
	}
	for _, f := range all {
		if f.Description == desc {
			return FloatingIP{ID: f.ID, Address: f.FloatingIP}, nil
		}
	}
	return FloatingIP{}, nil
}

// AssociateFloatingIPInput ties a floating IP to a port.
type AssociateFloatingIPInput struct {
	FloatingIPID string `json:"floating_ip_id"`
	PortID       string `json:"port_id"`
}

// AssociateFloatingIP points a floating IP at a port. Doing it twice is
// harmless.
func (a *Activities) AssociateFloatingIP(ctx context.Context, in AssociateFloatingIPInput) error {
	port := in.PortID
	_, err := floatingips.Update(ctx, a.clients.Network, in.FloatingIPID, floatingips.UpdateOpts{PortID: &port}).Extract()
	return classify(fmt.Sprintf("associate floating IP %s with port %s", in.FloatingIPID, in.PortID), err)
}

// DisassociateFloatingIP detaches a floating IP from its port; a floating
// IP that is gone needs no detaching.
func (a *Activities) DisassociateFloatingIP(ctx context.Context, floatingIPID string) error {
	none := "" // gophercloud sends an empty port ID as an explicit null
	_, err := floatingips.Update(ctx, a.clients.Network, floatingIPID, floatingips.UpdateOpts{PortID: &none}).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return classify("disassociate floating IP "+floatingIPID, err)
}

// ReleaseFloatingIP deletes a floating IP; one that is gone is released.
func (a *Activities) ReleaseFloatingIP(ctx context.Context, floatingIPID string) error {
	err := floatingips.Delete(ctx, a.clients.Network, floatingIPID).ExtractErr()
	if err == nil || gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return classify("release floating IP "+floatingIPID, err)
}

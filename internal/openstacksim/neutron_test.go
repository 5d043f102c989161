package openstacksim

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

func TestPortsAndFloatingIPs(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	p1, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "p1", NetworkID: net1, Description: "one"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "p2", NetworkID: net1,
		FixedIPs: []ports.IP{{IPAddress: "10.0.0.77"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if p2.FixedIPs[0].IPAddress != "10.0.0.77" || p1.FixedIPs[0].IPAddress == "10.0.0.1" || p1.MACAddress[:9] != "fa:16:3e:" {
		t.Errorf("addresses %+v %+v", p1, p2)
	}
	listPorts := func(opts ports.ListOpts) []string {
		t.Helper()
		pages, err := ports.List(e.network, opts).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := ports.ExtractPorts(pages)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range all {
			names = append(names, p.Name)
		}
		return names
	}
	if got := listPorts(ports.ListOpts{Name: "p2"}); len(got) != 1 {
		t.Errorf("by name: %v", got)
	}
	if got := listPorts(ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: "10.0.0.77"}}}); len(got) != 1 || got[0] != "p2" {
		t.Errorf("by fixed ip: %v", got)
	}
	if got := listPorts(ports.ListOpts{NetworkID: net1, DeviceOwner: "network:router_interface"}); len(got) != 1 {
		t.Errorf("router port: %v", got)
	}
	if _, err := ports.Update(ctx, e.network, p1.ID, ports.UpdateOpts{Name: ptr("p1-renamed")}).Extract(); err != nil {
		t.Fatal(err)
	}

	// Floating IPs: create, associate, filters, a second association of the
	// same fixed IP, disassociate.
	fip, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet, PortID: p1.ID, Description: "web"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if fip.PortID != p1.ID || fip.FixedIP != p1.FixedIPs[0].IPAddress || fip.Status != "DOWN" {
		t.Errorf("fip %+v", fip)
	}
	listFIPs := func(opts floatingips.ListOpts) int {
		t.Helper()
		pages, err := floatingips.List(e.network, opts).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := floatingips.ExtractFloatingIPs(pages)
		return len(all)
	}
	if listFIPs(floatingips.ListOpts{PortID: p1.ID}) != 1 || listFIPs(floatingips.ListOpts{PortID: p2.ID}) != 0 ||
		listFIPs(floatingips.ListOpts{FloatingIP: fip.FloatingIP}) != 1 || listFIPs(floatingips.ListOpts{Description: "web"}) != 1 {
		t.Error("floating IP filters")
	}
	other, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	_, err = floatingips.Update(ctx, e.network, other.ID, floatingips.UpdateOpts{PortID: &p1.ID}).Extract()
	if !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("second floating IP on one fixed IP: %v", err)
	}
	st, _, body := e.do("PUT", "/network/v2.0/floatingips/"+other.ID, map[string]any{"floatingip": map[string]any{"port_id": p1.ID}}, nil)
	if st != 409 || body.(map[string]any)["NeutronError"].(map[string]any)["type"] != "FloatingIPPortAlreadyAssociated" {
		t.Errorf("409 body %v", body)
	}
	if _, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: net1}).Extract(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("floating IP on a tenant network: %v", err)
	}

	// Deleting a port frees its floating IP.
	if err := ports.Delete(ctx, e.network, p1.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	got, err := floatingips.Get(ctx, e.network, fip.ID).Extract()
	if err != nil || got.PortID != "" {
		t.Errorf("floating IP after its port went: %+v, %v", got, err)
	}
	for _, id := range []string{fip.ID, other.ID} {
		if err := floatingips.Delete(ctx, e.network, id).ExtractErr(); err != nil {
			t.Error(err)
		}
	}
	if err := floatingips.Delete(ctx, e.network, fip.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("second delete: %v", err)
	}
}

func TestNeutronErrors(t *testing.T) {
	e := newEnv(t, Config{})
	routerPort := "8be36477-e2da-45da-b483-36357e2bebd1"
	tests := []struct {
		name, method, path string
		body               any
		status             int
		typ, message       string
	}{
		{"malformed", "POST", "/ports", "{", 400, "HTTPBadRequest", "Malformed request body"},
		{"no network", "POST", "/ports", map[string]any{"port": map[string]any{"name": "x"}}, 400, "HTTPBadRequest",
			"Failed to parse request. Required attribute 'network_id' not specified"},
		{"unknown network", "POST", "/ports", map[string]any{"port": map[string]any{"network_id": "nope"}}, 404, "NetworkNotFound",
			"Network nope could not be found."},
		{"address taken", "POST", "/ports", map[string]any{"port": map[string]any{"network_id": net1,
			"fixed_ips": []any{map[string]any{"ip_address": "10.0.0.1"}}}}, 409, "IpAddressAlreadyAllocated", ""},
		{"port 404", "GET", "/ports/nope", nil, 404, "PortNotFound", "Port nope could not be found."},
		{"fip 404", "GET", "/floatingips/nope", nil, 404, "FloatingIPNotFound", "Floating IP nope could not be found"},
		{"network 404", "GET", "/networks/nope", nil, 404, "NetworkNotFound", "Network nope could not be found."},
		{"bad filter", "GET", "/ports?colour=red", nil, 400, "HTTPBadRequest", "[colour] is invalid attribute for filtering"},
		{"router port", "DELETE", "/ports/" + routerPort, nil, 409, "L3PortInUse", ""},
		{"unknown path", "GET", "/nothing", nil, 404, "HTTPNotFound", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, body := e.do(tt.method, "/network/v2.0"+tt.path, tt.body, nil)
			if st != tt.status {
				t.Fatalf("%d %v", st, body)
			}
			ne, _ := body.(map[string]any)["NeutronError"].(map[string]any)
			if ne == nil || ne["type"] != tt.typ || ne["detail"] != "" || (tt.message != "" && ne["message"] != tt.message) {
				t.Errorf("body %v", body)
			}
		})
	}
}

// TestIPExhaustion: a /29 tenant network has five addresses for ports.
func TestIPExhaustion(t *testing.T) {
	e := newEnv(t, Config{TenantNetwork: NetworkConfig{Name: "small", CIDR: "10.1.0.0/29"}})
	ctx := context.Background()
	for i := 0; i < 4; i++ { // .1 is the gateway, .2-.6 the pool, one taken below by Nova
		if _, err := ports.Create(ctx, e.network, ports.CreateOpts{NetworkID: net1}).Extract(); err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
	}
	// Nova's build takes the last address.
	id := e.createServer("last")
	e.waitStatus(id, "ACTIVE")
	st, _, body := e.do("POST", "/network/v2.0/ports", map[string]any{"port": map[string]any{"network_id": net1}}, nil)
	want := map[string]any{"NeutronError": map[string]any{"type": "IpAddressGenerationFailure",
		"message": "No more IP addresses available on network " + net1 + ".", "detail": ""}}
	if st != 409 || !jsonEqual(body, want) {
		t.Errorf("exhausted: %d %v", st, body)
	}
	// A build that cannot get an address is aborted: ERROR, with Nova's
	// fault, and instance.create.error.
	id = e.createServer("none-left")
	e.waitStatus(id, "ERROR")
	s, err := servers.Get(ctx, e.compute, id).Extract()
	if err != nil || s.Fault.Message != "Build of instance "+id+" aborted: Failed to allocate the network(s), not rescheduling." {
		t.Errorf("server %+v, %v", s, err)
	}
	sub, err := subnets.Get(ctx, e.network, "db90a53b-73a8-4af1-b576-7e14ef604696").Extract()
	if err != nil || sub.CIDR != "10.1.0.0/29" || sub.AllocationPools[0].End != "10.1.0.6" {
		t.Errorf("subnet %+v, %v", sub, err)
	}
}

func TestNeutronQuota(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	if _, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Faults().ExhaustQuota(QuotaFloatingIPs); err != nil {
		t.Fatal(err)
	}
	st, _, body := e.do("POST", "/network/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": publicNet}}, nil)
	want := map[string]any{"NeutronError": map[string]any{"type": "OverQuota", "message": "Quota exceeded for resources: ['floatingip'].", "detail": ""}}
	if st != 409 || !jsonEqual(body, want) {
		t.Errorf("floating IP over quota: %d %v", st, body)
	}
	if err := e.sim.Faults().ExhaustQuota(QuotaPorts); err != nil {
		t.Fatal(err)
	}
	if _, err := ports.Create(ctx, e.network, ports.CreateOpts{NetworkID: net1}).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("port over quota: %v", err)
	}
}

// TestServerPortLifecycle: Nova binds a given port and unbinds it on
// delete; ports Nova made go with the server.
func TestServerPortLifecycle(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	p, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "mine", NetworkID: net1}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	s, err := servers.Create(ctx, e.compute, servers.CreateOpts{Name: "a", FlavorRef: tinyFlavor, ImageRef: tinyImage,
		Networks: []servers.Network{{Port: p.ID}, {UUID: net1}}}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(s.ID, "ACTIVE")
	bound, _ := ports.Get(ctx, e.network, p.ID).Extract()
	if bound.DeviceID != s.ID || bound.DeviceOwner != "compute:nova" || bound.Status != "ACTIVE" {
		t.Errorf("bound port %+v", bound)
	}
	inv := e.sim.Inventory()
	if len(inv.Servers) != 1 || len(inv.Servers[0].Ports) != 2 || len(inv.Servers[0].Addresses) != 2 {
		t.Errorf("inventory %+v", inv)
	}
	if st, _, _ := e.nova("POST", "/servers", map[string]any{"server": map[string]any{"name": "b", "flavorRef": tinyFlavor,
		"imageRef": tinyImage, "networks": []any{map[string]any{"port": p.ID}}}}); st != 409 {
		t.Errorf("booting on a port in use: %d", st)
	}
	if err := servers.Delete(ctx, e.compute, s.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(s.ID, "GONE")
	inv = e.sim.Inventory()
	if len(inv.Ports) != 1 || inv.Ports[0].ID != p.ID || inv.Ports[0].DeviceID != "" {
		t.Errorf("after delete: %+v", inv.Ports)
	}
}

func ptr[T any](v T) *T { return &v }

// TestZeroLimits: limit=0 is valid everywhere; Glance answers an empty page
// with no next link (it used to panic), Neutron ignores it as Neutron does.
func TestZeroLimits(t *testing.T) {
	e := newEnv(t, Config{})
	code, _, body := e.do("GET", "/image/v2/images?limit=0", nil, nil)
	m, _ := body.(map[string]any)
	if imgs, _ := m["images"].([]any); code != 200 || imgs == nil || len(imgs) != 0 || m["next"] != nil {
		t.Errorf("Glance limit=0: %d %v", code, body)
	}
	code, _, body = e.do("GET", "/network/v2.0/networks?limit=0", nil, nil)
	m, _ = body.(map[string]any)
	if nets, _ := m["networks"].([]any); code != 200 || len(nets) == 0 {
		t.Errorf("Neutron limit=0: %d %v", code, body)
	}
}

// TestFloatingIPsAvoidTheRouterGateway: router1's external address (its
// external_fixed_ips) is never handed out as a floating IP.
func TestFloatingIPsAvoidTheRouterGateway(t *testing.T) {
	e := newEnv(t, Config{ExternalNetwork: NetworkConfig{Name: "public", CIDR: "172.24.4.0/29"}})
	_, _, body := e.do("GET", "/network/v2.0/routers", nil, nil)
	routers, _ := body.(map[string]any)["routers"].([]any)
	if len(routers) == 0 {
		t.Fatalf("routers: %v", body)
	}
	gw := routers[0].(map[string]any)["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"]
	_, _, body = e.do("GET", "/network/v2.0/networks?name=public", nil, nil)
	netID := body.(map[string]any)["networks"].([]any)[0].(map[string]any)["id"]
	for i := 0; ; i++ {
		code, _, body := e.do("POST", "/network/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": netID}}, nil)
		if code != 201 {
			if i == 0 {
				t.Fatalf("no floating IP at all: %d %v", code, body)
			}
			break
		}
		if addr := body.(map[string]any)["floatingip"].(map[string]any)["floating_ip_address"]; addr == gw {
			t.Fatalf("floating IP %d got router1's gateway address %v", i, gw)
		}
	}
}

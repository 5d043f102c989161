package openstacksim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Neutron v2.0: networks, subnets and routers (read only, made at start),
// ports and floating IPs (full life cycle), with Neutron's filters and
// NeutronError bodies.

type network struct {
	id, name string
	external bool
	shared   bool
	physnet  string
	subnets  []string
	created  time.Time
}

type subnet struct {
	id, name, networkID string
	cidr                netip.Prefix
	gateway             netip.Addr
	poolStart, poolEnd  netip.Addr
	dhcp                bool
	used                map[netip.Addr]bool
	created             time.Time
}

type fixedIP struct {
	subnetID string
	address  string
}

type port struct {
	id, name, description string
	networkID             string
	mac                   string
	fixedIPs              []fixedIP
	deviceID, deviceOwner string
	bindingHost           string
	adminStateUp          bool
	tags                  []string
	created, updated      time.Time
	revision              int
}

type floatingIP struct {
	id, address, networkID string
	portID, fixedIP        string
	description            string
	tags                   []string
	created, updated       time.Time
	revision               int
}

// The router of the kit, joining the tenant network to the external one, so
// that floating IPs can be associated.
var defaultRouterID = "6b6d4faf-9cfa-4080-aa75-086837ef2f5c"

const defaultSecurityGroupID = "89297215-3cba-4e08-a439-19ec1ec52cb7"

func (s *Sim) createDefaultNetworks() {
	tn, en := s.cfg.TenantNetwork, s.cfg.ExternalNetwork
	s.addNetwork("9e3eb9af-c46e-4d76-be6c-b9d1bfe097a3", tn.Name, false, "physnet1",
		"db90a53b-73a8-4af1-b576-7e14ef604696", "sub1", tn.CIDR, true)
	s.addNetwork("be10a6b3-dfab-48a8-a990-31411c5b92e4", en.Name, true, "physnet-ext",
		"2fd1d488-b96e-4fdc-810f-e6e7a637da4f", en.Name+"-sub", en.CIDR, false)
	// router1's gateway on the external subnet holds the address after the
	// subnet's gateway (external_fixed_ips in routerView): no floating IP
	// may get it.
	esub := s.subnets[s.networks[1].subnets[0]]
	esub.used[esub.gateway.Next()] = true
	// router1's interface on the tenant subnet holds its gateway address.
	tsub := s.subnets[s.networks[0].subnets[0]]
	p := &port{id: "8be36477-e2da-45da-b483-36357e2bebd1", networkID: s.networks[0].id, mac: newMAC(s.rng.Uint32()),
		fixedIPs: []fixedIP{{subnetID: tsub.id, address: tsub.gateway.String()}}, deviceID: defaultRouterID,
		deviceOwner: "network:router_interface", adminStateUp: true, created: startTime, updated: startTime, revision: 1}
	s.ports[p.id] = p
}

func (s *Sim) addNetwork(id, name string, external bool, physnet, subID, subName, cidr string, dhcp bool) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 29 {
		prefix = netip.MustParsePrefix("10.0.0.0/24")
	}
	prefix = prefix.Masked()
	first := prefix.Addr().Next()
	last := lastAddr(prefix).Prev()
	sub := &subnet{id: subID, name: subName, networkID: id, cidr: prefix, gateway: first,
		poolStart: first.Next(), poolEnd: last, dhcp: dhcp, used: map[netip.Addr]bool{first: true}, created: startTime}
	s.subnets[sub.id] = sub
	s.networks = append(s.networks, &network{id: id, name: name, external: external, shared: !external,
		physnet: physnet, subnets: []string{sub.id}, created: startTime})
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func newMAC(r uint32) string {
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", byte(r>>16), byte(r>>8), byte(r))
}

func (s *Sim) findNetwork(id string) *network {
	for _, n := range s.networks {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (s *Sim) tenantNetwork() *network { return s.networks[0] }

func (s *Sim) externalNetwork() *network { return s.networks[1] }

// neutronErr is a Neutron error: HTTP status, NeutronError type, message.
type neutronErr struct {
	code    int
	typ     string
	message string
}

func neutronError(w http.ResponseWriter, e *neutronErr) {
	writeJSON(w, e.code, map[string]any{"NeutronError": map[string]any{"type": e.typ, "message": e.message, "detail": ""}})
}

func badRequest(msg string) *neutronErr {
	return &neutronErr{http.StatusBadRequest, "HTTPBadRequest", msg}
}

func neutronNotFound(w http.ResponseWriter, r *http.Request) {
	neutronError(w, &neutronErr{http.StatusNotFound, "HTTPNotFound", "The resource could not be found."})
}

// allocateIP takes a free address from the network's subnets: the
// requested one, or a random free one as Neutron's IPAM picks.
func (s *Sim) allocateIP(net *network, want string) (fixedIP, *neutronErr) {
	if want != "" {
		addr, err := netip.ParseAddr(want)
		if err != nil {
			return fixedIP{}, badRequest("Invalid input for operation: '" + want + "' is not a valid IP address.")
		}
		for _, sid := range net.subnets {
			sub := s.subnets[sid]
			if !sub.cidr.Contains(addr) {
				continue
			}
			if sub.used[addr] {
				return fixedIP{}, &neutronErr{http.StatusConflict, "IpAddressAlreadyAllocated",
					"IP address " + want + " already allocated in subnet " + sub.id}
			}
			sub.used[addr] = true
			return fixedIP{subnetID: sub.id, address: want}, nil
		}
		return fixedIP{}, badRequest("IP address " + want + " is not a valid IP for any of the subnets on the specified network.")
	}
	for _, sid := range net.subnets {
		sub := s.subnets[sid]
		var free []netip.Addr
		for a := sub.poolStart; a.IsValid() && a.Compare(sub.poolEnd) <= 0; a = a.Next() {
			if !sub.used[a] {
				free = append(free, a)
			}
		}
		if len(free) == 0 {
			continue
		}
		a := free[s.rng.IntN(len(free))]
		sub.used[a] = true
		return fixedIP{subnetID: sub.id, address: a.String()}, nil
	}
	return fixedIP{}, &neutronErr{http.StatusConflict, "IpAddressGenerationFailure",
		"No more IP addresses available on network " + net.id + "."}
}

func (s *Sim) releaseIP(ip fixedIP) {
	if sub := s.subnets[ip.subnetID]; sub != nil {
		if a, err := netip.ParseAddr(ip.address); err == nil {
			delete(sub.used, a)
		}
	}
}

type portSpec struct {
	networkID, name, description string
	fixedIP                      string
	deviceID, deviceOwner        string
	adminStateUp                 *bool
	tags                         []string
}

// newPort creates a port with an address from its network, honouring the
// port quota. Caller holds s.mu.
func (s *Sim) newPort(spec portSpec) (*port, *neutronErr) {
	net := s.findNetwork(spec.networkID)
	if net == nil {
		return nil, &neutronErr{http.StatusNotFound, "NetworkNotFound", "Network " + spec.networkID + " could not be found."}
	}
	if q := s.quotas.Ports; q >= 0 && len(s.ports) >= q {
		return nil, &neutronErr{http.StatusConflict, "OverQuota", "Quota exceeded for resources: ['port']."}
	}
	ip, nerr := s.allocateIP(net, spec.fixedIP)
	if nerr != nil {
		return nil, nerr
	}
	t := now()
	p := &port{id: newUUID(), name: spec.name, description: spec.description, networkID: net.id,
		mac: newMAC(s.rng.Uint32()), fixedIPs: []fixedIP{ip}, deviceID: spec.deviceID, deviceOwner: spec.deviceOwner,
		adminStateUp: spec.adminStateUp == nil || *spec.adminStateUp, tags: spec.tags,
		created: t, updated: t, revision: 1}
	s.ports[p.id] = p
	return p, nil
}

// bindPort is what Nova does to a port during networking: device_id,
// device_owner and the host binding.
func (s *Sim) bindPort(p *port, srv *server) {
	p.deviceID, p.deviceOwner, p.bindingHost = srv.id, "compute:nova", s.cfg.ComputeHost
	p.updated = now()
	p.revision++
}

func (s *Sim) unbindPort(p *port) {
	p.deviceID, p.deviceOwner, p.bindingHost = "", "", ""
	p.updated = now()
	p.revision++
}

// deletePort removes a port: its addresses are freed, floating IPs on it
// are disassociated, and a server it was attached to loses it.
func (s *Sim) deletePort(p *port) {
	for _, ip := range p.fixedIPs {
		s.releaseIP(ip)
	}
	for _, f := range s.fips {
		if f.portID == p.id {
			f.portID, f.fixedIP = "", ""
			f.updated = now()
			f.revision++
		}
	}
	if srv := s.servers[p.deviceID]; srv != nil {
		for i, id := range srv.portIDs {
			if id == p.id {
				srv.portIDs = append(srv.portIDs[:i:i], srv.portIDs[i+1:]...)
				break
			}
		}
		delete(srv.createdPorts, p.id)
	}
	delete(s.ports, p.id)
}

func (s *Sim) routeNeutron() {
	const p = "/network/v2.0"
	s.mux.HandleFunc("GET /network/{$}", s.neutronVersions)
	s.mux.HandleFunc("GET "+p+"/networks", s.authed(s.listNetworks))
	s.mux.HandleFunc("GET "+p+"/networks/{id}", s.authed(s.getNetwork))
	s.mux.HandleFunc("GET "+p+"/subnets", s.authed(s.listSubnets))
	s.mux.HandleFunc("GET "+p+"/subnets/{id}", s.authed(s.getSubnet))
	s.mux.HandleFunc("GET "+p+"/routers", s.authed(s.listRouters))
	s.mux.HandleFunc("GET "+p+"/routers/{id}", s.authed(s.getRouter))
	s.mux.HandleFunc("GET "+p+"/security-groups", s.authed(s.listSecurityGroups))
	s.mux.HandleFunc("GET "+p+"/ports", s.authed(s.listPorts))
	s.mux.HandleFunc("POST "+p+"/ports", s.authed(s.createPort))
	s.mux.HandleFunc("GET "+p+"/ports/{id}", s.authed(s.getPort))
	s.mux.HandleFunc("PUT "+p+"/ports/{id}", s.authed(s.updatePort))
	s.mux.HandleFunc("DELETE "+p+"/ports/{id}", s.authed(s.deletePortHandler))
	s.mux.HandleFunc("GET "+p+"/floatingips", s.authed(s.listFloatingIPs))
	s.mux.HandleFunc("POST "+p+"/floatingips", s.authed(s.createFloatingIP))
	s.mux.HandleFunc("GET "+p+"/floatingips/{id}", s.authed(s.getFloatingIP))
	s.mux.HandleFunc("PUT "+p+"/floatingips/{id}", s.authed(s.updateFloatingIP))
	s.mux.HandleFunc("DELETE "+p+"/floatingips/{id}", s.authed(s.deleteFloatingIP))
	s.mux.HandleFunc("/network/", s.notFound(neutronNotFound))
}

// authed wraps a Neutron or Glance handler: request id and token check.
func (s *Sim) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Openstack-Request-Id", newRequestID())
		if s.checkToken(r.Header.Get("X-Auth-Token")) == nil {
			s.unauthorized(w, r)
			return
		}
		h(w, r)
	}
}

func (s *Sim) neutronVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT",
		"links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/network/v2.0/"}}}}})
}

// ---- views ----

func (s *Sim) networkView(n *network) map[string]any {
	v := map[string]any{
		"id": n.id, "name": n.name, "tenant_id": s.cfg.ProjectID, "project_id": s.cfg.ProjectID,
		"admin_state_up": true, "mtu": 1500, "status": "ACTIVE", "subnets": n.subnets, "shared": n.shared,
		"availability_zone_hints": []any{}, "availability_zones": []any{}, "ipv4_address_scope": nil,
		"ipv6_address_scope": nil, "router:external": n.external, "description": "",
		"port_security_enabled": true, "tags": []string{}, "created_at": n.created.Format(isoSeconds),
		"updated_at": n.created.Format(isoSeconds), "revision_number": 2, "provider:network_type": "flat",
		"provider:physical_network": n.physnet, "provider:segmentation_id": nil,
	}
	if n.external {
		v["is_default"] = false
	}
	return v
}

func (s *Sim) subnetView(sub *subnet) map[string]any {
	return map[string]any{
		"id": sub.id, "name": sub.name, "tenant_id": s.cfg.ProjectID, "project_id": s.cfg.ProjectID,
		"network_id": sub.networkID, "ip_version": 4, "subnetpool_id": nil, "enable_dhcp": sub.dhcp,
		"ipv6_ra_mode": nil, "ipv6_address_mode": nil, "gateway_ip": sub.gateway.String(),
		"cidr": sub.cidr.String(), "allocation_pools": []any{map[string]any{"start": sub.poolStart.String(), "end": sub.poolEnd.String()}},
		"host_routes": []any{}, "dns_nameservers": []any{}, "description": "", "service_types": []any{},
		"tags": []string{}, "created_at": sub.created.Format(isoSeconds), "updated_at": sub.created.Format(isoSeconds),
		"revision_number": 0,
	}
}

func (s *Sim) portView(p *port) map[string]any {
	ips := make([]any, 0, len(p.fixedIPs))
	for _, ip := range p.fixedIPs {
		ips = append(ips, map[string]any{"subnet_id": ip.subnetID, "ip_address": ip.address})
	}
	v := map[string]any{
		"id": p.id, "name": p.name, "network_id": p.networkID, "tenant_id": s.cfg.ProjectID,
		"project_id": s.cfg.ProjectID, "mac_address": p.mac, "admin_state_up": p.adminStateUp,
		"status": "DOWN", "device_id": p.deviceID, "device_owner": p.deviceOwner, "fixed_ips": ips,
		"allowed_address_pairs": []any{}, "extra_dhcp_opts": []any{}, "security_groups": []string{defaultSecurityGroupID},
		"description": p.description, "binding:vnic_type": "normal", "binding:profile": map[string]any{},
		"binding:host_id": p.bindingHost, "binding:vif_type": "unbound", "binding:vif_details": map[string]any{},
		"port_security_enabled": true, "tags": sliceOrEmpty(p.tags), "created_at": p.created.Format(isoSeconds),
		"updated_at": p.updated.Format(isoSeconds), "revision_number": p.revision,
	}
	if p.bindingHost != "" {
		v["status"] = "ACTIVE"
		v["binding:vif_type"] = "ovs"
		v["binding:vif_details"] = map[string]any{"port_filter": true, "bound_drivers": map[string]any{"0": "probe_fake"}}
	}
	if strings.HasPrefix(p.deviceOwner, "network:") {
		v["security_groups"] = []string{}
		v["port_security_enabled"] = false
	}
	return v
}

func (s *Sim) fipView(f *floatingIP) map[string]any {
	v := map[string]any{
		"id": f.id, "tenant_id": s.cfg.ProjectID, "project_id": s.cfg.ProjectID,
		"floating_ip_address": f.address, "floating_network_id": f.networkID, "router_id": nil,
		"port_id": nullStr(f.portID), "fixed_ip_address": nullStr(f.fixedIP), "status": "DOWN",
		"description": f.description, "port_details": nil, "tags": sliceOrEmpty(f.tags),
		"created_at": f.created.Format(isoSeconds), "updated_at": f.updated.Format(isoSeconds),
		"revision_number": f.revision,
	}
	if p := s.ports[f.portID]; p != nil {
		pv := s.portView(p)
		v["router_id"] = defaultRouterID
		v["port_details"] = map[string]any{"name": p.name, "network_id": p.networkID, "mac_address": p.mac,
			"admin_state_up": p.adminStateUp, "status": pv["status"], "device_id": p.deviceID, "device_owner": p.deviceOwner}
	}
	return v
}

func (s *Sim) routerView() map[string]any {
	ext := s.externalNetwork()
	sub := s.subnets[ext.subnets[0]]
	return map[string]any{
		"id": defaultRouterID, "name": "router1", "tenant_id": s.cfg.ProjectID, "project_id": s.cfg.ProjectID,
		"admin_state_up": true, "status": "ACTIVE",
		"external_gateway_info": map[string]any{"network_id": ext.id, "enable_snat": true,
			"external_fixed_ips": []any{map[string]any{"subnet_id": sub.id, "ip_address": sub.gateway.Next().String()}}},
		"description": "", "availability_zones": []any{}, "distributed": false, "ha": false,
		"availability_zone_hints": []any{}, "routes": []any{}, "flavor_id": nil, "tags": []string{},
		"created_at": startTime.Format(isoSeconds), "updated_at": startTime.Format(isoSeconds), "revision_number": 3,
	}
}

// ---- list filtering ----

// listParams are the query parameters Neutron treats specially.
var listParams = map[string]bool{"fields": true, "limit": true, "marker": true, "sort_key": true, "sort_dir": true,
	"page_reverse": true, "tags": true, "tags-any": true, "not-tags": true, "not-tags-any": true}

// writeList filters, pages and writes views the way Neutron's API does:
// each query parameter is a filter on the attribute of that name (several
// values: any of them), an unknown attribute is a 400, fields selects
// attributes, limit/marker page with a <resource>_links next link.
func (s *Sim) writeList(w http.ResponseWriter, r *http.Request, resource string, views []map[string]any) {
	q := r.URL.Query()
	var nerr *neutronErr
	out := filter(views, func(v map[string]any) bool {
		ok, err := matchFilters(v, q)
		if nerr == nil {
			nerr = err
		}
		return ok
	})
	if nerr != nil {
		neutronError(w, nerr)
		return
	}
	body := map[string]any{}
	out, _ = afterMarker(out, viewID, q.Get("marker")) // a marker not among the matches: an empty page
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			neutronError(w, badRequest("Bad limit request: Limit must be an integer 0 or greater and not '"+l+"'."))
			return
		}
		var more bool
		if n > 0 {
			out, more = firstN(out, n)
		}
		if more {
			body[resource+"_links"] = []any{map[string]any{"rel": "next",
				"href": s.baseURL(r) + r.URL.Path + "?" + withMarker(q, viewID(out[n-1]))}}
		}
	}
	if fields := q["fields"]; len(fields) > 0 {
		for i, v := range out {
			sel := map[string]any{}
			for _, f := range fields {
				if x, ok := v[f]; ok {
					sel[f] = x
				}
			}
			out[i] = sel
		}
	}
	if out == nil {
		out = []map[string]any{}
	}
	body[resource] = out
	writeJSON(w, http.StatusOK, body)
}

func viewID(v map[string]any) string {
	id, _ := v["id"].(string)
	return id
}

func matchFilters(v map[string]any, q url.Values) (bool, *neutronErr) {
	tags, _ := v["tags"].([]string)
	if t := q.Get("tags"); t != "" && !hasAll(tags, strings.Split(t, ",")) {
		return false, nil
	}
	if t := q.Get("tags-any"); t != "" && !hasAny(tags, strings.Split(t, ",")) {
		return false, nil
	}
	if t := q.Get("not-tags"); t != "" && hasAll(tags, strings.Split(t, ",")) {
		return false, nil
	}
	if t := q.Get("not-tags-any"); t != "" && hasAny(tags, strings.Split(t, ",")) {
		return false, nil
	}
	for key, wants := range q {
		if listParams[key] {
			continue
		}
		have, ok := v[key]
		if !ok {
			return false, badRequest("[" + key + "] is invalid attribute for filtering")
		}
		if key == "fixed_ips" {
			if !matchFixedIPs(have, wants) {
				return false, nil
			}
			continue
		}
		matched := false
		for _, want := range wants {
			if filterValue(have) == want || (isBool(have) && strings.EqualFold(filterValue(have), want)) {
				matched = true
			}
		}
		if !matched {
			return false, nil
		}
	}
	return true, nil
}

// matchFixedIPs handles fixed_ips=ip_address=X and fixed_ips=subnet_id=Y.
func matchFixedIPs(have any, wants []string) bool {
	list, _ := have.([]any)
	for _, want := range wants {
		k, val, _ := strings.Cut(want, "=")
		found := false
		for _, ip := range list {
			if m, ok := ip.(map[string]any); ok && fmt.Sprint(m[k]) == val {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func isBool(v any) bool { _, ok := v.(bool); return ok }

func filterValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	default:
		return fmt.Sprint(v)
	}
}

// ---- networks, subnets, routers, security groups ----

func (s *Sim) listNetworks(w http.ResponseWriter, r *http.Request) {
	s.writeList(w, r, "networks", lockedViews(s, func() []*network { return s.networks }, s.networkView))
}

func (s *Sim) getNetwork(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	n := s.findNetwork(id)
	var v map[string]any
	if n != nil {
		v = s.networkView(n)
	}
	s.mu.Unlock()
	if n == nil {
		neutronError(w, &neutronErr{http.StatusNotFound, "NetworkNotFound", "Network " + id + " could not be found."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"network": v})
}

func (s *Sim) listSubnets(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var views []map[string]any
	for _, n := range s.networks {
		for _, id := range n.subnets {
			views = append(views, s.subnetView(s.subnets[id]))
		}
	}
	s.mu.Unlock()
	s.writeList(w, r, "subnets", views)
}

func (s *Sim) getSubnet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	sub := s.subnets[id]
	var v map[string]any
	if sub != nil {
		v = s.subnetView(sub)
	}
	s.mu.Unlock()
	if sub == nil {
		neutronError(w, &neutronErr{http.StatusNotFound, "SubnetNotFound", "Subnet " + id + " could not be found."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subnet": v})
}

func (s *Sim) listRouters(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.routerView()
	s.mu.Unlock()
	s.writeList(w, r, "routers", []map[string]any{v})
}

func (s *Sim) getRouter(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id != defaultRouterID {
		neutronError(w, &neutronErr{http.StatusNotFound, "RouterNotFound", "Router " + id + " could not be found"})
		return
	}
	s.mu.Lock()
	v := s.routerView()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"router": v})
}

func (s *Sim) listSecurityGroups(w http.ResponseWriter, r *http.Request) {
	v := map[string]any{"id": defaultSecurityGroupID, "name": "default", "description": "Default security group",
		"tenant_id": s.cfg.ProjectID, "project_id": s.cfg.ProjectID, "stateful": true, "tags": []string{},
		"security_group_rules": []any{}, "created_at": startTime.Format(isoSeconds),
		"updated_at": startTime.Format(isoSeconds), "revision_number": 1}
	s.writeList(w, r, "security_groups", []map[string]any{v})
}

// ---- ports ----

// sortedPorts returns the ports oldest first (Neutron lists in creation
// order).
func (s *Sim) sortedPorts() []*port {
	return byCreation(s.ports, func(p *port) (time.Time, string) { return p.created, p.id })
}

func (s *Sim) listPorts(w http.ResponseWriter, r *http.Request) {
	s.writeList(w, r, "ports", lockedViews(s, s.sortedPorts, s.portView))
}

func (s *Sim) getPort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	p := s.ports[id]
	var v map[string]any
	if p != nil {
		v = s.portView(p)
	}
	s.mu.Unlock()
	if p == nil {
		neutronError(w, portNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"port": v})
}

func portNotFound(id string) *neutronErr {
	return &neutronErr{http.StatusNotFound, "PortNotFound", "Port " + id + " could not be found."}
}

// readNeutronBody decodes {"<resource>": {...}}.
func readNeutronBody(w http.ResponseWriter, r *http.Request, resource string) (map[string]any, bool) {
	raw, err := readAll(r)
	var body map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		neutronError(w, badRequest("Malformed request body"))
		return nil, false
	}
	obj, ok := body[resource].(map[string]any)
	if !ok {
		neutronError(w, badRequest("Unable to find '"+resource+"' in request body"))
		return nil, false
	}
	return obj, true
}

func strField(m map[string]any, k string) (string, bool) {
	v, ok := m[k].(string)
	return v, ok
}

func tagsField(m map[string]any) []string {
	list, _ := m["tags"].([]any)
	var out []string
	for _, t := range list {
		if s, ok := t.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (s *Sim) createPort(w http.ResponseWriter, r *http.Request) {
	obj, ok := readNeutronBody(w, r, "port")
	if !ok {
		return
	}
	spec := portSpec{tags: tagsField(obj)}
	spec.networkID, _ = strField(obj, "network_id")
	if spec.networkID == "" {
		neutronError(w, badRequest("Failed to parse request. Required attribute 'network_id' not specified"))
		return
	}
	spec.name, _ = strField(obj, "name")
	spec.description, _ = strField(obj, "description")
	spec.deviceID, _ = strField(obj, "device_id")
	spec.deviceOwner, _ = strField(obj, "device_owner")
	if b, ok := obj["admin_state_up"].(bool); ok {
		spec.adminStateUp = &b
	}
	if ips, ok := obj["fixed_ips"].([]any); ok && len(ips) > 0 {
		if m, ok := ips[0].(map[string]any); ok {
			spec.fixedIP, _ = strField(m, "ip_address")
		}
	}
	s.mu.Lock()
	p, nerr := s.newPort(spec)
	var v map[string]any
	if nerr == nil {
		v = s.portView(p)
	}
	s.mu.Unlock()
	if nerr != nil {
		neutronError(w, nerr)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"port": v})
}

func (s *Sim) updatePort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	obj, ok := readNeutronBody(w, r, "port")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ports[id]
	if p == nil {
		neutronError(w, portNotFound(id))
		return
	}
	if v, ok := strField(obj, "name"); ok {
		p.name = v
	}
	if v, ok := strField(obj, "description"); ok {
		p.description = v
	}
	if v, ok := strField(obj, "device_id"); ok {
		p.deviceID = v
	}
	if v, ok := strField(obj, "device_owner"); ok {
		p.deviceOwner = v
	}
	if v, ok := strField(obj, "binding:host_id"); ok {
		p.bindingHost = v
	}
	if v, ok := obj["admin_state_up"].(bool); ok {
		p.adminStateUp = v
	}
	if _, ok := obj["tags"]; ok {
		p.tags = tagsField(obj)
	}
	p.updated = now()
	p.revision++
	writeJSON(w, http.StatusOK, map[string]any{"port": s.portView(p)})
}

// deletePortHandler deletes a port. Real Neutron lets a port in use by an
// instance go (Nova then learns of it through network-vif-deleted) and only
// refuses ports owned by a router.
func (s *Sim) deletePortHandler(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ports[id]
	if p == nil {
		neutronError(w, portNotFound(id))
		return
	}
	if p.deviceOwner == "network:router_interface" || p.deviceOwner == "network:router_gateway" {
		neutronError(w, &neutronErr{http.StatusConflict, "L3PortInUse",
			"Port " + id + " has owner " + p.deviceOwner + " and therefore cannot be deleted directly via the port API."})
		return
	}
	s.deletePort(p)
	w.WriteHeader(http.StatusNoContent)
}

// ---- floating IPs ----

// sortedFIPs returns the floating IPs oldest first.
func (s *Sim) sortedFIPs() []*floatingIP {
	return byCreation(s.fips, func(f *floatingIP) (time.Time, string) { return f.created, f.id })
}

func (s *Sim) listFloatingIPs(w http.ResponseWriter, r *http.Request) {
	s.writeList(w, r, "floatingips", lockedViews(s, s.sortedFIPs, s.fipView))
}

func fipNotFound(id string) *neutronErr {
	return &neutronErr{http.StatusNotFound, "FloatingIPNotFound", "Floating IP " + id + " could not be found"}
}

func (s *Sim) getFloatingIP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fips[id]
	if f == nil {
		neutronError(w, fipNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"floatingip": s.fipView(f)})
}

func (s *Sim) createFloatingIP(w http.ResponseWriter, r *http.Request) {
	obj, ok := readNeutronBody(w, r, "floatingip")
	if !ok {
		return
	}
	netID, _ := strField(obj, "floating_network_id")
	if netID == "" {
		neutronError(w, badRequest("Failed to parse request. Required attribute 'floating_network_id' not specified"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	net := s.findNetwork(netID)
	if net == nil {
		neutronError(w, &neutronErr{http.StatusNotFound, "NetworkNotFound", "Network " + netID + " could not be found."})
		return
	}
	if !net.external {
		neutronError(w, &neutronErr{http.StatusBadRequest, "BadRequest",
			"Bad floatingip request: Network " + netID + " is not a valid external network."})
		return
	}
	if q := s.quotas.FloatingIPs; q >= 0 && len(s.fips) >= q {
		neutronError(w, &neutronErr{http.StatusConflict, "OverQuota", "Quota exceeded for resources: ['floatingip']."})
		return
	}
	want, _ := strField(obj, "floating_ip_address")
	ip, nerr := s.allocateIP(net, want)
	if nerr != nil {
		neutronError(w, nerr)
		return
	}
	t := now()
	f := &floatingIP{id: newUUID(), address: ip.address, networkID: net.id, tags: tagsField(obj), created: t, updated: t}
	f.description, _ = strField(obj, "description")
	if portID, _ := strField(obj, "port_id"); portID != "" {
		fixed, _ := strField(obj, "fixed_ip_address")
		if nerr := s.associate(f, portID, fixed); nerr != nil {
			s.releaseIP(ip)
			neutronError(w, nerr)
			return
		}
	}
	s.fips[f.id] = f
	writeJSON(w, http.StatusCreated, map[string]any{"floatingip": s.fipView(f)})
}

// associate points a floating IP at a port's fixed IP, refusing a fixed IP
// that already has one, as Neutron does.
func (s *Sim) associate(f *floatingIP, portID, fixed string) *neutronErr {
	p := s.ports[portID]
	if p == nil {
		return portNotFound(portID)
	}
	if len(p.fixedIPs) == 0 {
		return badRequest("Bad floatingip request: Port " + portID + " does not have any IP addresses on it.")
	}
	if fixed == "" {
		fixed = p.fixedIPs[0].address
	} else if !containsIP(p.fixedIPs, fixed) {
		return badRequest("Bad floatingip request: Port " + portID + " does not have fixed ip " + fixed + ".")
	}
	for _, other := range s.fips {
		if other != f && other.portID == portID && other.fixedIP == fixed {
			return &neutronErr{http.StatusConflict, "FloatingIPPortAlreadyAssociated", fmt.Sprintf(
				"Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.",
				f.address, f.id, portID, fixed, f.networkID)}
		}
	}
	f.portID, f.fixedIP = portID, fixed
	return nil
}

func containsIP(ips []fixedIP, addr string) bool {
	for _, ip := range ips {
		if ip.address == addr {
			return true
		}
	}
	return false
}

func (s *Sim) updateFloatingIP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	obj, ok := readNeutronBody(w, r, "floatingip")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fips[id]
	if f == nil {
		neutronError(w, fipNotFound(id))
		return
	}
	// Neutron (Zed) reads a missing port_id as null: an update without it
	// disassociates (checked against the real kit with {"floatingip": {}}).
	v, hasPort := obj["port_id"]
	if !hasPort {
		f.portID, f.fixedIP = "", ""
	} else {
		switch v := v.(type) {
		case nil:
			f.portID, f.fixedIP = "", ""
		case string:
			fixed, _ := strField(obj, "fixed_ip_address")
			if nerr := s.associate(f, v, fixed); nerr != nil {
				neutronError(w, nerr)
				return
			}
		default:
			neutronError(w, badRequest("Invalid input for port_id. Reason: '"+fmt.Sprint(v)+"' is not a valid UUID."))
			return
		}
	}
	if v, ok := strField(obj, "description"); ok {
		f.description = v
	}
	f.updated = now()
	f.revision++
	writeJSON(w, http.StatusOK, map[string]any{"floatingip": s.fipView(f)})
}

func (s *Sim) deleteFloatingIP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fips[id]
	if f == nil {
		neutronError(w, fipNotFound(id))
		return
	}
	net := s.findNetwork(f.networkID)
	if net != nil {
		s.releaseIP(fixedIP{subnetID: net.subnets[0], address: f.address})
	}
	delete(s.fips, id)
	w.WriteHeader(http.StatusNoContent)
}

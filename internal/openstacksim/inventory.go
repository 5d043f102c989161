package openstacksim

import (
	"sort"
	"sync"
	"time"
)

// Observability: the call log (by method and path template, so a test can
// prove "no polling") and the inventory of live resources (so a test can
// prove nothing leaked).

// Call is one API call the simulator answered.
type Call struct {
	Time     time.Time     `json:"time"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	Template string        `json:"template"` // "GET /compute/v2.1/servers/{id}"
	Status   int           `json:"status"`
	Duration time.Duration `json:"duration_ns"`
}

// CallStats is a snapshot of the call log.
type CallStats struct {
	// Counts maps a template ("GET /compute/v2.1/servers/{id}") to the
	// number of calls since the last reset.
	Counts map[string]int `json:"counts"`
	// Calls are the most recent calls, oldest first (at most maxCalls).
	Calls []Call `json:"calls"`
}

// Count returns the number of calls to a template.
func (c CallStats) Count(template string) int { return c.Counts[template] }

// Total returns the number of calls.
func (c CallStats) Total() int {
	n := 0
	for _, v := range c.Counts {
		n += v
	}
	return n
}

const maxCalls = 10000

type callLog struct {
	mu     sync.Mutex
	counts map[string]int
	calls  []Call
}

func newCallLog() *callLog { return &callLog{counts: map[string]int{}} }

func (l *callLog) record(c Call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[c.Template]++
	if len(l.calls) >= maxCalls {
		l.calls = append(l.calls[:0], l.calls[len(l.calls)/2:]...)
	}
	l.calls = append(l.calls, c)
}

// Calls returns a snapshot of the call log.
func (s *Sim) Calls() CallStats {
	l := s.calls
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		counts[k] = v
	}
	return CallStats{Counts: counts, Calls: append([]Call(nil), l.calls...)}
}

// ResetCalls empties the call log.
func (s *Sim) ResetCalls() {
	l := s.calls
	l.mu.Lock()
	l.counts = map[string]int{}
	l.calls = nil
	l.mu.Unlock()
}

// Inventory lists every live server, port and floating IP.
type Inventory struct {
	Servers     []InventoryServer     `json:"servers"`
	Ports       []InventoryPort       `json:"ports"`
	FloatingIPs []InventoryFloatingIP `json:"floating_ips"`
}

// InventoryServer is a live Nova server.
type InventoryServer struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	VMState   string            `json:"vm_state"`
	TaskState string            `json:"task_state,omitempty"`
	Flavor    string            `json:"flavor"`
	Image     string            `json:"image"`
	Ports     []string          `json:"ports,omitempty"`
	Addresses []string          `json:"addresses,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Fault     string            `json:"fault,omitempty"`
	Created   time.Time         `json:"created"`
}

// InventoryPort is a Neutron port (router ports excluded: they are part of
// the fixed setup).
type InventoryPort struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	NetworkID   string   `json:"network_id"`
	DeviceID    string   `json:"device_id,omitempty"`
	DeviceOwner string   `json:"device_owner,omitempty"`
	FixedIPs    []string `json:"fixed_ips"`
	Tags        []string `json:"tags,omitempty"`
}

// InventoryFloatingIP is a Neutron floating IP.
type InventoryFloatingIP struct {
	ID          string   `json:"id"`
	Address     string   `json:"address"`
	PortID      string   `json:"port_id,omitempty"`
	FixedIP     string   `json:"fixed_ip,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// Inventory returns the live resources, each list sorted by id.
func (s *Sim) Inventory() Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := Inventory{Servers: []InventoryServer{}, Ports: []InventoryPort{}, FloatingIPs: []InventoryFloatingIP{}}
	for _, srv := range s.servers {
		is := InventoryServer{ID: srv.id, Name: srv.name, Status: status(srv.vmState, srv.taskState),
			VMState: srv.vmState, TaskState: srv.taskState, Image: srv.imageID, Ports: append([]string(nil), srv.portIDs...),
			Metadata: srv.metadata, Tags: srv.tags, Created: srv.created}
		if f := s.findFlavor(srv.flavorID); f != nil {
			is.Flavor = f.Name
		}
		for _, ip := range s.serverIPs(srv) {
			is.Addresses = append(is.Addresses, ip.address)
		}
		if srv.fault != nil {
			is.Fault = srv.fault.message
		}
		inv.Servers = append(inv.Servers, is)
	}
	for _, p := range s.ports {
		if p.deviceOwner == "network:router_interface" {
			continue
		}
		ip := InventoryPort{ID: p.id, Name: p.name, NetworkID: p.networkID, DeviceID: p.deviceID,
			DeviceOwner: p.deviceOwner, Tags: p.tags}
		for _, f := range p.fixedIPs {
			ip.FixedIPs = append(ip.FixedIPs, f.address)
		}
		inv.Ports = append(inv.Ports, ip)
	}
	for _, f := range s.fips {
		inv.FloatingIPs = append(inv.FloatingIPs, InventoryFloatingIP{ID: f.id, Address: f.address, PortID: f.portID,
			FixedIP: f.fixedIP, Description: f.description, Tags: f.tags})
	}
	sort.Slice(inv.Servers, func(i, j int) bool { return inv.Servers[i].ID < inv.Servers[j].ID })
	sort.Slice(inv.Ports, func(i, j int) bool { return inv.Ports[i].ID < inv.Ports[j].ID })
	sort.Slice(inv.FloatingIPs, func(i, j int) bool { return inv.FloatingIPs[i].ID < inv.FloatingIPs[j].ID })
	return inv
}

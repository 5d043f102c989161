package openstacksim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The state file: what a cloud keeps in its databases, so that a simulator
// stopped and started again (`make run` twice) still has the servers,
// ports, floating IPs and keypairs the rest of the system knows about.
// Close writes it (Config.StateFile), Open reads it. Tokens, the call log,
// sent notifications, fault rules and quotas set through the admin API are
// not kept: clients re-authenticate on 401, the rest is test equipment.
// The file's networks and subnets win over Config.TenantNetwork and
// ExternalNetwork, so that the restored ports' addresses stay in their
// subnets.

// StateVersion is the version of the state file format: {"version": 1, ...}.
const StateVersion = 1

// State is the content of a state file.
type State struct {
	Version int       `json:"version"`
	SavedAt time.Time `json:"saved_at"`
	// Seq numbers instances (instance-NNNNNNNN) and keypairs.
	Seq         int               `json:"seq"`
	Networks    []NetworkState    `json:"networks"` // creation order: the tenant network, then the external one
	Ports       []PortState       `json:"ports"`
	FloatingIPs []FloatingIPState `json:"floating_ips"`
	Servers     []ServerState     `json:"servers"`
	// DeletedServers are the tombstones GET /servers?changes-since shows.
	DeletedServers []ServerState  `json:"deleted_servers"`
	Keypairs       []KeypairState `json:"keypairs"`
}

// NetworkState is a Neutron network and its subnets.
type NetworkState struct {
	ID              string        `json:"id"`
	Name            string        `json:"name"`
	External        bool          `json:"external"`
	Shared          bool          `json:"shared"`
	PhysicalNetwork string        `json:"physical_network"`
	Subnets         []SubnetState `json:"subnets"`
	Created         time.Time     `json:"created"`
}

// SubnetState is a subnet and the addresses its IPAM has handed out.
type SubnetState struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CIDR      string    `json:"cidr"`
	Gateway   string    `json:"gateway_ip"`
	PoolStart string    `json:"pool_start"`
	PoolEnd   string    `json:"pool_end"`
	DHCP      bool      `json:"enable_dhcp"`
	Used      []string  `json:"used_addresses"`
	Created   time.Time `json:"created"`
}

// PortState is a Neutron port.
type PortState struct {
	ID           string         `json:"id"`
	Name         string         `json:"name"`
	Description  string         `json:"description"`
	NetworkID    string         `json:"network_id"`
	MAC          string         `json:"mac_address"`
	FixedIPs     []FixedIPState `json:"fixed_ips"`
	DeviceID     string         `json:"device_id"`
	DeviceOwner  string         `json:"device_owner"`
	BindingHost  string         `json:"binding_host"`
	AdminStateUp bool           `json:"admin_state_up"`
	Tags         []string       `json:"tags,omitempty"`
	Created      time.Time      `json:"created"`
	Updated      time.Time      `json:"updated"`
	Revision     int            `json:"revision"`
}

// FixedIPState is one address of a port.
type FixedIPState struct {
	SubnetID string `json:"subnet_id"`
	Address  string `json:"ip_address"`
}

// FloatingIPState is a floating IP and its association.
type FloatingIPState struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	NetworkID   string    `json:"network_id"`
	PortID      string    `json:"port_id,omitempty"`
	FixedIP     string    `json:"fixed_ip,omitempty"`
	Description string    `json:"description"`
	Tags        []string  `json:"tags,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Revision    int       `json:"revision"`
}

// ServerState is a Nova instance as its row and the compute host know it.
type ServerState struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    string            `json:"description,omitempty"`
	TenantID       string            `json:"tenant_id"`
	UserID         string            `json:"user_id"`
	FlavorID       string            `json:"flavor_id"`
	OldFlavorID    string            `json:"old_flavor_id,omitempty"`
	ImageID        string            `json:"image_id"`
	KeyName        string            `json:"key_name,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Tags           []string          `json:"tags,omitempty"`
	AdminPass      string            `json:"admin_pass,omitempty"`
	VMState        string            `json:"vm_state"`
	TaskState      string            `json:"task_state,omitempty"`
	PowerState     int               `json:"power_state"`
	PreResizeState string            `json:"pre_resize_state,omitempty"`
	Migration      string            `json:"migration,omitempty"`
	Host           string            `json:"host,omitempty"`
	AZ             string            `json:"availability_zone,omitempty"`
	Saved          bool              `json:"saved"`
	InstanceName   string            `json:"instance_name"`
	ReservationID  string            `json:"reservation_id"`
	RootDevice     string            `json:"root_device,omitempty"`
	Created        time.Time         `json:"created"`
	Updated        time.Time         `json:"updated"`
	LaunchedAt     time.Time         `json:"launched_at,omitzero"`
	TerminatedAt   time.Time         `json:"terminated_at,omitzero"`
	DeletedAt      time.Time         `json:"deleted_at,omitzero"`
	Requested      []NetRequestState `json:"requested_networks,omitempty"`
	PortIDs        []string          `json:"port_ids,omitempty"`
	CreatedPortIDs []string          `json:"created_port_ids,omitempty"` // the ports Nova made and deletes with the server
	Networked      bool              `json:"networked"`
	Fault          *FaultState       `json:"fault,omitempty"`
	RequestID      string            `json:"request_id,omitempty"` // the last request's id, carried by the notifications of a resumed operation
	BaseURL        string            `json:"base_url,omitempty"`
}

// NetRequestState is one entry of a create request's networks.
type NetRequestState struct {
	NetworkID string `json:"uuid,omitempty"`
	PortID    string `json:"port,omitempty"`
	FixedIP   string `json:"fixed_ip,omitempty"`
}

// FaultState is an instance fault.
type FaultState struct {
	Code    int       `json:"code"`
	Message string    `json:"message"`
	Details string    `json:"details,omitempty"`
	Created time.Time `json:"created"`
}

// KeypairState is a Nova keypair.
type KeypairState struct {
	ID          int       `json:"id"`
	Name        string    `json:"name"`
	PublicKey   string    `json:"public_key"`
	Fingerprint string    `json:"fingerprint"`
	Type        string    `json:"type"`
	Created     time.Time `json:"created"`
}

// ---- save ----

// snapshot copies the simulator's state. Caller holds s.mu.
func (s *Sim) snapshot() State {
	st := State{Version: StateVersion, SavedAt: now(), Seq: s.seq,
		Networks: []NetworkState{}, Ports: []PortState{}, FloatingIPs: []FloatingIPState{},
		Servers: []ServerState{}, DeletedServers: []ServerState{}, Keypairs: []KeypairState{}}
	for _, n := range s.networks {
		ns := NetworkState{ID: n.id, Name: n.name, External: n.external, Shared: n.shared,
			PhysicalNetwork: n.physnet, Created: n.created}
		for _, id := range n.subnets {
			sub := s.subnets[id]
			used := make([]string, 0, len(sub.used))
			for a := range sub.used {
				used = append(used, a.String())
			}
			sort.Strings(used)
			ns.Subnets = append(ns.Subnets, SubnetState{ID: sub.id, Name: sub.name, CIDR: sub.cidr.String(),
				Gateway: sub.gateway.String(), PoolStart: sub.poolStart.String(), PoolEnd: sub.poolEnd.String(),
				DHCP: sub.dhcp, Used: used, Created: sub.created})
		}
		st.Networks = append(st.Networks, ns)
	}
	for _, p := range s.sortedPorts() {
		ps := PortState{ID: p.id, Name: p.name, Description: p.description, NetworkID: p.networkID, MAC: p.mac,
			DeviceID: p.deviceID, DeviceOwner: p.deviceOwner, BindingHost: p.bindingHost,
			AdminStateUp: p.adminStateUp, Tags: p.tags, Created: p.created, Updated: p.updated, Revision: p.revision}
		for _, ip := range p.fixedIPs {
			ps.FixedIPs = append(ps.FixedIPs, FixedIPState{SubnetID: ip.subnetID, Address: ip.address})
		}
		st.Ports = append(st.Ports, ps)
	}
	for _, f := range s.sortedFIPs() {
		st.FloatingIPs = append(st.FloatingIPs, FloatingIPState{ID: f.id, Address: f.address, NetworkID: f.networkID,
			PortID: f.portID, FixedIP: f.fixedIP, Description: f.description, Tags: f.tags,
			Created: f.created, Updated: f.updated, Revision: f.revision})
	}
	byCreated := func(m map[string]*server) []*server {
		return byCreation(m, func(srv *server) (time.Time, string) { return srv.created, srv.id })
	}
	for _, srv := range byCreated(s.servers) {
		st.Servers = append(st.Servers, serverState(srv))
	}
	for _, srv := range byCreated(s.deleted) {
		st.DeletedServers = append(st.DeletedServers, serverState(srv))
	}
	for _, k := range s.keypairs {
		st.Keypairs = append(st.Keypairs, KeypairState{ID: k.id, Name: k.name, PublicKey: k.publicKey,
			Fingerprint: k.fprint, Type: k.typ, Created: k.created})
	}
	sort.Slice(st.Keypairs, func(i, j int) bool { return st.Keypairs[i].Name < st.Keypairs[j].Name })
	return st
}

func serverState(srv *server) ServerState {
	ss := ServerState{ID: srv.id, Name: srv.name, Description: srv.description, TenantID: srv.tenantID,
		UserID: srv.userID, FlavorID: srv.flavorID, OldFlavorID: srv.oldFlavorID, ImageID: srv.imageID,
		KeyName: srv.keyName, Metadata: srv.metadata, Tags: srv.tags, AdminPass: srv.adminPass,
		VMState: srv.vmState, TaskState: srv.taskState, PowerState: srv.powerState,
		PreResizeState: srv.preResizeState, Migration: srv.migration, Host: srv.host, AZ: srv.az,
		Saved: srv.saved, InstanceName: srv.instanceName, ReservationID: srv.reservationID,
		RootDevice: srv.rootDevice, Created: srv.created, Updated: srv.updated, LaunchedAt: srv.launchedAt,
		TerminatedAt: srv.terminatedAt, DeletedAt: srv.deletedAt, PortIDs: srv.portIDs,
		Networked: srv.networked, RequestID: srv.requestID, BaseURL: srv.base}
	for _, r := range srv.requested {
		ss.Requested = append(ss.Requested, NetRequestState{NetworkID: r.networkID, PortID: r.portID, FixedIP: r.fixedIP})
	}
	for _, pid := range srv.portIDs {
		if srv.createdPorts[pid] {
			ss.CreatedPortIDs = append(ss.CreatedPortIDs, pid)
		}
	}
	if f := srv.fault; f != nil {
		ss.Fault = &FaultState{Code: f.code, Message: f.message, Details: f.details, Created: f.created}
	}
	return ss
}

// saveState writes the state to Config.StateFile (see writeState) and logs
// what it saved. Caller has stopped every goroutine of the Sim.
func (s *Sim) saveState() error {
	s.mu.Lock()
	st := s.snapshot()
	s.mu.Unlock()
	if err := s.writeState(st); err != nil {
		return err
	}
	s.logf("state: saved %d servers, %d ports, %d floating IPs, %d keypairs to %s",
		len(st.Servers), len(st.Ports), len(st.FloatingIPs), len(st.Keypairs), s.cfg.StateFile)
	return nil
}

// autosave also saves the state every interval while the Sim runs, when it
// changed, so that a simulator killed without Close (kill -9, a crash)
// comes back as it was moments before, not as it was at the last clean
// stop. What was in flight is settled at Open as after a Close.
func (s *Sim) autosave(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	var last []byte
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		st := s.snapshot()
		s.mu.Unlock()
		key := st
		key.SavedAt = time.Time{}
		b, err := json.Marshal(key)
		if err != nil || bytes.Equal(b, last) {
			continue
		}
		if err := s.writeState(st); err != nil {
			s.logf("state: autosave: %v", err)
			continue
		}
		last = b
	}
}

// writeState writes st to Config.StateFile atomically: a temporary file in
// the same folder, synced, then renamed over the old one, so that a crash
// mid-write leaves the previous state.
func (s *Sim) writeState(st State) error {
	path := s.cfg.StateFile
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("openstacksim: state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("openstacksim: state file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("openstacksim: state file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("openstacksim: write state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself survives a crash
		_ = d.Close()
	}
	return nil
}

// ---- load ----

// loadState reads Config.StateFile into the new Sim, if the file exists,
// and resumes what was in flight. Caller holds s.mu.
func (s *Sim) loadState() error {
	path := s.cfg.StateFile
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.logf("state: no state file %s yet: starting with an empty cloud", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("openstacksim: read state file: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("openstacksim: state file %s: %w (move it away to start with an empty cloud)", path, err)
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fail(fmt.Errorf("not a state file: %w", err))
	}
	if head.Version == nil || *head.Version != StateVersion {
		v := "none"
		if head.Version != nil {
			v = fmt.Sprint(*head.Version)
		}
		return fail(fmt.Errorf("version %s, this simulator reads version %d", v, StateVersion))
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return fail(err)
	}
	if err := s.restore(st); err != nil {
		return fail(err)
	}
	resumed := s.resumeInFlight()
	s.logf("state: restored %d servers, %d ports, %d floating IPs, %d keypairs from %s; %d operations in flight resumed",
		len(s.servers), len(s.ports), len(s.fips), len(s.keypairs), path, resumed)
	return nil
}

// restore replaces the Sim's resources with those of st, checking that
// they hang together. The subnets' pools mark every address a port or a
// floating IP holds as used, whatever the file's used list says.
func (s *Sim) restore(st State) error {
	if len(st.Networks) < 2 {
		return fmt.Errorf("%d networks, want the tenant and the external one", len(st.Networks))
	}
	nets, subnets := []*network{}, map[string]*subnet{}
	for _, ns := range st.Networks {
		n := &network{id: ns.ID, name: ns.Name, external: ns.External, shared: ns.Shared, physnet: ns.PhysicalNetwork, created: ns.Created}
		for _, ss := range ns.Subnets {
			sub, err := restoreSubnet(n.id, ss)
			if err != nil {
				return err
			}
			subnets[sub.id] = sub
			n.subnets = append(n.subnets, sub.id)
		}
		if len(n.subnets) == 0 {
			return fmt.Errorf("network %s has no subnet", n.id)
		}
		nets = append(nets, n)
	}
	s.networks, s.subnets = nets, subnets
	s.ports = map[string]*port{}
	for _, ps := range st.Ports {
		if s.findNetwork(ps.NetworkID) == nil {
			return fmt.Errorf("port %s: unknown network %s", ps.ID, ps.NetworkID)
		}
		p := &port{id: ps.ID, name: ps.Name, description: ps.Description, networkID: ps.NetworkID, mac: ps.MAC,
			deviceID: ps.DeviceID, deviceOwner: ps.DeviceOwner, bindingHost: ps.BindingHost,
			adminStateUp: ps.AdminStateUp, tags: ps.Tags, created: ps.Created, updated: ps.Updated, revision: ps.Revision}
		for _, ip := range ps.FixedIPs {
			if err := s.markUsed(ip.SubnetID, ip.Address); err != nil {
				return fmt.Errorf("port %s: %w", ps.ID, err)
			}
			p.fixedIPs = append(p.fixedIPs, fixedIP{subnetID: ip.SubnetID, address: ip.Address})
		}
		s.ports[p.id] = p
	}
	s.fips = map[string]*floatingIP{}
	for _, fip := range st.FloatingIPs {
		n := s.findNetwork(fip.NetworkID)
		if n == nil {
			return fmt.Errorf("floating IP %s: unknown network %s", fip.ID, fip.NetworkID)
		}
		if err := s.markUsed(n.subnets[0], fip.Address); err != nil {
			return fmt.Errorf("floating IP %s: %w", fip.ID, err)
		}
		if fip.PortID != "" && s.ports[fip.PortID] == nil {
			return fmt.Errorf("floating IP %s: unknown port %s", fip.ID, fip.PortID)
		}
		s.fips[fip.ID] = &floatingIP{id: fip.ID, address: fip.Address, networkID: fip.NetworkID, portID: fip.PortID,
			fixedIP: fip.FixedIP, description: fip.Description, tags: fip.Tags, created: fip.Created,
			updated: fip.Updated, revision: fip.Revision}
	}
	s.servers, s.deleted = map[string]*server{}, map[string]*server{}
	for _, ss := range st.Servers {
		for _, pid := range ss.PortIDs {
			if s.ports[pid] == nil {
				return fmt.Errorf("server %s: unknown port %s", ss.ID, pid)
			}
		}
		s.servers[ss.ID] = restoreServer(ss)
	}
	for _, ss := range st.DeletedServers {
		s.deleted[ss.ID] = restoreServer(ss)
	}
	s.pruneDeleted()
	s.keypairs = map[string]*keypair{}
	for _, k := range st.Keypairs {
		s.keypairs[k.Name] = &keypair{id: k.ID, name: k.Name, publicKey: k.PublicKey, fprint: k.Fingerprint,
			typ: k.Type, created: k.Created}
	}
	s.seq = st.Seq
	// A new stream for the seeded generator: the first run's would hand
	// out the restored ports' MAC addresses again.
	s.rng = mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(st.SavedAt.UnixNano())))
	return nil
}

func restoreSubnet(networkID string, ss SubnetState) (*subnet, error) {
	bad := func(what, v string) error { return fmt.Errorf("subnet %s: bad %s %q", ss.ID, what, v) }
	cidr, err := netip.ParsePrefix(ss.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return nil, bad("cidr", ss.CIDR)
	}
	addr := func(what, v string) (netip.Addr, error) {
		a, err := netip.ParseAddr(v)
		if err != nil || !cidr.Contains(a) {
			return a, bad(what, v)
		}
		return a, nil
	}
	sub := &subnet{id: ss.ID, name: ss.Name, networkID: networkID, cidr: cidr.Masked(), dhcp: ss.DHCP,
		used: map[netip.Addr]bool{}, created: ss.Created}
	if sub.gateway, err = addr("gateway_ip", ss.Gateway); err != nil {
		return nil, err
	}
	if sub.poolStart, err = addr("pool_start", ss.PoolStart); err != nil {
		return nil, err
	}
	if sub.poolEnd, err = addr("pool_end", ss.PoolEnd); err != nil {
		return nil, err
	}
	sub.used[sub.gateway] = true
	for _, u := range ss.Used {
		a, err := addr("used address", u)
		if err != nil {
			return nil, err
		}
		sub.used[a] = true
	}
	return sub, nil
}

// markUsed takes an address out of its subnet's pool.
func (s *Sim) markUsed(subnetID, address string) error {
	sub := s.subnets[subnetID]
	if sub == nil {
		return fmt.Errorf("unknown subnet %s", subnetID)
	}
	a, err := netip.ParseAddr(address)
	if err != nil || !sub.cidr.Contains(a) {
		return fmt.Errorf("address %q is not in subnet %s (%s)", address, sub.id, sub.cidr)
	}
	sub.used[a] = true
	return nil
}

func restoreServer(ss ServerState) *server {
	srv := &server{id: ss.ID, name: ss.Name, description: ss.Description, tenantID: ss.TenantID, userID: ss.UserID,
		flavorID: ss.FlavorID, oldFlavorID: ss.OldFlavorID, imageID: ss.ImageID, keyName: ss.KeyName,
		metadata: ss.Metadata, tags: ss.Tags, adminPass: ss.AdminPass, vmState: ss.VMState, taskState: ss.TaskState,
		powerState: ss.PowerState, preResizeState: ss.PreResizeState, migration: ss.Migration, host: ss.Host,
		az: ss.AZ, saved: ss.Saved, deletedAt: ss.DeletedAt, instanceName: ss.InstanceName,
		reservationID: ss.ReservationID, rootDevice: ss.RootDevice, created: ss.Created, updated: ss.Updated,
		launchedAt: ss.LaunchedAt, terminatedAt: ss.TerminatedAt, portIDs: ss.PortIDs,
		createdPorts: map[string]bool{}, networked: ss.Networked, requestID: ss.RequestID, base: ss.BaseURL}
	for _, r := range ss.Requested {
		srv.requested = append(srv.requested, netRequest{networkID: r.NetworkID, portID: r.PortID, fixedIP: r.FixedIP})
	}
	for _, pid := range ss.CreatedPortIDs {
		srv.createdPorts[pid] = true
	}
	if f := ss.Fault; f != nil {
		srv.fault = &serverFault{code: f.Code, message: f.Message, details: f.Details, created: f.Created}
	}
	return srv
}

// ---- operations in flight ----

// resumeInFlight settles the servers the file caught in the middle of an
// operation, as Nova's services do when they start again (the compute
// manager's init_host / _init_instance), so that no server keeps a task
// state forever. Each runs as an operation of this Sim, with its
// notifications, carrying the request id of the interrupted request, so
// that whoever waits for the operation's notification hears how it ended:
//
//   - BUILD (scheduling, networking, block_device_mapping, spawning): the
//     build is lost; Nova sets the instance to ERROR ("Instance failed to
//     spawn correctly, setting to ERROR state"). Here it also gets a fault
//     saying why, where real Nova leaves none. Ports made for it stay until
//     it is deleted.
//   - deleting: Nova finishes the delete; the delete runs again from the
//     start (shutdown, ports released, gone, instance.delete.end).
//   - reboot (soft or hard, any stage), powering-off, powering-on: Nova
//     retries them; they run again and end ACTIVE or SHUTOFF.
//   - resize before the instance runs on the new flavor (resize_prep,
//     resize_migrating, resize_migrated): rolled back, as Nova reverts a
//     crashed migration: the old flavor, the state before the resize, no
//     task.
//   - resize_finish (the new flavor is in place): the finish completes:
//     VERIFY_RESIZE, instance.resize_finish.end.
//   - a confirm in progress (VERIFY_RESIZE, migration confirming) runs
//     again and ends in the pre-resize state on the new flavor; a revert
//     (resize_reverting) runs again and ends on the old flavor.
//   - any other task state is cleared.
//
// Caller holds s.mu. It returns the number of operations resumed.
func (s *Sim) resumeInFlight() int {
	n := 0
	for _, srv := range byCreation(s.servers, func(srv *server) (time.Time, string) { return srv.created, srv.id }) {
		if s.resume(srv) {
			n++
		}
	}
	return n
}

func (s *Sim) resume(srv *server) bool {
	switch task := srv.taskState; {
	case task == "deleting":
		s.startDelete(srv)
	case srv.vmState == "building":
		s.settle(srv, func(srv *server, b *batch) {
			msg := "Build of instance " + srv.id + " aborted: nova-compute restarted while the instance was building."
			srv.fault = &serverFault{code: 500, message: msg, created: now(),
				details: "Instance failed to spawn correctly, setting to ERROR state"}
			setState(b, srv, "error", powerNoState)
		})
	case task == "rebooting" || task == "reboot_pending" || task == "reboot_started":
		s.startReboot(srv, false)
	case task == "rebooting_hard" || task == "reboot_pending_hard" || task == "reboot_started_hard":
		s.startReboot(srv, true)
	case task == "rebuilding" || task == "rebuild_block_device_mapping" || task == "rebuild_spawning":
		// Nova's _init_instance puts an instance whose rebuild a restart
		// interrupted in ERROR.
		s.settle(srv, func(srv *server, b *batch) {
			srv.fault = &serverFault{code: 500, message: "Rebuild of instance " + srv.id + " interrupted: nova-compute restarted.", created: now()}
			setState(b, srv, "error", srv.powerState)
		})
	case task == "powering-off":
		s.startStop(srv)
	case task == "powering-on":
		s.startStart(srv)
	case task == "resize_prep" || task == "resize_migrating" || task == "resize_migrated":
		s.settle(srv, func(srv *server, b *batch) {
			vm := srv.vmState
			if srv.preResizeState != "" {
				vm = srv.preResizeState
			}
			setState(b, srv, vm, srv.powerState)
		})
	case task == "resize_finish":
		s.settle(srv, func(srv *server, b *batch) {
			srv.launchedAt = now()
			srv.migration = "finished"
			setState(b, srv, "resized", srv.powerState)
			b.instanceAction(fromCompute, srv, "resize_finish", "end", instanceOpts{withIPs: true})
		})
	case task == "resize_reverting":
		s.startRevert(srv)
	case task == "" && srv.vmState == "resized" && srv.migration == "confirming":
		s.startConfirm(srv)
	case task != "":
		s.settle(srv, func(srv *server, b *batch) { setState(b, srv, srv.vmState, srv.powerState) })
	default:
		return false
	}
	return true
}

// settle runs one step at once as an operation on srv: the state change is
// made before Open returns, its notifications follow. Caller holds s.mu.
func (s *Sim) settle(srv *server, f func(srv *server, b *batch)) {
	b := s.notifier.batch()
	f(srv, b)
	srv.gen++
	if s.enqueue(srv, b) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.flush(srv)
		}()
	}
}

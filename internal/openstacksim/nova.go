package openstacksim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Nova v2.1 with microversions 2.1 to 2.93: servers, server actions,
// flavors, keypairs, limits.

const (
	minMicroversion = "2.1"
	maxMicroversion = "2.93"
)

// microversion is a Nova API microversion, 2.minor.
type microversion struct{ minor int }

func (v microversion) atLeast(minor int) bool { return v.minor >= minor }
func (v microversion) String() string         { return "2." + strconv.Itoa(v.minor) }

var maxMV = microversion{93}

// novaCall is what a Nova handler gets besides the request.
type novaCall struct {
	mv        microversion
	requestID string
	base      string // the client's base URL
}

func (c *novaCall) computeURL() string { return c.base + "/compute/v2.1" }

// parseMicroversion reads OpenStack-API-Version ("compute 2.79", possibly
// among other services) or, failing that, X-OpenStack-Nova-API-Version.
// Absent means 2.1, "latest" the maximum.
func parseMicroversion(r *http.Request) (microversion, string, error) {
	raw := ""
	if h := r.Header.Get("OpenStack-API-Version"); h != "" {
		for _, part := range strings.Split(h, ",") {
			f := strings.Fields(part)
			if len(f) == 2 && strings.EqualFold(f[0], "compute") {
				raw = f[1]
			}
		}
	}
	if raw == "" {
		raw = strings.TrimSpace(r.Header.Get("X-OpenStack-Nova-API-Version"))
	}
	if raw == "" {
		return microversion{1}, "", nil
	}
	if strings.EqualFold(raw, "latest") {
		return maxMV, raw, nil
	}
	major, minor, ok := strings.Cut(raw, ".")
	maj, err1 := strconv.Atoi(major)
	mn, err2 := strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil || maj < 0 || mn < 0 {
		return microversion{}, raw, fmt.Errorf("API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", raw)
	}
	if maj != 2 || mn < 1 || mn > maxMV.minor {
		return microversion{}, raw, errUnsupportedVersion
	}
	return microversion{mn}, raw, nil
}

var errUnsupportedVersion = fmt.Errorf("unsupported microversion")

// novaFaultNames are the top-level keys of Nova's error bodies by status.
var novaFaultNames = map[int]string{
	400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
	405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
	429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable",
}

// novaError writes Nova's error body: {"itemNotFound": {"code": 404, "message": "..."}}.
func novaError(w http.ResponseWriter, code int, message string) {
	name := novaFaultNames[code]
	if name == "" {
		name = "computeFault"
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	writeJSON(w, code, map[string]any{name: map[string]any{"code": code, "message": message}})
}

func novaNotFound(w http.ResponseWriter, r *http.Request) {
	novaError(w, http.StatusNotFound, "The resource could not be found.")
}

// nova wraps a Nova handler: token check, microversion negotiation and the
// headers Nova always sends.
func (s *Sim) nova(h func(w http.ResponseWriter, r *http.Request, c *novaCall)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reqID := newRequestID()
		hdr := w.Header()
		// Nova labels every answer JSON, even an empty 202 or 204.
		hdr.Set("Content-Type", "application/json")
		hdr.Set("X-Compute-Request-Id", reqID)
		hdr.Set("X-Openstack-Request-Id", reqID)
		if s.checkToken(r.Header.Get("X-Auth-Token")) == nil {
			s.unauthorized(w, r)
			return
		}
		mv, raw, err := parseMicroversion(r)
		if err == errUnsupportedVersion {
			novaError(w, http.StatusNotAcceptable, fmt.Sprintf(
				"Version %s is not supported by the API. Minimum is %s and maximum is %s.", raw, minMicroversion, maxMicroversion))
			return
		}
		if err != nil {
			novaError(w, http.StatusBadRequest, err.Error())
			return
		}
		hdr.Set("OpenStack-API-Version", "compute "+mv.String())
		hdr.Set("X-OpenStack-Nova-API-Version", mv.String())
		hdr.Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
		h(w, r, &novaCall{mv: mv, requestID: reqID, base: s.baseURL(r)})
	}
}

func (s *Sim) routeNova() {
	const p = "/compute/v2.1"
	s.mux.HandleFunc("GET /compute/{$}", s.novaVersions)
	s.mux.HandleFunc("GET "+p, s.novaVersion)
	s.mux.HandleFunc("GET "+p+"/{$}", s.novaVersion)
	s.mux.HandleFunc("GET "+p+"/servers", s.nova(s.listServers))
	s.mux.HandleFunc("GET "+p+"/servers/detail", s.nova(s.listServersDetail))
	s.mux.HandleFunc("POST "+p+"/servers", s.nova(s.createServer))
	s.mux.HandleFunc("GET "+p+"/servers/{id}", s.nova(s.getServer))
	s.mux.HandleFunc("PUT "+p+"/servers/{id}", s.nova(s.updateServer))
	s.mux.HandleFunc("DELETE "+p+"/servers/{id}", s.nova(s.deleteServer))
	s.mux.HandleFunc("POST "+p+"/servers/{id}/action", s.nova(s.serverAction))
	s.mux.HandleFunc("GET "+p+"/flavors", s.nova(s.listFlavors))
	s.mux.HandleFunc("GET "+p+"/flavors/detail", s.nova(s.listFlavorsDetail))
	s.mux.HandleFunc("GET "+p+"/flavors/{id}", s.nova(s.getFlavor))
	s.mux.HandleFunc("GET "+p+"/os-keypairs", s.nova(s.listKeypairs))
	s.mux.HandleFunc("POST "+p+"/os-keypairs", s.nova(s.createKeypair))
	s.mux.HandleFunc("GET "+p+"/os-keypairs/{name}", s.nova(s.getKeypair))
	s.mux.HandleFunc("DELETE "+p+"/os-keypairs/{name}", s.nova(s.deleteKeypair))
	s.mux.HandleFunc("GET "+p+"/limits", s.nova(s.getLimits))
	s.mux.HandleFunc("/compute/", s.notFound(novaNotFound))
}

func (s *Sim) novaVersionDoc(r *http.Request, id string) map[string]any {
	base := s.baseURL(r) + "/compute"
	if id == "v2.0" {
		return map[string]any{"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
			"updated": "2011-01-21T11:33:21Z", "links": []any{map[string]any{"rel": "self", "href": base + "/v2/"}}}
	}
	return map[string]any{"id": "v2.1", "status": "CURRENT", "version": maxMicroversion, "min_version": minMicroversion,
		"updated": "2013-07-23T11:33:21Z", "links": []any{map[string]any{"rel": "self", "href": base + "/v2.1/"}}}
}

func (s *Sim) novaVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{s.novaVersionDoc(r, "v2.0"), s.novaVersionDoc(r, "v2.1")}})
}

func (s *Sim) novaVersion(w http.ResponseWriter, r *http.Request) {
	doc := s.novaVersionDoc(r, "v2.1")
	doc["media-types"] = []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}}
	writeJSON(w, http.StatusOK, map[string]any{"version": doc})
}

// ---- flavors ----

type flavor struct {
	Flavor
	created time.Time
}

func (s *Sim) findFlavor(ref string) *flavor {
	ref = refID(ref)
	for _, f := range s.flavors {
		if f.ID == ref {
			return f
		}
	}
	return nil
}

// refID accepts a bare id or a link to the resource, as Nova does for
// flavorRef and imageRef.
func refID(ref string) string {
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func flavorLinks(c *novaCall, id string) []any {
	return []any{
		map[string]any{"rel": "self", "href": c.computeURL() + "/flavors/" + id},
		map[string]any{"rel": "bookmark", "href": c.base + "/compute/flavors/" + id},
	}
}

func (s *Sim) flavorView(f *flavor, c *novaCall, detail bool) map[string]any {
	v := map[string]any{"id": f.ID, "name": f.Name, "links": flavorLinks(c, f.ID)}
	if c.mv.atLeast(55) {
		v["description"] = nil
	}
	if !detail {
		return v
	}
	v["ram"] = f.RAM
	v["disk"] = f.Disk
	v["vcpus"] = f.VCPUs
	if c.mv.atLeast(75) {
		v["swap"] = 0
	} else {
		v["swap"] = "" // before 2.75 Nova shows no swap as ""
	}
	v["OS-FLV-EXT-DATA:ephemeral"] = 0
	v["OS-FLV-DISABLED:disabled"] = false
	v["os-flavor-access:is_public"] = true
	v["rxtx_factor"] = 1.0
	if c.mv.atLeast(61) {
		v["extra_specs"] = map[string]any{}
	}
	return v
}

func (s *Sim) listFlavors(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.writeFlavors(w, r, c, false)
}

func (s *Sim) listFlavorsDetail(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.writeFlavors(w, r, c, true)
}

func (s *Sim) writeFlavors(w http.ResponseWriter, r *http.Request, c *novaCall, detail bool) {
	q := r.URL.Query()
	minRAM, _ := strconv.Atoi(q.Get("minRam"))
	minDisk, _ := strconv.Atoi(q.Get("minDisk"))
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []any{}
	for _, f := range s.flavors {
		if f.RAM < minRAM || f.Disk < minDisk {
			continue
		}
		out = append(out, s.flavorView(f, c, detail))
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
}

func (s *Sim) getFlavor(w http.ResponseWriter, r *http.Request, c *novaCall) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.findFlavor(id)
	if f == nil {
		novaError(w, http.StatusNotFound, "Flavor "+id+" could not be found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavor": s.flavorView(f, c, true)})
}

// ---- limits ----

func (s *Sim) getLimits(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.mu.Lock()
	used := s.novaUsage()
	q := s.quotas
	s.mu.Unlock()
	abs := map[string]any{
		"maxServerMeta": 128, "maxImageMeta": 128, "maxTotalKeypairs": 100,
		"maxServerGroups": 10, "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0,
		"maxTotalInstances": q.Instances, "maxTotalCores": q.Cores, "maxTotalRAMSize": q.RAM,
		"totalInstancesUsed": used.instances, "totalCoresUsed": used.cores, "totalRAMUsed": used.ram,
	}
	if !c.mv.atLeast(36) {
		abs["maxSecurityGroups"], abs["maxSecurityGroupRules"], abs["totalSecurityGroupsUsed"] = 10, 20, 0
		abs["maxTotalFloatingIps"], abs["totalFloatingIpsUsed"] = 10, 0
	}
	if !c.mv.atLeast(57) {
		abs["maxPersonality"], abs["maxPersonalitySize"] = 5, 10240
	}
	writeJSON(w, http.StatusOK, map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": abs}})
}

type novaUsage struct{ instances, cores, ram int }

// novaUsage counts what live servers hold. Nova counts a resizing server's
// bigger flavor, so the current flavor is right after finish_resize.
func (s *Sim) novaUsage() novaUsage {
	var u novaUsage
	for _, srv := range s.servers {
		f := s.findFlavor(srv.flavorID)
		if f == nil {
			continue
		}
		u.instances++
		u.cores += f.VCPUs
		u.ram += f.RAM
	}
	return u
}

// quotaExceeded returns Nova's 403 message when a request for instances,
// cores and RAM goes over quota, e.g. "Quota exceeded for ram: Requested
// 4194304, but already used 0 of 51200 ram"; "" when it fits.
func (s *Sim) quotaExceeded(instances, cores, ram int) string {
	u := s.novaUsage()
	q := s.quotas
	type check struct {
		name               string
		req, used, allowed int
	}
	var names, reqs, useds, alloweds []string
	for _, c := range []check{
		{"cores", cores, u.cores, q.Cores},
		{"instances", instances, u.instances, q.Instances},
		{"ram", ram, u.ram, q.RAM},
	} {
		if c.req > 0 && c.allowed >= 0 && c.used+c.req > c.allowed {
			names = append(names, c.name)
			reqs = append(reqs, strconv.Itoa(c.req))
			useds = append(useds, strconv.Itoa(c.used))
			alloweds = append(alloweds, strconv.Itoa(c.allowed))
		}
	}
	if len(names) == 0 {
		return ""
	}
	n := strings.Join(names, ", ")
	return fmt.Sprintf("Quota exceeded for %s: Requested %s, but already used %s of %s %s",
		n, strings.Join(reqs, ", "), strings.Join(useds, ", "), strings.Join(alloweds, ", "), n)
}

// ---- servers ----

// server is a Nova instance.
type server struct {
	id, name, description string
	tenantID, userID      string
	flavorID              string
	oldFlavorID           string // the flavor before a resize, until confirm or revert
	imageID, keyName      string
	metadata              map[string]string
	tags                  []string
	adminPass             string

	vmState, taskState string
	powerState         int
	preResizeState     string // vm_state to return to on confirm/revert (active or stopped)
	migration          string // the resize migration: "finished" in VERIFY_RESIZE, then "confirming"/"reverting"

	host          string
	az            string // availability_zone: set by the conductor once scheduled, cleared on reschedule
	saved         bool   // the row has been updated since creation: updated_at shows in notifications
	deletedAt     time.Time
	instanceName  string
	reservationID string
	rootDevice    string
	created       time.Time
	updated       time.Time
	launchedAt    time.Time
	terminatedAt  time.Time

	// networks requested at create; ports bound once the build reaches
	// networking. createdPorts are the ones Nova made and deletes with the
	// server.
	requested    []netRequest
	portIDs      []string
	createdPorts map[string]bool
	networked    bool // the network info cache is filled: addresses show

	fault *serverFault

	// gen changes whenever a new operation takes the server over (a delete
	// during a build); an operation stops at its next step when it no
	// longer owns the server.
	gen int
	// Ops in flight remember the request id that notifications carry.
	requestID string
	// outbox orders the server's notifications: batches are rendered under
	// the Sim's lock and published outside it, one flusher at a time, so
	// that an operation that starts while the previous one's last batch is
	// on its way to Kafka cannot overtake it.
	outbox   []*batch
	flushing bool
	// base is the URL the creating client used; legacy payloads link the
	// image through it.
	base string
}

type netRequest struct {
	networkID string
	portID    string
	fixedIP   string
}

type serverFault struct {
	code    int
	message string
	details string
	created time.Time
}

// Nova power states.
const (
	powerNoState  = 0
	powerRunning  = 1
	powerShutdown = 4
)

var powerStateNames = map[int]string{0: "pending", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed", 7: "suspended"}

// status is Nova's API status for a vm_state and task_state
// (nova/api/openstack/common.py _STATE_MAP).
func status(vm, task string) string {
	switch vm {
	case "active":
		switch task {
		case "rebooting", "reboot_pending", "reboot_started":
			return "REBOOT"
		case "rebooting_hard", "reboot_pending_hard", "reboot_started_hard":
			return "HARD_REBOOT"
		case "rebuilding", "rebuild_block_device_mapping", "rebuild_spawning":
			return "REBUILD"
		case "migrating":
			return "MIGRATING"
		case "resize_prep", "resize_migrating", "resize_migrated", "resize_finish":
			return "RESIZE"
		}
		return "ACTIVE"
	case "building":
		return "BUILD"
	case "stopped":
		switch task {
		case "resize_prep", "resize_migrating", "resize_migrated", "resize_finish":
			return "RESIZE"
		case "rebuilding":
			return "REBUILD"
		}
		return "SHUTOFF"
	case "resized":
		if task == "resize_reverting" {
			return "REVERT_RESIZE"
		}
		return "VERIFY_RESIZE"
	case "error":
		if task == "rebuilding" {
			return "REBUILD"
		}
		return "ERROR"
	case "deleted":
		return "DELETED"
	case "soft-delete":
		return "SOFT_DELETED"
	}
	return "UNKNOWN"
}

// vmStatesFor maps an API status filter back to vm_states.
func vmStatesFor(st string) []string {
	switch strings.ToUpper(st) {
	case "ACTIVE", "REBOOT", "HARD_REBOOT", "MIGRATING", "RESIZE":
		return []string{"active", "stopped"}
	case "BUILD":
		return []string{"building"}
	case "SHUTOFF":
		return []string{"stopped"}
	case "VERIFY_RESIZE", "REVERT_RESIZE":
		return []string{"resized"}
	case "ERROR":
		return []string{"error"}
	case "DELETED":
		return []string{"deleted"}
	}
	return nil
}

var progressStatuses = map[string]bool{"ACTIVE": true, "BUILD": true, "REBUILD": true, "RESIZE": true, "VERIFY_RESIZE": true, "MIGRATING": true}

func nullTime(t time.Time, layout string) any {
	if t.IsZero() {
		return nil
	}
	return t.Format(layout)
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// hostID is Nova's opaque host id: sha224(project_id + host).
func hostID(project, host string) string {
	if host == "" {
		return ""
	}
	sum := sha256.Sum224([]byte(project + host))
	return hex.EncodeToString(sum[:])
}

func (s *Sim) serverLinks(c *novaCall, id string) []any {
	return []any{
		map[string]any{"rel": "self", "href": c.computeURL() + "/servers/" + id},
		map[string]any{"rel": "bookmark", "href": c.base + "/compute/servers/" + id},
	}
}

// addresses is the server's network info cache as Nova shows it: fixed IPs
// of its ports by network name, plus associated floating IPs.
func (s *Sim) addresses(srv *server) map[string]any {
	out := map[string]any{}
	if !srv.networked {
		return out
	}
	for _, pid := range srv.portIDs {
		p := s.ports[pid]
		if p == nil {
			continue
		}
		net := s.findNetwork(p.networkID)
		label := p.networkID
		if net != nil {
			label = net.name
		}
		list, _ := out[label].([]any)
		for _, ip := range p.fixedIPs {
			list = append(list, map[string]any{"version": 4, "addr": ip.address, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": p.mac})
			for _, fip := range s.fips {
				if fip.portID == p.id && fip.fixedIP == ip.address {
					list = append(list, map[string]any{"version": 4, "addr": fip.address, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": p.mac})
				}
			}
		}
		out[label] = list
	}
	return out
}

// serverView renders a server as GET /servers/{id} (show) or
// /servers/detail (list) does at the call's microversion.
func (s *Sim) serverView(srv *server, c *novaCall, show bool) map[string]any {
	st := status(srv.vmState, srv.taskState)
	f := s.findFlavor(srv.flavorID)
	v := map[string]any{
		"id": srv.id, "name": srv.name, "status": st,
		"tenant_id": srv.tenantID, "user_id": srv.userID,
		"metadata": mapOrEmpty(srv.metadata),
		"hostId":   hostID(srv.tenantID, srv.host),
		"image": map[string]any{"id": srv.imageID, "links": []any{
			map[string]any{"rel": "bookmark", "href": c.base + "/compute/images/" + srv.imageID}}},
		"created":    srv.created.Format(isoSeconds),
		"updated":    srv.updated.Format(isoSeconds),
		"addresses":  s.addresses(srv),
		"accessIPv4": "", "accessIPv6": "",
		"links":                                s.serverLinks(c, srv.id),
		"OS-DCF:diskConfig":                    "MANUAL",
		"config_drive":                         "",
		"key_name":                             nullStr(srv.keyName),
		"OS-SRV-USG:launched_at":               nullTime(srv.launchedAt, isoMicro),
		"OS-SRV-USG:terminated_at":             nullTime(srv.terminatedAt, isoMicro),
		"OS-EXT-SRV-ATTR:host":                 nullStr(srv.host),
		"OS-EXT-SRV-ATTR:hypervisor_hostname":  nullStr(srv.host),
		"OS-EXT-STS:task_state":                nullStr(srv.taskState),
		"OS-EXT-STS:vm_state":                  srv.vmState,
		"OS-EXT-STS:power_state":               srv.powerState,
		"os-extended-volumes:volumes_attached": []any{},
	}
	if c.mv.atLeast(47) && f != nil {
		v["flavor"] = map[string]any{"vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk, "ephemeral": 0, "swap": 0,
			"original_name": f.Name, "extra_specs": map[string]any{}}
	} else {
		v["flavor"] = map[string]any{"id": srv.flavorID, "links": []any{
			map[string]any{"rel": "bookmark", "href": c.base + "/compute/flavors/" + srv.flavorID}}}
	}
	v["OS-EXT-AZ:availability_zone"] = srv.az
	if srv.vmState == "building" && srv.host == "" {
		v["OS-EXT-SRV-ATTR:instance_name"] = ""
	} else {
		v["OS-EXT-SRV-ATTR:instance_name"] = srv.instanceName
	}
	if progressStatuses[st] {
		v["progress"] = 0
	}
	if srv.networked && len(srv.portIDs) > 0 {
		v["security_groups"] = []any{map[string]any{"name": "default"}}
	}
	if srv.fault != nil && (srv.vmState == "error" || srv.vmState == "deleted") {
		v["fault"] = map[string]any{"code": srv.fault.code, "created": srv.fault.created.Format(isoSeconds),
			"message": srv.fault.message, "details": srv.fault.details}
	}
	if c.mv.atLeast(3) {
		v["OS-EXT-SRV-ATTR:reservation_id"] = srv.reservationID
		v["OS-EXT-SRV-ATTR:launch_index"] = 0
		v["OS-EXT-SRV-ATTR:hostname"] = hostnameOf(srv.name)
		v["OS-EXT-SRV-ATTR:kernel_id"] = ""
		v["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
		v["OS-EXT-SRV-ATTR:root_device_name"] = nullStr(srv.rootDevice)
		v["OS-EXT-SRV-ATTR:user_data"] = nil
	}
	if c.mv.atLeast(9) {
		v["locked"] = false
	}
	if c.mv.atLeast(16) {
		if srv.host != "" {
			v["host_status"] = "UP"
		} else {
			v["host_status"] = ""
		}
	}
	if c.mv.atLeast(19) {
		v["description"] = nullStr(srv.description)
	}
	if c.mv.atLeast(26) {
		v["tags"] = sliceOrEmpty(srv.tags)
	}
	if c.mv.atLeast(63) {
		v["trusted_image_certificates"] = nil
	}
	if c.mv.atLeast(71) && show {
		v["server_groups"] = []any{}
	}
	if c.mv.atLeast(73) {
		v["locked_reason"] = nil
	}
	return v
}

var hostnameBad = regexp.MustCompile(`[^a-z0-9-]+`)

// hostnameOf is Nova's sanitize_hostname.
func hostnameOf(name string) string {
	h := hostnameBad.ReplaceAllString(strings.ToLower(strings.ReplaceAll(name, " ", "-")), "")
	h = strings.Trim(h, "-.")
	if len(h) > 63 {
		h = h[:63]
	}
	if h == "" {
		h = "server"
	}
	return h
}

func mapOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func sliceOrEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Sim) getServer(w http.ResponseWriter, r *http.Request, c *novaCall) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.servers[id]
	if srv == nil {
		novaError(w, http.StatusNotFound, "Instance "+id+" could not be found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": s.serverView(srv, c, true)})
}

func (s *Sim) listServers(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.writeServers(w, r, c, false)
}

func (s *Sim) listServersDetail(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.writeServers(w, r, c, true)
}

// writeServers lists servers newest first, as Nova sorts by default
// (created_at desc), with Nova's filters and limit/marker paging.
func (s *Sim) writeServers(w http.ResponseWriter, r *http.Request, c *novaCall, detail bool) {
	q := r.URL.Query()
	var nameRe *regexp.Regexp
	if n := q.Get("name"); n != "" {
		re, err := regexp.Compile(n)
		if err != nil {
			// Nova matches with Python's re; an invalid pattern matches
			// nothing rather than failing.
			writeJSON(w, http.StatusOK, map[string]any{"servers": []any{}})
			return
		}
		nameRe = re
	}
	var since time.Time
	if cs := q.Get("changes-since"); cs != "" {
		t, err := parseISOTime(cs)
		if err != nil {
			novaError(w, http.StatusBadRequest, "Invalid input for query parameters changes-since. Value: "+cs+". '"+cs+"' is not a 'date-time'")
			return
		}
		since = t
	}
	limit := -1
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			novaError(w, http.StatusBadRequest, "Invalid input for query parameters limit. Value: "+l+". '"+l+"' does not match '^[0-9]*$'")
			return
		}
		limit = n
	}
	var vmStates []string
	statusFilter := q.Get("status")
	if statusFilter != "" {
		vmStates = vmStatesFor(statusFilter)
		if vmStates == nil {
			// Nova answers an unknown status with an empty list.
			writeJSON(w, http.StatusOK, map[string]any{"servers": []any{}})
			return
		}
	}
	tagsAll := splitList(q.Get("tags"))
	tagsAny := splitList(q.Get("tags-any"))
	notTags := splitList(q.Get("not-tags"))
	notTagsAny := splitList(q.Get("not-tags-any"))

	s.mu.Lock()
	defer s.mu.Unlock()
	cands := make([]*server, 0, len(s.servers))
	for _, srv := range s.servers {
		cands = append(cands, srv)
	}
	if !since.IsZero() {
		// changes-since also returns servers deleted since then, with status
		// DELETED: a reconciler can see what disappeared.
		for _, srv := range s.deleted {
			cands = append(cands, srv)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].created.Equal(cands[j].created) {
			return cands[i].created.After(cands[j].created)
		}
		return cands[i].id > cands[j].id
	})
	var out []any
	marker := q.Get("marker")
	markerSeen := marker == ""
	var last string
	more := false
	for _, srv := range cands {
		if !markerSeen {
			if srv.id == marker {
				markerSeen = true
			}
			continue
		}
		if nameRe != nil && !nameRe.MatchString(srv.name) {
			continue
		}
		if vmStates != nil && !matchStatus(srv, statusFilter, vmStates) {
			continue
		}
		if !since.IsZero() && srv.updated.Before(since) {
			continue
		}
		if !hasAll(srv.tags, tagsAll) || (len(tagsAny) > 0 && !hasAny(srv.tags, tagsAny)) ||
			(len(notTags) > 0 && hasAll(srv.tags, notTags)) || hasAny(srv.tags, notTagsAny) {
			continue
		}
		if limit >= 0 && len(out) == limit {
			more = true
			break
		}
		if detail {
			out = append(out, s.serverView(srv, c, false))
		} else {
			out = append(out, map[string]any{"id": srv.id, "name": srv.name, "links": s.serverLinks(c, srv.id)})
		}
		last = srv.id
	}
	if !markerSeen {
		novaError(w, http.StatusBadRequest, "marker ["+marker+"] not found")
		return
	}
	if out == nil {
		out = []any{}
	}
	body := map[string]any{"servers": out}
	if more {
		next := r.URL.Query()
		next.Set("marker", last)
		path := "/servers"
		if detail {
			path = "/servers/detail"
		}
		body["servers_links"] = []any{map[string]any{"rel": "next", "href": c.computeURL() + path + "?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
}

func matchStatus(srv *server, filter string, vmStates []string) bool {
	ok := false
	for _, v := range vmStates {
		if srv.vmState == v {
			ok = true
		}
	}
	return ok && status(srv.vmState, srv.taskState) == strings.ToUpper(filter)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !contains(have, w) {
			return false
		}
	}
	return true
}

func hasAny(have, want []string) bool {
	for _, w := range want {
		if contains(have, w) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func parseISOTime(s string) (time.Time, error) {
	for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

// createRequest is the part of POST /servers the simulator understands.
type createRequest struct {
	Name        *string           `json:"name"`
	FlavorRef   *string           `json:"flavorRef"`
	ImageRef    *string           `json:"imageRef"`
	KeyName     string            `json:"key_name"`
	Metadata    map[string]string `json:"metadata"`
	Tags        []string          `json:"tags"`
	Description *string           `json:"description"`
	Networks    json.RawMessage   `json:"networks"`
}

func (s *Sim) createServer(w http.ResponseWriter, r *http.Request, c *novaCall) {
	raw, body, ok := readNovaBody(w, r)
	if !ok {
		return
	}
	srvRaw, hasServer := body["server"]
	if !hasServer {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute body. Value: "+pyRepr(raw)+". 'server' is a required property")
		return
	}
	srvObj, isObj := srvRaw.(map[string]any)
	serverRepr := pyRepr(rawField(raw, "server"))
	if !isObj {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. Value: "+serverRepr+". "+serverRepr+" is not of type 'object'")
		return
	}
	schemaErr := func(msg string) {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. Value: "+serverRepr+". "+msg)
	}
	for _, k := range []string{"name", "flavorRef"} {
		if _, ok := srvObj[k]; !ok {
			schemaErr("'" + k + "' is a required property")
			return
		}
	}
	if _, ok := srvObj["networks"]; !ok && c.mv.atLeast(37) {
		schemaErr("'networks' is a required property")
		return
	}
	if _, ok := srvObj["tags"]; ok && !c.mv.atLeast(52) {
		schemaErr("Additional properties are not allowed ('tags' was unexpected)")
		return
	}
	var req createRequest
	b, _ := json.Marshal(srvObj)
	if err := json.Unmarshal(b, &req); err != nil {
		// A field of the wrong type: Nova's schema names it.
		field := "server"
		if ute, ok := err.(*json.UnmarshalTypeError); ok && ute.Field != "" {
			field = ute.Field
		}
		novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute %s. Value: %s. %s", field, pyRepr(rawField(raw, "server")), "Invalid type"))
		return
	}
	if req.Name == nil || *req.Name == "" || len(*req.Name) > 255 {
		v := ""
		if req.Name != nil {
			v = *req.Name
		}
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute name. Value: "+v+". '"+v+"' is too short")
		return
	}
	if req.FlavorRef == nil || *req.FlavorRef == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute flavorRef. Value: . '' is too short")
		return
	}
	nets, auto, errMsg := parseNetworks(req.Networks)
	if errMsg != "" {
		novaError(w, http.StatusBadRequest, errMsg)
		return
	}
	if req.Networks == nil {
		auto = true // before 2.37 no networks means "every available", here the tenant network
	}

	s.mu.Lock()
	f := s.findFlavor(*req.FlavorRef)
	if f == nil {
		s.mu.Unlock()
		novaError(w, http.StatusBadRequest, "Flavor "+*req.FlavorRef+" could not be found.")
		return
	}
	imageID := ""
	if req.ImageRef != nil {
		imageID = refID(*req.ImageRef)
	}
	img := s.findImage(imageID)
	if img == nil {
		s.mu.Unlock()
		if imageID == "" {
			novaError(w, http.StatusBadRequest, "Block Device Mapping is Invalid: You specified more local devices than the limit allows")
			return
		}
		novaError(w, http.StatusBadRequest, "Image "+imageID+" could not be found.")
		return
	}
	if req.KeyName != "" && s.keypairs[req.KeyName] == nil {
		s.mu.Unlock()
		novaError(w, http.StatusBadRequest, "Invalid key_name provided.")
		return
	}
	if auto {
		nets = []netRequest{{networkID: s.tenantNetwork().id}}
	}
	for _, n := range nets {
		if n.portID != "" {
			p := s.ports[n.portID]
			if p == nil {
				s.mu.Unlock()
				novaError(w, http.StatusBadRequest, "Port id "+n.portID+" could not be found.")
				return
			}
			if p.deviceID != "" {
				s.mu.Unlock()
				novaError(w, http.StatusConflict, "Port "+n.portID+" is still in use.")
				return
			}
			continue
		}
		if s.findNetwork(n.networkID) == nil {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "Network "+n.networkID+" could not be found.")
			return
		}
	}
	if img.MinDisk > f.Disk {
		s.mu.Unlock()
		novaError(w, http.StatusBadRequest, fmt.Sprintf("Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is %d bytes, minimum size is %d bytes.",
			int64(f.Disk)<<30, int64(img.MinDisk)<<30))
		return
	}
	if img.MinRAM > f.RAM {
		s.mu.Unlock()
		novaError(w, http.StatusBadRequest, "Flavor's memory is too small for requested image.")
		return
	}
	if msg := s.quotaExceeded(1, f.VCPUs, f.RAM); msg != "" {
		s.mu.Unlock()
		novaError(w, http.StatusForbidden, msg)
		return
	}
	t := now()
	s.seq++
	srv := &server{
		id: newUUID(), name: *req.Name, tenantID: s.cfg.ProjectID, userID: s.cfg.UserID,
		flavorID: f.ID, imageID: img.ID, keyName: req.KeyName, metadata: req.Metadata, tags: req.Tags,
		adminPass: newPassword(), vmState: "building", taskState: "scheduling", powerState: powerNoState,
		instanceName: fmt.Sprintf("instance-%08x", s.seq), reservationID: "r-" + newPassword()[:8],
		created: t, updated: t,
		requested: nets, createdPorts: map[string]bool{}, requestID: c.requestID, base: c.base,
	}
	if req.Description != nil {
		srv.description = *req.Description
	}
	s.servers[srv.id] = srv
	boot := s.faults.takeBootFault(srv)
	s.startBoot(srv, f, boot)
	s.mu.Unlock()

	s.logf("nova: create server %s %q flavor %s", srv.id, srv.name, f.Name)
	w.Header().Set("Location", c.computeURL()+"/servers/"+srv.id)
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": srv.id, "links": s.serverLinks(c, srv.id), "OS-DCF:diskConfig": "MANUAL",
		"security_groups": []any{map[string]any{"name": "default"}}, "adminPass": srv.adminPass,
	}})
}

// parseNetworks reads "none", "auto" or a list of {"uuid", "port",
// "fixed_ip"}.
func parseNetworks(raw json.RawMessage) (nets []netRequest, auto bool, errMsg string) {
	if raw == nil {
		return nil, false, ""
	}
	var word string
	if json.Unmarshal(raw, &word) == nil {
		switch word {
		case "none":
			return nil, false, ""
		case "auto":
			return nil, true, ""
		}
		return nil, false, "Invalid input for field/attribute networks. Value: " + word + ". '" + word + "' is not of type 'array'"
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false, "Invalid input for field/attribute networks. Value: " + string(raw) + ". " + string(raw) + " is not of type 'array'"
	}
	for _, n := range list {
		var nr netRequest
		nr.networkID, _ = n["uuid"].(string)
		nr.portID, _ = n["port"].(string)
		nr.fixedIP, _ = n["fixed_ip"].(string)
		if nr.networkID == "" && nr.portID == "" {
			return nil, false, "Bad networks format: network uuid is not in proper format ()"
		}
		nets = append(nets, nr)
	}
	return nets, false, ""
}

// readNovaBody decodes a JSON object body, answering Nova's 400 for
// anything else. It keeps the raw bytes for Nova's schema messages, which
// quote the request in Python's repr.
func readNovaBody(w http.ResponseWriter, r *http.Request) ([]byte, map[string]any, bool) {
	raw, err := readAll(r)
	if err != nil {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return nil, nil, false
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return nil, nil, false
	}
	return raw, body, true
}

func (s *Sim) updateServer(w http.ResponseWriter, r *http.Request, c *novaCall) {
	id := r.PathValue("id")
	_, body, ok := readNovaBody(w, r)
	if !ok {
		return
	}
	upd, _ := body["server"].(map[string]any)
	if upd == nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. 'server' is a required property")
		return
	}
	s.mu.Lock()
	srv := s.servers[id]
	if srv == nil {
		s.mu.Unlock()
		novaError(w, http.StatusNotFound, "Instance "+id+" could not be found.")
		return
	}
	oldName := srv.name
	if n, ok := upd["name"].(string); ok && n != "" {
		srv.name = n
	}
	if d, ok := upd["description"].(string); ok && c.mv.atLeast(19) {
		srv.description = d
	}
	srv.updated = now()
	b := s.notifier.batch()
	if oldName != srv.name {
		srv.requestID = c.requestID
		b.update(fromAPI, srv, srv.vmState, srv.taskState, instanceOpts{newTask: srv.taskState, oldName: oldName})
	}
	view := s.serverView(srv, c, true)
	flush := s.enqueue(srv, b)
	s.mu.Unlock()
	if flush {
		s.flush(srv)
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": view})
}

func (s *Sim) deleteServer(w http.ResponseWriter, r *http.Request, c *novaCall) {
	id := r.PathValue("id")
	s.mu.Lock()
	srv := s.servers[id]
	if srv == nil {
		s.mu.Unlock()
		novaError(w, http.StatusNotFound, "Instance "+id+" could not be found.")
		return
	}
	if srv.taskState != "deleting" {
		srv.requestID = c.requestID
		s.startDelete(srv)
	}
	s.mu.Unlock()
	s.logf("nova: delete server %s", id)
	w.WriteHeader(http.StatusNoContent)
}

// serverAction dispatches POST /servers/{id}/action.
func (s *Sim) serverAction(w http.ResponseWriter, r *http.Request, c *novaCall) {
	id := r.PathValue("id")
	_, body, ok := readNovaBody(w, r)
	if !ok {
		return
	}
	if len(body) != 1 {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return
	}
	var action string
	var arg any
	for k, v := range body {
		action, arg = k, v
	}
	known := map[string]bool{"reboot": true, "os-stop": true, "os-start": true, "resize": true, "confirmResize": true, "revertResize": true, "rebuild": true}
	if !known[action] {
		novaError(w, http.StatusBadRequest, "There is no such action: "+action)
		return
	}
	var rebootType, flavorRef, imageRef string
	switch action {
	case "reboot":
		m, _ := arg.(map[string]any)
		t, _ := m["type"].(string)
		switch strings.ToUpper(t) {
		case "SOFT", "HARD":
			rebootType = strings.ToUpper(t)
		default:
			novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute type. Value: %s. '%s' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']", t, t))
			return
		}
	case "resize":
		m, _ := arg.(map[string]any)
		ref, _ := m["flavorRef"].(string)
		if ref == "" {
			novaError(w, http.StatusBadRequest, "Invalid input for field/attribute resize. Value: "+fmt.Sprint(arg)+". 'flavorRef' is a required property")
			return
		}
		flavorRef = ref
	case "rebuild":
		m, _ := arg.(map[string]any)
		ref, _ := m["imageRef"].(string)
		if ref == "" {
			novaError(w, http.StatusBadRequest, "Invalid input for field/attribute rebuild. Value: "+fmt.Sprint(arg)+". 'imageRef' is a required property")
			return
		}
		imageRef = refID(ref)
	}

	s.mu.Lock()
	srv := s.servers[id]
	if srv == nil {
		s.mu.Unlock()
		novaError(w, http.StatusNotFound, "Instance "+id+" could not be found.")
		return
	}
	conflict := func(apiAction, attr, state string) {
		s.mu.Unlock()
		novaError(w, http.StatusConflict, fmt.Sprintf("Cannot '%s' instance %s while it is in %s %s", apiAction, id, attr, state))
	}
	// Nova's check_instance_state: first the vm_state, then the task_state
	// (None unless the action allows others).
	checkState := func(apiAction string, vmStates ...string) bool {
		if !contains(vmStates, srv.vmState) {
			conflict(apiAction, "vm_state", srv.vmState)
			return false
		}
		if srv.taskState != "" {
			conflict(apiAction, "task_state", srv.taskState)
			return false
		}
		return true
	}
	srv.requestID = c.requestID
	code := http.StatusAccepted
	switch action {
	case "reboot":
		if rebootType == "SOFT" && !checkState("reboot", "active") {
			return
		}
		if rebootType == "HARD" && !checkState("reboot", "active", "stopped", "paused", "suspended", "error") {
			return
		}
		s.startReboot(srv, rebootType == "HARD")
	case "os-stop":
		if !checkState("stop", "active", "error") {
			return
		}
		s.startStop(srv)
	case "os-start":
		if !checkState("start", "stopped") {
			return
		}
		s.startStart(srv)
	case "resize":
		if !checkState("resize", "active", "stopped") {
			return
		}
		nf := s.findFlavor(flavorRef)
		if nf == nil {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "Unable to locate requested flavor.")
			return
		}
		if nf.ID == srv.flavorID {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "When resizing, instances must change flavor!")
			return
		}
		if msg := s.checkResizeQuota(srv, nf); msg != "" {
			s.mu.Unlock()
			novaError(w, http.StatusForbidden, msg)
			return
		}
		s.startResize(srv, nf)
	case "confirmResize":
		if !checkState("confirmResize", "resized") {
			return
		}
		if srv.migration != "finished" {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "Instance has not been resized.")
			return
		}
		srv.migration = "confirming"
		s.startConfirm(srv)
		code = http.StatusNoContent
	case "revertResize":
		if !checkState("revertResize", "resized") {
			return
		}
		if srv.migration != "finished" {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "Instance has not been resized.")
			return
		}
		srv.migration = "reverting"
		s.startRevert(srv)
	case "rebuild":
		if !checkState("rebuild", "active", "stopped", "error") {
			return
		}
		img := s.findImage(imageRef)
		if img == nil {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, "Cannot find image for rebuild")
			return
		}
		s.startRebuild(srv, img)
		// Nova answers a rebuild with the server, as a GET shows it, and
		// its new admin password.
		view := s.serverView(srv, c, true)
		view["adminPass"] = newPassword()
		s.mu.Unlock()
		s.logf("nova: rebuild server %s from image %s", id, img.ID)
		writeJSON(w, http.StatusAccepted, map[string]any{"server": view})
		return
	}
	s.mu.Unlock()
	s.logf("nova: %s server %s", action, id)
	w.WriteHeader(code)
}

// checkResizeQuota checks the growth in cores and RAM a resize asks for.
func (s *Sim) checkResizeQuota(srv *server, nf *flavor) string {
	of := s.findFlavor(srv.flavorID)
	if of == nil {
		return ""
	}
	return s.quotaExceeded(0, nf.VCPUs-of.VCPUs, nf.RAM-of.RAM)
}

func newPassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	id := strings.ReplaceAll(newUUID(), "-", "")
	b := make([]byte, 12)
	for i := range b {
		v, _ := strconv.ParseUint(id[2*i:2*i+2], 16, 8)
		b[i] = alphabet[int(v)%len(alphabet)]
	}
	return string(b)
}

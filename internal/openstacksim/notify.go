package openstacksim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// Notifications as real Nova sends them through oslo.messaging's kafka
// driver (notification_format = both): for each notification point the
// legacy message on notifications.<priority>, then the versioned one on
// versioned_notifications.<priority>, each in the oslo envelope whose
// oslo.message is a JSON string. The payloads follow the captured ones in
// testdata/notifications field for field. Ceilometer events, when enabled,
// are what Ceilometer's notification agent makes of the legacy message with
// its stock event_definitions.yaml, published by its notifier publisher.

// record is one Kafka record ready to send.
type record struct {
	topic     string
	value     []byte
	eventType string // versioned name, what notification faults match on
	format    string
}

// SentNotification is a notification the simulator published (or dropped
// for want of a Publisher), for tests and GET /_sim/notifications.
type SentNotification struct {
	Time      time.Time `json:"time"`
	Topic     string    `json:"topic"`
	EventType string    `json:"event_type"` // versioned name
	Format    string    `json:"format"`
	Value     []byte    `json:"value"`
}

// maxSent bounds the log of sent notifications.
const maxSent = 20000

type notifier struct {
	s       *Sim
	formats map[string]bool

	mu   sync.Mutex // guards sent and held
	sent []SentNotification
	held []record // reordered records waiting for the next one
}

func newNotifier(s *Sim) *notifier {
	n := &notifier{s: s, formats: map[string]bool{}}
	for _, f := range s.cfg.Formats {
		n.formats[strings.ToLower(strings.TrimSpace(f))] = true
	}
	return n
}

// source is the Nova service a notification comes from; it sets the
// publisher ids of both formats.
type source int

const (
	fromCompute source = iota
	fromConductor
	fromAPI // versioned "nova-api:host"; the legacy twin still says compute
	fromScheduler
)

func (n *notifier) publishers(src source) (legacy, versioned string) {
	h := n.s.cfg.ComputeHost
	switch src {
	case fromConductor:
		return "conductor." + h, "nova-conductor:" + h
	case fromAPI:
		return "compute." + h, "nova-api:" + h
	case fromScheduler:
		return "scheduler." + h, "nova-scheduler:" + h
	}
	return "compute." + h, "nova-compute:" + h
}

// batch collects the records of one step, rendered under the Sim's lock and
// sent after it is released.
type batch struct {
	n       *notifier
	records []record
}

func (n *notifier) batch() *batch { return &batch{n: n} }

// emit renders one notification point in every enabled format. legacyType
// is the unversioned event type; "" means the point has no legacy twin.
func (b *batch) emit(src source, priority, versionedType, legacyType string, versioned, legacy, ctxt map[string]any) {
	lp, vp := b.n.publishers(src)
	b.emitAs(lp, vp, priority, versionedType, legacyType, versioned, legacy, ctxt)
}

// emitAs is emit with explicit publisher ids.
func (b *batch) emitAs(lp, vp, priority, versionedType, legacyType string, versioned, legacy, ctxt map[string]any) {
	n := b.n
	topicSuffix := "." + strings.ToLower(priority)
	if legacyType != "" && legacy != nil && (n.formats[FormatLegacy] || n.formats[FormatCeilometer]) {
		ts := now()
		msg := map[string]any{
			"message_id": newUUID(), "publisher_id": lp, "event_type": legacyType, "priority": priority,
			"payload": legacy, "timestamp": ts.Format(osloTime), "_context": ctxt,
		}
		if n.formats[FormatLegacy] {
			b.records = append(b.records, record{topic: n.s.cfg.LegacyTopic + topicSuffix, value: envelope(msg),
				eventType: versionedType, format: FormatLegacy})
		}
		if n.formats[FormatCeilometer] {
			b.records = append(b.records, n.ceilometerRecord(msg, legacyType, versionedType, lp, legacy, ctxt, ts))
		}
	}
	if versioned != nil && n.formats[FormatVersioned] {
		msg := map[string]any{
			"message_id": newUUID(), "publisher_id": vp, "event_type": versionedType, "priority": priority,
			"payload": versioned, "timestamp": now().Format(osloTime), "_context": ctxt,
		}
		b.records = append(b.records, record{topic: n.s.cfg.VersionedTopic + topicSuffix, value: envelope(msg),
			eventType: versionedType, format: FormatVersioned})
	}
}

// envelope wraps a message the way oslo.messaging 2.0 does: the message is
// a JSON string inside the JSON envelope.
func envelope(msg map[string]any) []byte {
	inner, _ := json.Marshal(msg)
	out, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
	return out
}

// send publishes a batch in order, applying notification faults.
func (n *notifier) send(b *batch) {
	for _, r := range b.records {
		n.publish(r)
	}
}

func (n *notifier) publish(r record) {
	s := n.s
	action, delay := s.faults.notificationAction(r)
	switch action {
	case "lose":
		s.logf("notify: lost %s (%s) by fault", r.eventType, r.format)
		n.releaseHeld()
		return
	case "duplicate":
		n.deliver(r)
		n.deliver(r)
	case "delay":
		s.goAfter(delay, func() { n.deliver(r) })
	case "reorder":
		// Held until the next record goes out, or until delay passes when
		// none comes, so that it arrives after its successor.
		n.mu.Lock()
		n.held = append(n.held, r)
		n.mu.Unlock()
		s.goAfter(delay, n.releaseHeld)
		return
	default:
		n.deliver(r)
	}
	n.releaseHeld()
}

func (n *notifier) releaseHeld() {
	n.mu.Lock()
	held := n.held
	n.held = nil
	n.mu.Unlock()
	for _, r := range held {
		n.deliver(r)
	}
}

func (n *notifier) deliver(r record) {
	s := n.s
	n.mu.Lock()
	if len(n.sent) >= maxSent {
		n.sent = append(n.sent[:0], n.sent[len(n.sent)/2:]...)
	}
	n.sent = append(n.sent, SentNotification{Time: now(), Topic: r.topic, EventType: r.eventType, Format: r.format, Value: r.value})
	n.mu.Unlock()
	if s.cfg.Publisher == nil {
		return
	}
	if err := s.cfg.Publisher.Publish(s.ctx, r.topic, r.value); err != nil {
		s.logf("notify: publish %s to %s: %v", r.eventType, r.topic, err)
	}
}

// Notifications returns the notifications sent so far, oldest first.
func (s *Sim) Notifications() []SentNotification {
	n := s.notifier
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]SentNotification(nil), n.sent...)
}

// ResetNotifications forgets the sent notifications.
func (s *Sim) ResetNotifications() {
	n := s.notifier
	n.mu.Lock()
	n.sent = nil
	n.mu.Unlock()
}

// ---- payloads ----

// context is the request context oslo.messaging's kafka driver puts in
// _context, as in the captures.
func (s *Sim) notifyContext(requestID string) map[string]any {
	cfg := &s.cfg
	return map[string]any{
		"user": cfg.UserID, "project_id": cfg.ProjectID, "system_scope": nil, "project": cfg.ProjectID,
		"domain": nil, "user_domain": "default", "project_domain": "default", "is_admin": true,
		"read_only": false, "show_deleted": false, "auth_token": nil, "request_id": requestID,
		"global_request_id": nil, "resource_uuid": nil, "roles": []string{"member", "reader", "admin"},
		"user_identity": cfg.UserID + " " + cfg.ProjectID + " - default default", "is_admin_project": true,
		"user_id": cfg.UserID, "read_deleted": "no", "remote_address": nil,
		"timestamp": now().Format(isoMicro), "quota_class": nil, "user_name": cfg.Username,
		"service_catalog": []any{}, "project_name": cfg.Project,
	}
}

func novaObject(name, version string, data map[string]any) map[string]any {
	return map[string]any{"nova_object.name": name, "nova_object.namespace": "nova",
		"nova_object.version": version, "nova_object.data": data}
}

func flavorPayload(f *flavor) map[string]any {
	if f == nil {
		return nil
	}
	return novaObject("FlavorPayload", "1.4", map[string]any{
		"flavorid": f.ID, "memory_mb": f.RAM, "vcpus": f.VCPUs, "root_gb": f.Disk, "ephemeral_gb": 0,
		"name": f.Name, "swap": 0, "rxtx_factor": 1.0, "vcpu_weight": 0, "disabled": false,
		"is_public": true, "extra_specs": map[string]any{}, "projects": nil, "description": nil,
	})
}

// exceptionPayload is Nova's ExceptionPayload for a fault.
func exceptionPayload(f *notifyFault) map[string]any {
	if f == nil {
		return nil
	}
	return novaObject("ExceptionPayload", "1.1", map[string]any{
		"module_name": f.module, "function_name": f.function, "exception": f.exception,
		"exception_message": f.message, "traceback": f.traceback(),
	})
}

// notifyFault is an exception as notifications describe it.
type notifyFault struct {
	exception, message string
	module, function   string
	code               int
}

func (f *notifyFault) traceback() string {
	return "Traceback (most recent call last):\n,  File \"/usr/lib/python3/dist-packages/" +
		strings.ReplaceAll(f.module, ".", "/") + ".py\", line 1, in " + f.function + "\n,nova.exception." +
		f.exception + ": " + f.message + "\n"
}

// pyRepr of the exception dict Nova writes in legacy payloads.
func (f *notifyFault) legacyRepr(kwargs string) string {
	return "{'kwargs': {" + kwargs + "'code': " + itoa(f.code) + "}, 'message': '" +
		strings.ReplaceAll(f.message, "'", "\\'") + "', 'class': '" + f.exception + "'}"
}

type ipInfo struct {
	label, mac, portID, address string
}

// serverIPs lists the fixed IPs of the server's ports as the network info
// cache holds them (empty before networking and after shutdown).
func (s *Sim) serverIPs(srv *server) []ipInfo {
	if !srv.networked {
		return nil
	}
	var out []ipInfo
	for _, pid := range srv.portIDs {
		p := s.ports[pid]
		if p == nil {
			continue
		}
		label := p.networkID
		if net := s.findNetwork(p.networkID); net != nil {
			label = net.name
		}
		for _, ip := range p.fixedIPs {
			out = append(out, ipInfo{label: label, mac: p.mac, portID: p.id, address: ip.address})
		}
	}
	return out
}

// instanceOpts carries what varies between instance notifications.
type instanceOpts struct {
	fault       *notifyFault
	oldVM       string
	oldTask     string
	newTask     string // the task_state the update reports (may differ from srv's, as Nova's does)
	oldName     string
	newFlavor   *flavor
	withIPs     bool // legacy payload carries fixed_ips
	message     string
	noFaultKey  bool
	extraLegacy map[string]any
}

// versionedInstance builds the data of Nova's instance payloads (the
// InstancePayload fields shared by every instance.* notification).
func (s *Sim) versionedInstance(srv *server) map[string]any {
	f := s.findFlavor(srv.flavorID)
	var ips []any
	for _, ip := range s.serverIPs(srv) {
		ips = append(ips, novaObject("IpPayload", "1.0", map[string]any{
			"label": ip.label, "mac": ip.mac, "meta": map[string]any{}, "port_uuid": ip.portID,
			"version": 4, "address": ip.address, "device_name": "tap" + truncate(ip.portID, 11),
		}))
	}
	if ips == nil {
		ips = []any{}
	}
	var updated any
	if srv.saved {
		updated = srv.updated.Format(isoSeconds)
	}
	return map[string]any{
		"uuid": srv.id, "user_id": srv.userID, "tenant_id": srv.tenantID,
		"reservation_id": srv.reservationID, "display_name": srv.name,
		"display_description": nullStr(srv.description), "host_name": hostnameOf(srv.name),
		"host": nullStr(srv.host), "node": nullStr(srv.host), "os_type": nil, "architecture": nil,
		"availability_zone": nullStr(srv.az), "flavor": flavorPayload(f), "image_uuid": srv.imageID,
		"key_name": nullStr(srv.keyName), "kernel_id": "", "ramdisk_id": "",
		"created_at": srv.created.Format(isoSeconds), "launched_at": nullTime(srv.launchedAt, isoSeconds),
		"terminated_at": nullTime(srv.terminatedAt, isoSeconds), "deleted_at": nullTime(srv.deletedAt, isoSeconds),
		"updated_at": updated, "state": srv.vmState,
		"power_state": powerStateNames[srv.powerState], "task_state": nullStr(srv.taskState),
		"progress": 0, "ip_addresses": ips, "block_devices": []any{},
		"metadata": mapOrEmpty(srv.metadata), "locked": false, "auto_disk_config": "MANUAL",
		"request_id": srv.requestID, "action_initiator_user": srv.userID,
		"action_initiator_project": srv.tenantID, "locked_reason": nil,
	}
}

// legacyInstance builds the unversioned payload (info_from_instance).
func (s *Sim) legacyInstance(srv *server, o instanceOpts) map[string]any {
	f := s.findFlavor(srv.flavorID)
	img := s.findImage(srv.imageID)
	p := map[string]any{
		"tenant_id": srv.tenantID, "user_id": srv.userID, "instance_id": srv.id,
		"display_name": srv.name, "reservation_id": srv.reservationID, "hostname": hostnameOf(srv.name),
		"architecture": nil, "host": nullStr(srv.host), "node": nullStr(srv.host),
		"availability_zone": nullStr(srv.az), "cell_name": "",
		"created_at":    srv.created.Format("2006-01-02 15:04:05+00:00"),
		"terminated_at": legacyTime(srv.terminatedAt), "deleted_at": legacyTime(srv.deletedAt),
		"launched_at": legacyTime(srv.launchedAt), "image_ref_url": s.imageRefURL(srv),
		"os_type": nil, "kernel_id": "", "ramdisk_id": "", "state": srv.vmState,
		"state_description": srv.taskState, "progress": "", "access_ip_v4": nil, "access_ip_v6": nil,
		"metadata": mapOrEmpty(srv.metadata),
	}
	if f != nil {
		p["instance_type"] = f.Name
		p["instance_type_id"] = s.flavorIndex(f) + 1
		p["instance_flavor_id"] = f.ID
		p["memory_mb"], p["vcpus"] = f.RAM, f.VCPUs
		p["disk_gb"], p["root_gb"], p["ephemeral_gb"] = f.Disk, f.Disk, 0
	}
	if img != nil {
		p["image_meta"] = map[string]any{
			"owner_specified.openstack.md5": "", "owner_specified.openstack.sha256": "",
			"owner_specified.openstack.object": "images/" + img.Name, "min_ram": itoa(img.MinRAM),
			"min_disk": itoa(max(img.MinDisk, 1)), "disk_format": img.DiskFormat, "container_format": "bare",
			"base_image_ref": img.ID,
		}
	}
	if o.withIPs {
		var fixed []any
		for _, ip := range s.serverIPs(srv) {
			floating := []any{}
			for _, fip := range s.sortedFIPs() {
				if fip.portID == ip.portID && fip.fixedIP == ip.address {
					floating = append(floating, map[string]any{"address": fip.address, "type": "floating", "version": 4, "meta": map[string]any{}})
				}
			}
			fixed = append(fixed, map[string]any{"address": ip.address, "type": "fixed", "version": 4,
				"meta": map[string]any{}, "floating_ips": floating, "label": ip.label, "vif_mac": ip.mac})
		}
		if fixed == nil {
			fixed = []any{}
		}
		p["fixed_ips"] = fixed
	}
	for k, v := range o.extraLegacy {
		p[k] = v
	}
	return p
}

func legacyTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2006-01-02T15:04:05.000000")
}

func (s *Sim) imageRefURL(srv *server) string {
	base := srv.base
	if s.cfg.BaseURL != "" {
		base = s.cfg.BaseURL
	}
	return base + "/image/images/" + srv.imageID
}

func (s *Sim) flavorIndex(f *flavor) int {
	for i, x := range s.flavors {
		if x == f {
			return i
		}
	}
	return 0
}

func auditPeriod(t time.Time) (begin, end time.Time) {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC), t
}

// instanceAction emits instance.<action>.<phase> (and its legacy twin),
// e.g. action "create" phase "end". Payload classes follow the captures.
func (b *batch) instanceAction(src source, srv *server, action, phase string, o instanceOpts) {
	s := b.n.s
	versionedType := "instance." + action + "." + phase
	legacyAction := action
	switch action {
	case "resize_prep":
		legacyAction = "resize.prep"
	case "resize_finish":
		legacyAction = "finish_resize"
	case "resize_confirm":
		legacyAction = "resize.confirm"
	case "resize_revert":
		legacyAction = "resize.revert"
	}
	legacyType := "compute.instance." + legacyAction + "." + phase
	priority := "INFO"
	if phase == "error" {
		priority = "ERROR"
	}

	data := s.versionedInstance(srv)
	name, version := "InstanceActionPayload", "1.8"
	switch action {
	case "create":
		name, version = "InstanceCreatePayload", "1.12"
		data["keypairs"] = []any{}
		data["tags"] = sliceOrEmpty(srv.tags)
		data["trusted_image_certificates"] = nil
		data["instance_name"] = srv.instanceName
	case "resize_prep":
		name, version = "InstanceActionResizePrepPayload", "1.3"
		data["new_flavor"] = flavorPayload(o.newFlavor)
	}
	data["fault"] = exceptionPayload(o.fault)
	// Nova puts block devices in an action payload only when the caller
	// hands them over; resize_prep, resize_confirm and the API's local
	// delete do not.
	if action == "resize_prep" || action == "resize_confirm" || src == fromAPI {
		data["block_devices"] = nil
	}

	extra := map[string]any{}
	for k, v := range o.extraLegacy {
		extra[k] = v
	}
	switch {
	case action == "create" && phase == "start":
		if img := s.findImage(srv.imageID); img != nil {
			extra["image_name"] = img.Name
		}
	case action == "create" && phase == "end":
		extra["message"] = "Success"
	case action == "resize_prep" && phase == "end" && o.newFlavor != nil:
		extra["new_instance_type"] = o.newFlavor.Name
		extra["new_instance_type_id"] = s.flavorIndex(o.newFlavor) + 1
	}
	if o.fault != nil {
		extra["exception"] = o.fault.legacyRepr("")
		extra["message"] = o.fault.message
		extra["code"] = o.fault.code
	}
	o.extraLegacy = extra
	legacy := s.legacyInstance(srv, o)
	b.emit(src, priority, versionedType, legacyType, novaObject(name, version, data), legacy, s.notifyContext(srv.requestID))
}

// update emits instance.update / compute.instance.update for a state change
// from (oldVM, oldTask) to the server's current vm_state and o.newTask.
func (b *batch) update(src source, srv *server, oldVM, oldTask string, o instanceOpts) {
	s := b.n.s
	t := now()
	begin, end := auditPeriod(t)
	data := s.versionedInstance(srv)
	data["state_update"] = novaObject("InstanceStateUpdatePayload", "1.0", map[string]any{
		"old_state": oldVM, "state": srv.vmState, "old_task_state": nullStr(oldTask), "new_task_state": nullStr(o.newTask),
	})
	data["audit_period"] = novaObject("AuditPeriodPayload", "1.0", map[string]any{
		"audit_period_beginning": begin.Format(isoSeconds), "audit_period_ending": end.Format(isoSeconds),
	})
	data["block_devices"] = nil // InstanceUpdatePayload carries none
	data["old_display_name"] = nullStr(o.oldName)
	data["tags"] = sliceOrEmpty(srv.tags)
	data["task_state"] = nullStr(o.newTask)
	o.extraLegacy = map[string]any{
		"old_state": oldVM, "old_task_state": nullStr(oldTask), "new_task_state": nullStr(o.newTask),
		"state_description":      o.newTask,
		"audit_period_beginning": begin.Format("2006-01-02T15:04:05.000000"),
		"audit_period_ending":    end.Format("2006-01-02T15:04:05.000000"),
	}
	if o.oldName != "" {
		o.extraLegacy["old_display_name"] = o.oldName
	}
	legacy := s.legacyInstance(srv, o)
	b.emit(src, "INFO", "instance.update", "compute.instance.update", novaObject("InstanceUpdatePayload", "2.0", data), legacy, s.notifyContext(srv.requestID))
}

// exists emits instance.exists, which Nova sends before a resize with the
// old flavor for billing.
func (b *batch) exists(srv *server) {
	s := b.n.s
	begin, end := auditPeriod(now())
	data := s.versionedInstance(srv)
	data["block_devices"] = nil
	data["audit_period"] = novaObject("AuditPeriodPayload", "1.0", map[string]any{
		"audit_period_beginning": begin.Format(isoSeconds), "audit_period_ending": end.Format(isoSeconds),
	})
	legacy := s.legacyInstance(srv, instanceOpts{extraLegacy: map[string]any{
		"audit_period_beginning": begin.Format("2006-01-02T15:04:05.000000"),
		"audit_period_ending":    end.Format("2006-01-02T15:04:05.000000"),
	}})
	b.emit(fromCompute, "INFO", "instance.exists", "compute.instance.exists", novaObject("InstanceExistsPayload", "2.0", data), legacy, s.notifyContext(srv.requestID))
}

// selectDestinations emits scheduler.select_destinations.<phase>.
func (b *batch) selectDestinations(srv *server, f *flavor, phase string, resize bool) {
	s := b.n.s
	spec := s.requestSpecPayload(srv, f)
	if resize {
		// A move operation's request spec names the cell and the hosts to
		// avoid.
		d := spec["nova_object.data"].(map[string]any)
		d["ignore_hosts"] = []any{}
		d["security_groups"] = []any{"default"}
		d["requested_destination"] = novaObject("DestinationPayload", "1.0", map[string]any{
			"cell":       novaObject("CellMappingPayload", "2.0", map[string]any{"uuid": stableUUID("cell1"), "name": "cell1", "disabled": false}),
			"aggregates": nil,
		})
	}
	spec0 := s.legacyRequestSpec(srv, f)
	if phase == "end" || resize {
		// Once loaded from the database (by the end of scheduling, or for
		// a move) the requests know their instance.
		pci := spec0["instance_properties"].(map[string]any)["pci_requests"].(map[string]any)
		pci["_obj_instance_uuid"] = srv.id
	}
	legacy := map[string]any{"request_spec": spec0}
	b.emit(fromScheduler, "INFO", "scheduler.select_destinations."+phase, "scheduler.select_destinations."+phase,
		spec, legacy, s.notifyContext(srv.requestID))
}

func (s *Sim) imagePayload(img *image) map[string]any {
	if img == nil {
		return nil
	}
	return novaObject("ImageMetaPayload", "1.0", map[string]any{
		"id": img.ID, "name": img.Name, "status": "active", "visibility": nil, "protected": nil,
		"checksum": img.checksum, "owner": s.cfg.ProjectID, "size": img.Size, "virtual_size": nil,
		"container_format": "bare", "disk_format": img.DiskFormat,
		"created_at": img.created.Format(isoSeconds), "updated_at": img.created.Format(isoSeconds),
		"tags": nil, "direct_url": nil, "min_ram": img.MinRAM, "min_disk": img.MinDisk,
		"properties": novaObject("ImageMetaPropsPayload", "1.12", map[string]any{}),
	})
}

func (s *Sim) requestSpecPayload(srv *server, f *flavor) map[string]any {
	return novaObject("RequestSpecPayload", "1.1", map[string]any{
		"instance_uuid": srv.id, "project_id": srv.tenantID, "user_id": srv.userID,
		"availability_zone": nil, "flavor": flavorPayload(f), "force_hosts": nil, "force_nodes": nil,
		"ignore_hosts": nil, "instance_group": nil, "image": s.imagePayload(s.findImage(srv.imageID)),
		"numa_topology": nil, "pci_requests": novaObject("InstancePCIRequestsPayload", "1.0",
			map[string]any{"instance_uuid": srv.id, "requests": []any{}}),
		"num_instances": 1, "requested_destination": nil, "retry": nil, "scheduler_hints": map[string]any{},
		"security_groups": []any{},
	})
}

func (s *Sim) legacyRequestSpec(srv *server, f *flavor) map[string]any {
	img := s.findImage(srv.imageID)
	spec := map[string]any{"num_instances": 1, "instance_properties": s.legacyInstanceProperties(srv, f)}
	if img != nil {
		spec["image"] = map[string]any{"id": img.ID, "name": img.Name, "status": "active", "checksum": img.checksum,
			"owner": s.cfg.ProjectID, "size": img.Size, "container_format": "bare", "disk_format": img.DiskFormat,
			"created_at": img.created.Format(isoMicro), "updated_at": img.created.Format(isoMicro),
			"min_ram": img.MinRAM, "min_disk": img.MinDisk, "properties": map[string]any{}}
	}
	if f != nil {
		spec["instance_type"] = map[string]any{"id": s.flavorIndex(f) + 1, "name": f.Name, "memory_mb": f.RAM,
			"vcpus": f.VCPUs, "root_gb": f.Disk, "ephemeral_gb": 0, "flavorid": f.ID, "swap": 0,
			"rxtx_factor": 1.0, "vcpu_weight": 0, "disabled": false, "is_public": true, "extra_specs": map[string]any{},
			"description": nil, "created_at": f.created.Format(isoMicro), "updated_at": nil, "deleted_at": nil, "deleted": false}
	}
	return spec
}

func (s *Sim) legacyInstanceProperties(srv *server, f *flavor) map[string]any {
	p := map[string]any{"numa_topology": nil, "project_id": srv.tenantID, "user_id": srv.userID,
		"availability_zone": nil, "uuid": srv.id, "pci_requests": s.legacyPCIRequests(srv)}
	if f != nil {
		p["root_gb"], p["ephemeral_gb"], p["memory_mb"], p["vcpus"] = f.Disk, 0, f.RAM, f.VCPUs
	}
	return p
}

// buildInstancesError emits compute_task.build_instances.error (legacy:
// compute_task.build_instances on notifications.error), the conductor's word
// that a build failed for good.
func (b *batch) buildInstancesError(srv *server, f *flavor, fault *notifyFault) {
	s := b.n.s
	data := map[string]any{
		"instance_uuid": srv.id, "request_spec": s.requestSpecPayload(srv, f), "state": "error",
		"reason": exceptionPayload(fault),
	}
	// The conductor's copy of the context has been through the database
	// layer, which leaves its engine facade state behind.
	props := s.legacyInstanceProperties(srv, f)
	props["pci_requests"].(map[string]any)["_context"].(map[string]any)["_enginefacade_context"] = map[string]any{}
	spec := s.legacyRequestSpec(srv, f)
	spec["instance_properties"].(map[string]any)["pci_requests"].(map[string]any)["_context"].(map[string]any)["_enginefacade_context"] = map[string]any{}
	legacy := map[string]any{
		"request_spec": spec, "instance_properties": props,
		"instance_id": srv.id, "state": "error", "method": "build_instances",
		"reason": "{'kwargs': {'reason': '', 'code': " + itoa(fault.code) + "}, 'message': '" +
			strings.ReplaceAll(fault.message, "'", "\\'") + "', 'class': '" + fault.exception + "'}",
	}
	// The conductor's legacy publisher is compute_task.<host>.
	lp := "compute_task." + s.cfg.ComputeHost
	b.emitAs(lp, "nova-conductor:"+s.cfg.ComputeHost, "ERROR", "compute_task.build_instances.error",
		"compute_task.build_instances", novaObject("ComputeTaskPayload", "1.0", data), legacy, s.notifyContext(srv.requestID))
}

// computeException emits what nova.exception_wrapper sends when a compute
// manager method raises: versioned compute.exception, legacy <method>.
func (b *batch) computeException(srv *server, method string, fault *notifyFault) {
	s := b.n.s
	legacy := map[string]any{"exception": fault.exception + "('" + fault.message + "')",
		"args": map[string]any{"instance": map[string]any{"uuid": srv.id, "display_name": srv.name}}}
	b.emitAs("compute."+s.cfg.ComputeHost, "nova-compute:"+s.cfg.ComputeHost, "ERROR", "compute.exception", method,
		exceptionPayload(fault), legacy, s.notifyContext(srv.requestID))
}

// ---- Ceilometer ----

// Trait types of Ceilometer's models.Trait.
const (
	traitText     = 1
	traitInt      = 2
	traitDatetime = 4
)

// ceilometerRecord is the event Ceilometer's notification agent derives
// from a legacy notification, as its notifier publisher sends it: an oslo
// message with event_type "event", priority SAMPLE, and a list of
// serialized events as payload.
func (n *notifier) ceilometerRecord(msg map[string]any, legacyType, versionedType, publisher string, p, ctxt map[string]any, ts time.Time) record {
	var traits []any
	add := func(name string, typ int, v any) {
		if v == nil {
			return
		}
		if sv, ok := v.(string); ok && sv == "" && typ != traitText {
			return // Ceilometer drops '' for non-text traits (Nova's null dates)
		}
		traits = append(traits, []any{name, typ, v})
	}
	service, host, _ := strings.Cut(publisher, ".")
	add("request_id", traitText, ctxt["request_id"])
	add("user_id", traitText, firstNonNil(p["user_id"], ctxt["user_id"]))
	add("project_id", traitText, firstNonNil(p["tenant_id"], ctxt["project_id"]))
	if strings.HasPrefix(legacyType, "compute.instance.") {
		add("service", traitText, service)
		add("host", traitText, host)
		add("tenant_id", traitText, p["tenant_id"])
		add("instance_id", traitText, p["instance_id"])
		add("resource_id", traitText, p["instance_id"])
		add("display_name", traitText, p["display_name"])
		add("cell_name", traitText, p["cell_name"])
		for _, k := range []string{"memory_mb", "disk_gb", "root_gb", "ephemeral_gb", "vcpus"} {
			add(k, traitInt, p[k])
		}
		if id, ok := p["instance_type_id"]; ok {
			add("instance_type_id", traitText, itoa(asInt(id)))
		}
		add("instance_type", traitText, p["instance_type"])
		add("state", traitText, p["state"])
		add("launched_at", traitDatetime, p["launched_at"])
		add("deleted_at", traitDatetime, p["deleted_at"])
		switch legacyType {
		case "compute.instance.create.end":
			add("availability_zone", traitText, p["availability_zone"])
		case "compute.instance.update":
			add("old_state", traitText, p["old_state"])
		case "compute.instance.exists":
			add("audit_period_beginning", traitDatetime, p["audit_period_beginning"])
			add("audit_period_ending", traitDatetime, p["audit_period_ending"])
		}
	} else {
		add("service", traitText, publisher)
		add("tenant_id", traitText, firstNonNil(p["tenant_id"], ctxt["project_id"]))
	}
	event := map[string]any{
		"message_id": msg["message_id"], "event_type": legacyType,
		"generated": ts.Format("2006-01-02T15:04:05.000000"), "traits": traits, "raw": map[string]any{},
	}
	event["message_signature"] = signEvent(event)
	out := map[string]any{
		"message_id": newUUID(), "publisher_id": "telemetry.publisher." + n.s.cfg.ComputeHost,
		"event_type": "event", "priority": "SAMPLE", "payload": []any{event},
		"timestamp": now().Format(osloTime), "_context": map[string]any{},
	}
	return record{topic: n.s.cfg.CeilometerTopic, value: envelope(out), eventType: versionedType, format: FormatCeilometer}
}

// signEvent is the HMAC Ceilometer adds with its telemetry_secret; nobody
// downstream verifies it, but the field is there.
func signEvent(ev map[string]any) string {
	b, _ := json.Marshal(ev)
	m := hmac.New(sha256.New, []byte("change this for valid signing"))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

func firstNonNil(vs ...any) any {
	for _, v := range vs {
		if v != nil && v != "" {
			return v
		}
	}
	return nil
}

func asInt(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case float64:
		return int(v)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// legacyPCIRequests is the serialized InstancePCIRequests object Nova puts
// in legacy request specs, context included.
func (s *Sim) legacyPCIRequests(srv *server) map[string]any {
	cfg := &s.cfg
	endpoint := func(typ, name, path string) map[string]any {
		url := s.cfg.BaseURL + path
		return map[string]any{"type": typ, "name": name, "endpoints": []any{map[string]any{
			"region": cfg.Region, "internalURL": url, "publicURL": url}}}
	}
	ctx := map[string]any{
		"_user_id": cfg.UserID, "_project_id": cfg.ProjectID, "_domain_id": nil, "_user_domain_id": "default",
		"_project_domain_id": "default", "auth_token": "gAAAAAB" + strings.Repeat("x", 176), "user_name": cfg.Username,
		"project_name": cfg.Project, "domain_name": nil, "system_scope": nil, "user_domain_name": nil,
		"project_domain_name": nil, "is_admin": true, "is_admin_project": true, "read_only": false,
		"show_deleted": false, "resource_uuid": nil, "roles": []string{"member", "reader", "admin"},
		"service_token": nil, "service_user_id": nil, "service_user_name": nil, "service_user_domain_id": nil,
		"service_user_domain_name": nil, "service_project_id": nil, "service_project_name": nil,
		"service_project_domain_id": nil, "service_project_domain_name": nil, "service_roles": []any{},
		"request_id": srv.requestID, "global_request_id": nil, "_read_deleted": "no", "remote_address": "127.0.0.1",
		"timestamp":       srv.created.Format(isoMicro),
		"service_catalog": []any{endpoint("network", "neutron", "/network"), endpoint("image", "glance", "/image")},
		"quota_class":     nil, "db_connection": nil, "mq_connection": nil, "cell_uuid": nil, "user_auth_plugin": nil,
	}
	return map[string]any{"_changed_fields": []string{"requests"}, "_context": ctx, "VERSION": "1.1", "_obj_requests": []any{}}
}

package openstacksim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Faults injects failures: API errors and latency by endpoint, builds and
// resizes that end in ERROR, lost/duplicated/delayed/reordered
// notifications, and quota exhaustion. Rules apply to the next Count
// matching events (0: every one), each with probability Rate (0: always).
type Faults struct {
	sim *Sim

	mu     sync.Mutex
	nextID int
	rules  []*rule
}

// HTTPFault makes matching API calls fail or slow down.
type HTTPFault struct {
	// Method matches the HTTP method; "" or "*" matches any.
	Method string `json:"method,omitempty"`
	// Path is a path template as the call log shows it
	// ("/compute/v2.1/servers/{id}", optionally prefixed by the method:
	// "POST /compute/v2.1/servers") or a glob on the literal path
	// ("/network/v2.0/ports/*").
	Path string `json:"path"`
	// Status, when not 0, is the error answered, with the service's error
	// body (Nova's computeFault/itemNotFound..., NeutronError, Keystone's
	// error) carrying Message. Body, when set, replaces that body.
	Status  int    `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Body    string `json:"body,omitempty"`
	// Latency delays the call before it is answered (or fails).
	Latency Duration `json:"latency,omitempty"`
	Count   int      `json:"count,omitempty"`
	Rate    float64  `json:"rate,omitempty"`
}

// NotificationFault tampers with notifications on their way to Kafka.
type NotificationFault struct {
	// EventType is a glob on the versioned event type
	// ("instance.create.end", "instance.*"); legacy and Ceilometer
	// records are matched by the versioned name of their notification.
	EventType string `json:"event_type"`
	// Format limits the fault to one format ("versioned", "legacy",
	// "ceilometer"); "" is any.
	Format string `json:"format,omitempty"`
	// Action is "lose", "duplicate", "delay" or "reorder" (held back until
	// the next record is sent, or Delay passes).
	Action string   `json:"action"`
	Delay  Duration `json:"delay,omitempty"`
	Count  int      `json:"count,omitempty"`
	Rate   float64  `json:"rate,omitempty"`
}

// BootFault makes server builds fail.
type BootFault struct {
	// Mode is "compute" (the spawn fails on the host, the build is
	// rescheduled and runs out of hosts: instance.create.error then
	// compute_task.build_instances.error, like capture h),
	// "novalidhost" (the scheduler finds no host, capture f) or
	// "network" (Nova cannot allocate the network and aborts the build).
	Mode string `json:"mode"`
	// Name is a regular expression on the server name; "" is any server.
	Name string `json:"name,omitempty"`
	// Exception and Message of the compute-side failure (default
	// PortBindingFailed and its message).
	Exception string  `json:"exception,omitempty"`
	Message   string  `json:"message,omitempty"`
	Count     int     `json:"count,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
}

// ResizeFault makes resizes fail while migrating: the server goes to ERROR
// with a fault.
type ResizeFault struct {
	Name    string  `json:"name,omitempty"`
	Message string  `json:"message,omitempty"`
	Count   int     `json:"count,omitempty"`
	Rate    float64 `json:"rate,omitempty"`
}

// Duration is a time.Duration that reads "1.5s" or nanoseconds in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want \"1.5s\" or nanoseconds: %w", err)
	}
	*d = Duration(n)
	return nil
}

// FaultRule is an installed rule as Faults.List and GET /_sim/faults show
// it.
type FaultRule struct {
	ID           int                `json:"id"`
	Kind         string             `json:"kind"` // http, notification, boot, resize
	Remaining    int                `json:"remaining"`
	HTTP         *HTTPFault         `json:"http,omitempty"`
	Notification *NotificationFault `json:"notification,omitempty"`
	Boot         *BootFault         `json:"boot,omitempty"`
	Resize       *ResizeFault       `json:"resize,omitempty"`
}

type rule struct {
	FaultRule
	unlimited bool
	rate      float64
	nameRe    *regexp.Regexp
}

func (f *Faults) add(r *rule, count int, rate float64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	r.ID = f.nextID
	r.Remaining = count
	r.unlimited = count <= 0
	r.rate = rate
	f.rules = append(f.rules, r)
	return r.ID
}

// AddHTTP installs an API fault and returns its id.
func (f *Faults) AddHTTP(h HTTPFault) int {
	h.Method = strings.ToUpper(h.Method)
	if m, p, ok := strings.Cut(h.Path, " "); ok && !strings.HasPrefix(h.Path, "/") {
		h.Method, h.Path = strings.ToUpper(m), p
	}
	return f.add(&rule{FaultRule: FaultRule{Kind: "http", HTTP: &h}}, h.Count, h.Rate)
}

// AddNotification installs a notification fault and returns its id.
func (f *Faults) AddNotification(n NotificationFault) (int, error) {
	switch n.Action {
	case "lose", "duplicate", "delay", "reorder":
	default:
		return 0, fmt.Errorf("notification fault action %q: want lose, duplicate, delay or reorder", n.Action)
	}
	if _, err := path.Match(n.EventType, ""); err != nil {
		return 0, fmt.Errorf("notification fault event type %q: %w", n.EventType, err)
	}
	return f.add(&rule{FaultRule: FaultRule{Kind: "notification", Notification: &n}}, n.Count, n.Rate), nil
}

// FailBoot makes matching builds fail and returns the rule's id.
func (f *Faults) FailBoot(b BootFault) (int, error) {
	switch b.Mode {
	case "compute", "novalidhost", "network":
	case "":
		b.Mode = "compute"
	default:
		return 0, fmt.Errorf("boot fault mode %q: want compute, novalidhost or network", b.Mode)
	}
	re, err := compileName(b.Name)
	if err != nil {
		return 0, err
	}
	return f.add(&rule{FaultRule: FaultRule{Kind: "boot", Boot: &b}, nameRe: re}, b.Count, b.Rate), nil
}

// FailResize makes matching resizes fail and returns the rule's id.
func (f *Faults) FailResize(r ResizeFault) (int, error) {
	re, err := compileName(r.Name)
	if err != nil {
		return 0, err
	}
	if r.Message == "" {
		r.Message = "Resize error: Unable to resize disk down."
	}
	return f.add(&rule{FaultRule: FaultRule{Kind: "resize", Resize: &r}, nameRe: re}, r.Count, r.Rate), nil
}

func compileName(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("server name pattern: %w", err)
	}
	return re, nil
}

// Remove deletes a rule; it reports whether it existed.
func (f *Faults) Remove(id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.ID == id {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
			return true
		}
	}
	return false
}

// Clear removes every rule (quotas are left as they are).
func (f *Faults) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

// List returns the installed rules.
func (f *Faults) List() []FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FaultRule, 0, len(f.rules))
	for _, r := range f.rules {
		out = append(out, r.FaultRule)
	}
	return out
}

// take finds the first live rule of a kind that matches and fires (rate),
// consuming one of its count. Rules used up are removed.
func (f *Faults) take(kind string, match func(*rule) bool) *rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.Kind != kind || !match(r) {
			continue
		}
		if r.rate > 0 && r.rate < 1 && f.random() >= r.rate {
			continue
		}
		if !r.unlimited {
			r.Remaining--
			if r.Remaining <= 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
		}
		return r
	}
	return nil
}

// random draws from the Sim's seeded source (guarded by f.mu here, the
// Sim's own draws by s.mu).
func (f *Faults) random() float64 {
	f.sim.rngMu.Lock()
	defer f.sim.rngMu.Unlock()
	return f.sim.faultRNG.Float64()
}

// intercept applies HTTP faults to a call before it is served; it reports
// whether it answered the call.
func (f *Faults) intercept(w http.ResponseWriter, r *http.Request, template string) bool {
	_, tmplPath, _ := strings.Cut(template, " ")
	hit := f.take("http", func(rl *rule) bool {
		h := rl.HTTP
		if h.Method != "" && h.Method != "*" && h.Method != r.Method {
			return false
		}
		if h.Path == tmplPath || h.Path == r.URL.Path {
			return true
		}
		ok, _ := path.Match(h.Path, r.URL.Path)
		return ok
	})
	if hit == nil {
		return false
	}
	h := hit.HTTP
	if h.Latency > 0 {
		t := time.NewTimer(time.Duration(h.Latency))
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-f.sim.ctx.Done():
		}
		t.Stop()
	}
	if h.Status == 0 {
		return false
	}
	f.sim.logf("fault: %s %s -> %d", r.Method, r.URL.Path, h.Status)
	if h.Body != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(h.Status)
		_, _ = w.Write([]byte(h.Body))
		return true
	}
	writeServiceError(w, r.URL.Path, h.Status, h.Message)
	return true
}

// writeServiceError answers with the error body of the service the path
// belongs to.
func writeServiceError(w http.ResponseWriter, p string, code int, msg string) {
	switch {
	case strings.HasPrefix(p, "/compute/"):
		if msg == "" {
			msg = defaultNovaMessage(code)
		}
		w.Header().Set("X-Openstack-Request-Id", newRequestID())
		novaError(w, code, msg)
	case strings.HasPrefix(p, "/network/"):
		if msg == "" {
			msg = "Request Failed: internal server error while processing your request."
			if code < 500 {
				msg = http.StatusText(code)
			}
		}
		neutronError(w, &neutronErr{code, neutronErrorType(code), msg})
	case strings.HasPrefix(p, "/image/"):
		if msg == "" {
			msg = http.StatusText(code)
		}
		glanceError(w, code, msg)
	default:
		if msg == "" {
			msg = "An unexpected error prevented the server from fulfilling your request."
			if code < 500 {
				msg = http.StatusText(code)
			}
		}
		keystoneError(w, code, http.StatusText(code), msg)
	}
}

func defaultNovaMessage(code int) string {
	if code >= 500 {
		return "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n<class 'Exception'>"
	}
	return http.StatusText(code)
}

// neutronErrorType names the webob exception Neutron reports for a status.
func neutronErrorType(code int) string {
	switch code {
	case 400:
		return "HTTPBadRequest"
	case 403:
		return "HTTPForbidden"
	case 404:
		return "HTTPNotFound"
	case 409:
		return "HTTPConflict"
	case 503:
		return "HTTPServiceUnavailable"
	}
	if code >= 500 {
		return "HTTPInternalServerError"
	}
	return "HTTPError"
}

// notificationAction returns what a notification fault does to a record.
func (f *Faults) notificationAction(rec record) (action string, delay time.Duration) {
	hit := f.take("notification", func(rl *rule) bool {
		n := rl.Notification
		if n.Format != "" && n.Format != rec.format {
			return false
		}
		ok, _ := path.Match(n.EventType, rec.eventType)
		return ok
	})
	if hit == nil {
		return "", 0
	}
	d := time.Duration(hit.Notification.Delay)
	if d <= 0 {
		d = time.Second
	}
	return hit.Notification.Action, d
}

// takeBootFault decides, at create time, how a build ends.
func (f *Faults) takeBootFault(srv *server) bootPlan {
	hit := f.take("boot", func(rl *rule) bool { return rl.nameRe == nil || rl.nameRe.MatchString(srv.name) })
	if hit == nil {
		return bootPlan{}
	}
	b := hit.Boot
	return bootPlan{mode: b.Mode, exception: b.Exception, message: b.Message}
}

func (f *Faults) takeResizeFault(srv *server) *ResizeFault {
	hit := f.take("resize", func(rl *rule) bool { return rl.nameRe == nil || rl.nameRe.MatchString(srv.name) })
	if hit == nil {
		return nil
	}
	return hit.Resize
}

// Quota resources of SetQuota and ExhaustQuota.
const (
	QuotaInstances   = "instances"
	QuotaCores       = "cores"
	QuotaRAM         = "ram"
	QuotaPorts       = "ports"
	QuotaFloatingIPs = "floatingips"
)

// SetQuota sets a project quota; -1 is unlimited. Requests over it get the
// real services' errors (Nova's 403 "Quota exceeded for ...", Neutron's 409
// OverQuota).
func (f *Faults) SetQuota(resource string, limit int) error {
	s := f.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.quotas
	switch resource {
	case QuotaInstances:
		q.Instances = limit
	case QuotaCores:
		q.Cores = limit
	case QuotaRAM:
		q.RAM = limit
	case QuotaPorts, "port":
		q.Ports = limit
	case QuotaFloatingIPs, "floatingip", "floating_ips":
		q.FloatingIPs = limit
	default:
		return fmt.Errorf("quota resource %q: want instances, cores, ram, ports or floatingips", resource)
	}
	return nil
}

// ExhaustQuota sets a quota to what is in use now: the next request for
// that resource is refused.
func (f *Faults) ExhaustQuota(resource string) error {
	s := f.sim
	s.mu.Lock()
	u := s.novaUsage()
	used := map[string]int{
		QuotaInstances: u.instances, QuotaCores: u.cores, QuotaRAM: u.ram,
		QuotaPorts: len(s.ports), "port": len(s.ports),
		QuotaFloatingIPs: len(s.fips), "floatingip": len(s.fips), "floating_ips": len(s.fips),
	}
	s.mu.Unlock()
	n, ok := used[resource]
	if !ok {
		return fmt.Errorf("quota resource %q: want instances, cores, ram, ports or floatingips", resource)
	}
	return f.SetQuota(resource, n)
}

// Quotas returns the quotas in force.
func (f *Faults) Quotas() Quotas {
	s := f.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quotas
}

//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/openstack"
)

// The e2e tests run against the OpenStack simulator by default. With
// CLOUDSERVERS_E2E_OPENSTACK=real they run against a real OpenStack instead,
// connected the way the worker connects in production
// (internal/openstack.Connect: OS_CLOUD + OS_CLIENT_CONFIG_FILE, or the
// OS_* variables). That cloud must publish Nova's notifications to the
// Kafka of the test stack and offer what the default catalogue names
// (flavors m1.tiny and m1.small, image tiny, networks net1 and public,
// region RegionOne): the kit described in docs/real-openstack.md does.
const openstackEnv = "CLOUDSERVERS_E2E_OPENSTACK"

// realCloud tells whether the tests run against a real OpenStack.
func realCloud() bool { return os.Getenv(openstackEnv) == "real" }

// needsSimulator skips a test on a real cloud: it depends on something only
// the simulator offers (fault injection, its call log or its inventory).
func needsSimulator(t *testing.T, why string) {
	t.Helper()
	if realCloud() {
		t.Skipf("needs the OpenStack simulator (%s); %s=real runs against a real cloud", why, openstackEnv)
	}
}

// connectReal connects to the real cloud of the environment. Each call
// authenticates anew, so every system (and the test's own inspector) has
// its own provider client and HTTP transport.
func connectReal(t *testing.T) openstack.Clients {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients, err := openstack.Connect(ctx)
	if err != nil {
		t.Fatalf("%s=real: %v", openstackEnv, err)
	}
	return clients
}

// cloudCall is one HTTP call the worker's activities made to OpenStack, as
// the client saw it.
type cloudCall struct {
	Time      time.Time
	Template  string // "POST /compute/v2.1/servers/{id}/action", the simulator's templates
	Action    string // for server actions: the action ("reboot", "os-stop", ...)
	Status    int
	RequestID string // X-Openstack-Request-Id of the answer
	Duration  time.Duration
}

func (c cloudCall) key() string {
	if c.Action != "" {
		return c.Template + " " + c.Action
	}
	return c.Template
}

// callRecorder wraps the HTTP transport of the activities' OpenStack
// clients and logs every call by method and path template: the same view
// of the simulator and of a real cloud (the simulator's own call log exists
// only there), which proves "no polling" on both.
type callRecorder struct {
	mu       sync.Mutex
	calls    []cloudCall
	services []servicePrefix
	next     http.RoundTripper
}

type servicePrefix struct{ base, template string }

// recordCalls installs a recorder on the clients' provider (shared by the
// three service clients).
func recordCalls(clients openstack.Clients) *callRecorder {
	r := &callRecorder{services: []servicePrefix{
		{clients.Compute.Endpoint, "/compute/v2.1/"},
		{clients.Network.Endpoint, "/network/"},
		{clients.Image.Endpoint, "/image/"},
	}}
	pc := clients.Compute.ProviderClient
	r.next = pc.HTTPClient.Transport
	if r.next == nil {
		r.next = http.DefaultTransport
	}
	pc.HTTPClient.Transport = r
	return r
}

var idSegment = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{32})$`)

// template maps a URL to the simulator's path templates, whatever the
// cloud's endpoint layout (ports per service, or path prefixes).
func (r *callRecorder) template(method string, u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	path := ""
	for _, s := range r.services {
		if rest, ok := strings.CutPrefix(u, s.base); ok {
			path = s.template + rest
			break
		}
	}
	if path == "" { // Keystone
		_, after, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://"), "/")
		path = "/identity/" + strings.TrimPrefix(after, "identity/")
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if idSegment.MatchString(s) {
			segs[i] = "{id}"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

func (r *callRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	c := cloudCall{Time: time.Now(), Template: r.template(req.Method, req.URL.String())}
	if req.Method == "POST" && strings.HasSuffix(req.URL.Path, "/action") && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			body.Close()
			var m map[string]json.RawMessage
			if json.Unmarshal(b, &m) == nil {
				for k := range m {
					c.Action = k
				}
			}
		}
	}
	resp, err := r.next.RoundTrip(req)
	c.Duration = time.Since(c.Time)
	if resp != nil {
		c.Status = resp.StatusCode
		c.RequestID = resp.Header.Get("X-Openstack-Request-Id")
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return resp, err
}

// Count returns the number of calls to a template.
func (r *callRecorder) Count(template string) int {
	n := 0
	for _, c := range r.Since(time.Time{}) {
		if c.Template == template {
			n++
		}
	}
	return n
}

// Since returns the calls made at or after t.
func (r *callRecorder) Since(t time.Time) []cloudCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []cloudCall
	for _, c := range r.calls {
		if !c.Time.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

// summary counts calls by template (and action), with their statuses:
// "POST /network/v2.0/ports 201 x1".
func summary(calls []cloudCall) []string {
	counts := map[string]int{}
	for _, c := range calls {
		counts[fmt.Sprintf("%s %d", c.key(), c.Status)]++
	}
	out := make([]string, 0, len(counts))
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(out)
	return out
}

// leftovers lists what OpenStack still holds of a server: Nova servers and
// ports named cs-<id>, floating IPs described so.
func (s *system) leftovers(serverID string) []string {
	mark := cloudservers.NovaServerName(serverID)
	var leaked []string
	if s.sim != nil {
		inv := s.sim.Inventory()
		for _, x := range inv.Servers {
			if x.Name == mark {
				leaked = append(leaked, "server "+x.ID+" ("+x.Status+")")
			}
		}
		for _, x := range inv.Ports {
			if x.Name == mark {
				leaked = append(leaked, "port "+x.ID)
			}
		}
		for _, x := range inv.FloatingIPs {
			if x.Description == mark {
				leaked = append(leaked, "floating IP "+x.Address)
			}
		}
		return leaked
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.inspect
	if pages, err := servers.List(c.Compute, servers.ListOpts{Name: "^" + regexp.QuoteMeta(mark) + "$"}).AllPages(ctx); err != nil {
		leaked = append(leaked, "cannot list servers: "+err.Error())
	} else if all, err := servers.ExtractServers(pages); err == nil {
		for _, x := range all {
			if x.Name == mark {
				leaked = append(leaked, "server "+x.ID+" ("+x.Status+")")
			}
		}
	}
	if pages, err := ports.List(c.Network, ports.ListOpts{Name: mark}).AllPages(ctx); err != nil {
		leaked = append(leaked, "cannot list ports: "+err.Error())
	} else if all, err := ports.ExtractPorts(pages); err == nil {
		for _, x := range all {
			if x.Name == mark {
				leaked = append(leaked, "port "+x.ID)
			}
		}
	}
	if pages, err := floatingips.List(c.Network, floatingips.ListOpts{}).AllPages(ctx); err != nil {
		leaked = append(leaked, "cannot list floating IPs: "+err.Error())
	} else if all, err := floatingips.ExtractFloatingIPs(pages); err == nil {
		for _, x := range all {
			if x.Description == mark {
				leaked = append(leaked, "floating IP "+x.FloatingIP)
			}
		}
	}
	return leaked
}

// novaState is what the test reads of a server's resources in OpenStack,
// on the simulator and on a real cloud alike.
type novaState struct {
	InstanceID string
	Status     string // Nova's
	Flavor     string
	FixedIPs   []string // of the server's port
	PortID     string
	// FloatingIP and FloatingPort: the floating IP described cs-<id> and
	// the port it is associated with.
	FloatingIP   string
	FloatingPort string
}

// novaStateOf reads a server's resources through the inspector clients
// (not the worker's: those calls are not in the call log).
func (s *system) novaStateOf(t *testing.T, serverID string) novaState {
	t.Helper()
	mark := cloudservers.NovaServerName(serverID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.inspect
	var st novaState
	pages, err := servers.List(c.Compute, servers.ListOpts{Name: "^" + regexp.QuoteMeta(mark) + "$"}).AllPages(ctx)
	must(t, err)
	var all []struct {
		ID     string         `json:"id"`
		Name   string         `json:"name"`
		Status string         `json:"status"`
		Flavor map[string]any `json:"flavor"`
	}
	must(t, servers.ExtractServersInto(pages, &all))
	for _, x := range all {
		if x.Name == mark {
			st.InstanceID, st.Status = x.ID, x.Status
			st.Flavor, _ = x.Flavor["original_name"].(string)
		}
	}
	ppages, err := ports.List(c.Network, ports.ListOpts{Name: mark}).AllPages(ctx)
	must(t, err)
	pl, err := ports.ExtractPorts(ppages)
	must(t, err)
	for _, p := range pl {
		st.PortID = p.ID
		for _, ip := range p.FixedIPs {
			st.FixedIPs = append(st.FixedIPs, ip.IPAddress)
		}
	}
	fpages, err := floatingips.List(c.Network, floatingips.ListOpts{}).AllPages(ctx)
	must(t, err)
	fl, err := floatingips.ExtractFloatingIPs(fpages)
	must(t, err)
	for _, f := range fl {
		if f.Description == mark {
			st.FloatingIP, st.FloatingPort = f.FloatingIP, f.PortID
		}
	}
	return st
}

// jsonLine renders v for a log line.
func jsonLine(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

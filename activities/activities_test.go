package activities_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// recorder is a StatePublisher that keeps what was published.
type recorder struct{ sent []string }

func (r *recorder) Send(_ context.Context, topic string, key, _ []byte) error {
	r.sent = append(r.sent, topic+"/"+string(key))
	return nil
}

func newActivities(t *testing.T, cfg openstacksim.Config) (*activities.Activities, *openstacksim.Sim) {
	t.Helper()
	a, sim, _ := newRecordedActivities(t, cfg)
	return a, sim
}

func newRecordedActivities(t *testing.T, cfg openstacksim.Config) (*activities.Activities, *openstacksim.Sim, *recorder) {
	t.Helper()
	sim := openstacksim.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	clients, err := openstack.ConnectWith(context.Background(), sim.AuthOptions(srv.URL), gophercloud.EndpointOpts{Region: sim.Region()})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return activities.New(clients, cloudservers.DefaultCatalog(), rec), sim, rec
}

// A retried create finds what the first attempt made: one port, one
// server, one floating IP, however often the activity runs.
func TestCreatesAreIdempotent(t *testing.T) {
	a, sim, rec := newRecordedActivities(t, openstacksim.Config{})
	ctx := context.Background()
	var ports []activities.Port
	for range 3 {
		p, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: "s1", CustomerID: "c1", Region: "region-one"})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	if ports[0].ID == "" || ports[0].IP == "" || ports[1] != ports[0] || ports[2] != ports[0] {
		t.Fatalf("ports: %+v", ports)
	}
	var actions []activities.NovaAction
	for range 2 {
		act, err := a.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: "s1", CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: ports[0].ID})
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, act)
	}
	if actions[0].InstanceID == "" || actions[0].RequestID == "" || actions[1].InstanceID != actions[0].InstanceID {
		t.Fatalf("servers: %+v", actions)
	}
	// Each attempt (re)publishes which server the instance belongs to,
	// for the notifications that carry only its UUID.
	mapping := cloudservers.TopicInstances + "/" + actions[0].InstanceID
	if want := []string{mapping, mapping}; !slices.Equal(rec.sent, want) {
		t.Fatalf("published %v, want %v", rec.sent, want)
	}
	var fips []activities.FloatingIP
	for range 2 {
		f, err := a.AllocateFloatingIP(ctx, activities.AllocateFloatingIPInput{ServerID: "s1", Region: "region-one"})
		if err != nil {
			t.Fatal(err)
		}
		fips = append(fips, f)
	}
	if fips[0].ID == "" || fips[1] != fips[0] {
		t.Fatalf("floating IPs: %+v", fips)
	}
	calls := sim.Calls()
	for tmpl, want := range map[string]int{
		"POST /network/v2.0/ports":       1,
		"POST /compute/v2.1/servers":     1,
		"POST /network/v2.0/floatingips": 1,
	} {
		if got := calls.Count(tmpl); got != want {
			t.Errorf("%s: %d calls, want %d", tmpl, got, want)
		}
	}
	inv := sim.Inventory()
	if len(inv.Servers) != 1 || len(inv.FloatingIPs) != 1 {
		t.Fatalf("inventory: %d servers, %d floating IPs", len(inv.Servers), len(inv.FloatingIPs))
	}
}

// Deleting what is already gone succeeds, and says there is nothing to
// wait for.
func TestDeletesOfWhatIsGoneSucceed(t *testing.T) {
	a, _ := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	missing := "0b5c3a5e-9d8c-4f1e-8a53-3c1f0e2d4b6a"
	act, err := a.DeleteNovaServer(ctx, missing)
	if err != nil || !act.AlreadyDone {
		t.Fatalf("DeleteNovaServer of a missing server: %+v, %v", act, err)
	}
	if err := a.DeletePort(ctx, missing); err != nil {
		t.Fatalf("DeletePort of a missing port: %v", err)
	}
	if err := a.ReleaseFloatingIP(ctx, missing); err != nil {
		t.Fatalf("ReleaseFloatingIP of a missing floating IP: %v", err)
	}
	if err := a.DisassociateFloatingIP(ctx, missing); err != nil {
		t.Fatalf("DisassociateFloatingIP of a missing floating IP: %v", err)
	}
	s, err := a.GetNovaServer(ctx, missing)
	if err != nil || s.Status != "DELETED" {
		t.Fatalf("GetNovaServer of a missing server: %+v, %v", s, err)
	}
}

// Failures a retry cannot fix are non-retryable and typed; the others are
// left to the retry policy. Every message names the call and the resource.
func TestErrorsAreClassified(t *testing.T) {
	cases := []struct {
		name      string
		fault     openstacksim.HTTPFault
		wantType  string
		retryable bool
	}{
		{"quota", openstacksim.HTTPFault{Method: "POST", Path: "/compute/v2.1/servers", Status: 403, Message: "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}, activities.ErrQuotaExceeded, false},
		{"bad request", openstacksim.HTTPFault{Method: "POST", Path: "/compute/v2.1/servers", Status: 400, Message: "Invalid flavorRef provided."}, activities.ErrInvalidRequest, false},
		{"server error", openstacksim.HTTPFault{Method: "POST", Path: "/compute/v2.1/servers", Status: 500}, "", true},
		{"conflict", openstacksim.HTTPFault{Method: "POST", Path: "/compute/v2.1/servers", Status: 409}, activities.ErrConflict, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, sim := newActivities(t, openstacksim.Config{})
			tc.fault.Count = 1
			sim.Faults().AddHTTP(tc.fault)
			_, err := a.CreateNovaServer(context.Background(), activities.CreateNovaServerInput{ServerID: "s2", CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: "p"})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "create Nova server cs-s2 for server s2") {
				t.Errorf("message does not name the call and resource: %v", err)
			}
			var app *temporal.ApplicationError
			if tc.wantType == "" {
				if errors.As(err, &app) && app.NonRetryable() {
					t.Fatalf("want a retryable error, got %v", err)
				}
				return
			}
			if !errors.As(err, &app) || app.Type() != tc.wantType {
				t.Fatalf("want an ApplicationError of type %s, got %v", tc.wantType, err)
			}
			if app.NonRetryable() == tc.retryable && tc.wantType != activities.ErrConflict {
				t.Fatalf("retryable=%v, want %v", !app.NonRetryable(), tc.retryable)
			}
		})
	}
}

// An action on an instance already where the action leads is done, not a
// conflict: a retry of a stop that succeeded must not fail the saga.
func TestActionAlreadyDone(t *testing.T) {
	a, sim := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	port, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: "s3", CustomerID: "c1", Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	act, err := a.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: "s3", CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: port.ID})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, act.InstanceID, "ACTIVE")
	first, err := a.StopNovaServer(ctx, act.InstanceID)
	if err != nil || first.AlreadyDone {
		t.Fatalf("first stop: %+v, %v", first, err)
	}
	waitStatus(t, a, act.InstanceID, "SHUTOFF")
	again, err := a.StopNovaServer(ctx, act.InstanceID)
	if err != nil || !again.AlreadyDone {
		t.Fatalf("second stop: %+v, %v", again, err)
	}
	_ = sim
}

// waitStatus is test code reading the simulator; the activities never poll.
func waitStatus(t *testing.T, a *activities.Activities, id, status string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := a.GetNovaServer(context.Background(), id)
		if err == nil && s.Status == status && s.TaskState == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s: %+v, %v; want %s", id, s, err, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The activities read clouds.yaml like every OpenStack tool.
func TestConnectFromCloudsYAML(t *testing.T) {
	sim := openstacksim.New(openstacksim.Config{})
	srv := httptest.NewServer(sim.Handler())
	defer func() { srv.Close(); sim.Close() }()
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(path, []byte(sim.CloudsYAML(srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", path)
	t.Setenv("OS_CLOUD", "openstacksim")
	clients, err := openstack.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if clients.Compute.Microversion != openstack.ComputeMicroversion || clients.Network == nil || clients.Image == nil {
		t.Fatalf("clients: %+v", clients)
	}
}

// A keypair is imported once, however many servers (or retries) use it,
// and a server boots with it.
func TestImportKeyPairIsIdempotent(t *testing.T) {
	a, sim := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	in := activities.ImportKeyPairInput{Name: "cs-key-k1", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvQ0mOfW4r2a1x9RkQq8vJ3p5c4wq9gZ3gq7o8h6Y1b test"}
	for range 2 {
		if err := a.ImportKeyPair(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if n := sim.Calls().Count("POST /compute/v2.1/os-keypairs"); n != 1 {
		t.Fatalf("%d keypair imports, want 1 (calls: %v)", n, sim.Calls().Counts)
	}
	port, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: "s4", CustomerID: "c1", Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: "s4", CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: port.ID, KeyName: in.Name}); err != nil {
		t.Fatalf("boot with the keypair: %v", err)
	}
}

// Failure messages carry OpenStack's sentence, not its JSON or HTML.
func TestErrorMessagesAreReadable(t *testing.T) {
	cases := []struct {
		fault openstacksim.HTTPFault
		call  func(a *activities.Activities) error
		want  string
	}{
		{openstacksim.HTTPFault{Method: "POST", Path: "/network/v2.0/ports", Status: 400, Message: "Invalid input for fixed_ips."},
			func(a *activities.Activities) error {
				_, err := a.CreatePort(context.Background(), activities.CreatePortInput{ServerID: "s5", CustomerID: "c", Region: "region-one"})
				return err
			}, "OpenStack answered 400: Invalid input for fixed_ips."},
		{openstacksim.HTTPFault{Method: "GET", Path: "/image/v2/images", Status: 400, Message: "bad marker"},
			func(a *activities.Activities) error {
				_, err := a.CreateNovaServer(context.Background(), activities.CreateNovaServerInput{ServerID: "s5", CustomerID: "c", Size: "s-1vcpu-64mb", Image: "tiny", PortID: "p"})
				return err
			}, "OpenStack answered 400: "},
	}
	for _, tc := range cases {
		a, sim := newActivities(t, openstacksim.Config{})
		tc.fault.Count = 1
		sim.Faults().AddHTTP(tc.fault)
		err := tc.call(a)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "{<") {
			t.Errorf("error %q, want it to contain %q and no JSON or HTML", err, tc.want)
		}
	}
}

// Associate then disassociate: the floating IP ends with no port (the
// request carries an explicit null, which every Neutron reads the same).
func TestDisassociateFloatingIP(t *testing.T) {
	a, sim := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	port, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: "s6", CustomerID: "c1", Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	fip, err := a.AllocateFloatingIP(ctx, activities.AllocateFloatingIPInput{ServerID: "s6", Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AssociateFloatingIP(ctx, activities.AssociateFloatingIPInput{FloatingIPID: fip.ID, PortID: port.ID}); err != nil {
		t.Fatal(err)
	}
	portOf := func() string {
		for _, f := range sim.Inventory().FloatingIPs {
			if f.ID == fip.ID {
				return f.PortID
			}
		}
		t.Fatalf("floating IP %s gone", fip.ID)
		return ""
	}
	if got := portOf(); got != port.ID {
		t.Fatalf("after associate: port %q, want %q", got, port.ID)
	}
	if err := a.DisassociateFloatingIP(ctx, fip.ID); err != nil {
		t.Fatal(err)
	}
	if got := portOf(); got != "" {
		t.Fatalf("after disassociate: still on port %q", got)
	}
}

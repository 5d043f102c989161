package main

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

// fakeCloud is the API on a fake Kafka whose "lifecycle" runs every
// request it receives through its statuses, as the workflows would.
type fakeCloud struct {
	mu       sync.Mutex
	rm       *api.ReadModel
	offsets  map[string]int64
	requests chan cloudservers.Request
	servers  map[string]cloudservers.Server
}

func (f *fakeCloud) Send(ctx context.Context, topic string, key, value []byte) error {
	h := fnv.New32a()
	h.Write(key)
	return f.SendToPartition(ctx, topic, int32(h.Sum32()%3), key, value)
}

func (f *fakeCloud) SendToPartition(_ context.Context, topic string, partition int32, key, value []byte) error {
	f.mu.Lock()
	tp := topic + string(rune('0'+partition))
	off := f.offsets[tp]
	f.offsets[tp]++
	f.mu.Unlock()
	// The read model materializes requests too (their initial state), as
	// the API's consumer would.
	err := f.rm.ApplyRecord(topic, partition, off, key, value)
	if topic == cloudservers.TopicRequests {
		var r cloudservers.Request
		_ = json.Unmarshal(value, &r)
		f.requests <- r
	}
	return err
}

func (f *fakeCloud) publish(v any) {
	b, _ := json.Marshal(v)
	switch x := v.(type) {
	case cloudservers.Server:
		_ = f.Send(context.Background(), cloudservers.TopicServers, []byte(x.ID), b)
	case cloudservers.Operation:
		_ = f.Send(context.Background(), cloudservers.TopicOperations, []byte(x.ID), b)
	}
}

// lifecycle runs each request: running, then done after a short while.
func (f *fakeCloud) lifecycle(ctx context.Context, t *testing.T) {
	var version int64 = 1
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-f.requests:
			srv, _ := f.rm.Server(r.ServerID)
			op, _ := f.rm.Operation(r.OperationID)
			// The statuses of the operations table, as the lifecycle
			// applies them.
			def, _ := cloudservers.LookupOperation(r.Operation)
			running, done := srv.Status, def.SucceededStatus(srv.Status)
			if def.Running != "" {
				running = def.Running
			}
			if r.Operation == cloudservers.OpRename {
				var p cloudservers.RenameParams
				_ = json.Unmarshal(r.Params, &p)
				srv.Name = p.Name
			}
			time.Sleep(50 * time.Millisecond)
			version++
			srv.Status, srv.OperationID, srv.Version = running, op.ID, version
			op.Status, op.Version = cloudservers.OperationRunning, version
			f.publish(srv)
			f.publish(op)
			time.Sleep(100 * time.Millisecond)
			version++
			srv.Status, srv.OperationID, srv.Version = done, "", version
			if done == cloudservers.StatusActive {
				srv.PublicIPv4, srv.PrivateIPv4 = "172.24.4.9", "10.0.0.9"
			}
			now := time.Now()
			op.Status, op.Version, op.CompletedAt = cloudservers.OperationSucceeded, version, &now
			f.publish(srv)
			f.publish(op)
		}
	}
}

func startFakeCloud(t *testing.T) (base, key string) {
	t.Helper()
	f := &fakeCloud{rm: api.NewReadModel(), offsets: map[string]int64{}, requests: make(chan cloudservers.Request, 16)}
	s := api.New(api.Config{Catalog: cloudservers.DefaultCatalog(), RateLimit: 1000, RateBurst: 1000}, nil, f.rm, nil, f, f)
	secret, rec, _ := api.NewAPIKey("cli-customer", "test", false, time.Now())
	b, _ := json.Marshal(rec)
	_ = f.Send(context.Background(), cloudservers.TopicAPIKeys, []byte(rec.Hash), b)
	f.rm.MarkCaughtUp()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.lifecycle(ctx, t)
	}()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Shutdown()
		srv.Close()
		cancel()
		wg.Wait()
	})
	return srv.URL, secret
}

func cliRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runCLI(context.Background(), args, &out)
	return out.String(), err
}

func TestCLIServerLifecycle(t *testing.T) {
	base, key := startFakeCloud(t)
	conn := []string{"-api", base, "-key", key}

	out, err := cliRun(t, append(conn, "create", "-name", "web-1", "-wait")...)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	// The transitions are printed as they happen, in order.
	for _, want := range []string{"accepted: create operation", "operation pending", "server    queued", "server    creating", "operation running", "server    active  public 172.24.4.9", "operation succeeded", "create succeeded in"} {
		i := strings.Index(out, want)
		if i < 0 {
			t.Fatalf("create -wait output lacks %q:\n%s", want, out)
		}
		out = out[i:]
	}

	out, err = cliRun(t, append(conn, "list")...)
	if err != nil || !strings.Contains(out, "web-1") || !strings.Contains(out, "active") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = cliRun(t, append(conn, "get", "web-1", "-json")...)
	var sv api.ServerView
	if err != nil || json.Unmarshal([]byte(out), &sv) != nil || sv.Status != "active" || sv.PublicIPv4 != "172.24.4.9" {
		t.Fatalf("get -json: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"reboot", "web-1", "-hard", "-wait"},
		{"power-off", sv.ID, "-wait"},
		{"power-on", "web-1", "-wait"},
		{"resize", "web-1", "-size", "s-1vcpu-128mb", "-wait"},
		{"rebuild", "web-1", "-image", "tiny", "-wait"},
		{"rename", "web-1", "-name", "web-9", "-wait"},
	} {
		out, err := cliRun(t, append(conn, args...)...)
		if err != nil || !strings.Contains(out, "succeeded in") {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	out, err = cliRun(t, append(conn, "operations", "web-9")...)
	if err != nil || strings.Count(out, "succeeded") != 7 {
		t.Fatalf("operations: %v\n%s", err, out)
	}
	out, err = cliRun(t, append(conn, "delete", "web-9")...)
	if err != nil || !strings.Contains(out, "accepted: delete operation") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	opID := strings.Fields(out)[3]
	out, err = cliRun(t, append(conn, "wait", opID)...)
	if err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("wait: %v\n%s", err, out)
	}
}

func TestCLIErrorsAndKeys(t *testing.T) {
	base, key := startFakeCloud(t)
	conn := []string{"-api", base, "-key", key}
	_, err := cliRun(t, append(conn, "create", "-name", "x", "-size", "huge")...)
	if err == nil || !strings.Contains(err.Error(), "validation_failed") || !strings.Contains(err.Error(), "[size]") {
		t.Errorf("bad size: %v", err)
	}
	if _, err := cliRun(t, "-api", base, "-key", "cs_wrong", "list"); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("bad key: %v", err)
	}
	if _, err := cliRun(t, append(conn, "get", "nothing")...); err == nil {
		t.Error("get of no server succeeded")
	}
	if _, err := cliRun(t, append(conn, "frobnicate")...); err == nil {
		t.Error("unknown command accepted")
	}

	pub := filepath.Join(t.TempDir(), "id.pub")
	os.WriteFile(pub, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop\n"), 0o600)
	out, err := cliRun(t, append(conn, "keys", "add", "-name", "laptop", "-file", pub)...)
	if err != nil || !strings.Contains(out, "SHA256:") {
		t.Fatalf("keys add: %v\n%s", err, out)
	}
	out, err = cliRun(t, append(conn, "keys", "list")...)
	if err != nil || !strings.Contains(out, "laptop") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	out, err = cliRun(t, append(conn, "create", "-name", "with-key", "-ssh-key", "laptop", "-wait")...)
	if err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("create with key: %v\n%s", err, out)
	}
	if out, err = cliRun(t, append(conn, "keys", "delete", "laptop")...); err != nil {
		t.Fatalf("keys delete: %v\n%s", err, out)
	}
	if _, err = cliRun(t, append(conn, "keys", "get", "laptop")...); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("keys get after delete: %v", err)
	}
	for _, c := range []string{"sizes", "images", "regions"} {
		if out, err := cliRun(t, append(conn, c)...); err != nil || len(strings.Split(out, "\n")) < 3 {
			t.Errorf("%s: %v\n%s", c, err, out)
		}
	}
}

func TestCLIEndpointsFile(t *testing.T) {
	base, key := startFakeCloud(t)
	path := filepath.Join(t.TempDir(), "endpoints.json")
	b, _ := json.Marshal(DevEndpoints{API: base, Customers: []DemoCustomer{{CustomerID: "other", APIKey: "cs_x"}, {CustomerID: "cli-customer", APIKey: key}}})
	os.WriteFile(path, b, 0o600)
	t.Setenv("CLOUDSERVERS_API", "")
	t.Setenv("CLOUDSERVERS_API_KEY", "")
	if out, err := cliRun(t, "-endpoints", path, "-customer", "cli-customer", "list"); err != nil {
		t.Errorf("by customer ID: %v %s", err, out)
	}
	if out, err := cliRun(t, "sizes", "-endpoints", path, "-customer", "1"); err != nil {
		t.Errorf("by index: %v %s", err, out)
	}
	if _, err := cliRun(t, "list", "-endpoints", filepath.Join(t.TempDir(), "none.json")); err == nil || !strings.Contains(err.Error(), "make run") {
		t.Errorf("no endpoints file: %v", err)
	}
}

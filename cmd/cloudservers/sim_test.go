package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startSim runs `sim` with args until the returned stop is called; it
// returns the simulator's URL and stop, which gives runSim's error.
func startSim(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- runSim(ctx, append([]string{"-listen", "127.0.0.1:0", "-kafka", "", "-ready-file", ready}, args...))
	}()
	stop := func() error {
		cancel()
		return <-errc
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(ready); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b)), stop
		}
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("sim exited: %v", err)
		default:
		}
	}
	_ = stop()
	t.Fatal("sim not ready")
	return "", nil
}

// simCall sends one authenticated request to the simulator's Nova.
func simCall(t *testing.T, base, method, path, body string) int {
	t.Helper()
	auth := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":"secret","domain":{"name":"Default"}}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}`
	resp, err := http.Post(base+"/identity/v3/auth/tokens", "application/json", strings.NewReader(auth))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(method, base+"/compute/v2.1"+path, strings.NewReader(body))
	req.Header.Set("X-Auth-Token", resp.Header.Get("X-Subject-Token"))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSimStateFile: `sim -state-file` keeps the cloud across a stop and a
// start, and refuses to start on a corrupt file.
func TestSimStateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "openstacksim", "state.json")
	base, stop := startSim(t, "-state-file", file)
	if st := simCall(t, base, "POST", "/os-keypairs", `{"keypair":{"name":"kept"}}`); st != 200 {
		t.Fatalf("create keypair: %d", st)
	}
	if err := stop(); err != nil && err != context.Canceled {
		t.Fatalf("sim: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no state file after stop: %v", err)
	}
	base, stop = startSim(t, "-state-file", file)
	if st := simCall(t, base, "GET", "/os-keypairs/kept", ""); st != 200 {
		t.Errorf("keypair after restart: %d, want 200", st)
	}
	_ = stop()

	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runSim(context.Background(), []string{"-listen", "127.0.0.1:0", "-kafka", "", "-state-file", file})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("sim on a corrupt state file: %v, want an error naming it", err)
	}
}

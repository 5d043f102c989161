package openstacksim

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

func TestKeystoneRejectsBadCredentials(t *testing.T) {
	e := newEnv(t, Config{})
	for name, body := range map[string]any{
		"bad password": replacePassword(capture(t, "01").Request.Body, "wrong"),
		"bad project": map[string]any{"auth": map[string]any{
			"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
				"name": "admin", "password": "secret", "domain": map[string]any{"name": "Default"}}}},
			"scope": map[string]any{"project": map[string]any{"name": "nope", "domain": map[string]any{"name": "Default"}}}}},
	} {
		st, hdr, resp := e.do("POST", "/identity/v3/auth/tokens", body, nil)
		if st != 401 || hdr.Get("X-Subject-Token") != "" || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", name, st, hdr)
		}
		want := map[string]any{"error": map[string]any{"code": 401.0, "title": "Unauthorized",
			"message": "The request you have made requires authentication."}}
		if !jsonEqual(resp, want) {
			t.Errorf("%s: body %v", name, resp)
		}
	}
	if st, _, _ := e.do("POST", "/identity/v3/auth/tokens", "{not json", nil); st != 400 {
		t.Errorf("malformed: %d", st)
	}
	_, err := openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: e.srv.URL + "/identity/v3", Username: "admin", Password: "x", DomainName: "Default", TenantName: "admin"})
	if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Errorf("gophercloud with a bad password: %v", err)
	}
}

func TestBadTokenIsRejectedEverywhere(t *testing.T) {
	e := newEnv(t, Config{})
	for _, path := range []string{"/compute/v2.1/servers", "/network/v2.0/ports", "/image/v2/images", "/identity/v3/auth/catalog"} {
		st, hdr, body := e.do("GET", path, nil, map[string]string{"X-Auth-Token": "gAAAAABnope"})
		if st != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", path, st, body)
		}
	}
}

// TestTokenExpiryReauthenticates: an expired token gets 401 and
// gophercloud, with AllowReauth, logs in again and retries.
func TestTokenExpiryReauthenticates(t *testing.T) {
	e := newEnv(t, Config{TokenTTL: 150 * time.Millisecond})
	ctx := context.Background()
	old := e.pc.Token()
	time.Sleep(200 * time.Millisecond)
	e.sim.ResetCalls()
	if _, err := flavors.Get(ctx, e.compute, tinyFlavor).Extract(); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	calls := e.sim.Calls()
	if calls.Count("GET /compute/v2.1/flavors/{id}") != 2 || calls.Count("POST /identity/v3/auth/tokens") != 1 {
		t.Errorf("calls %v: want a 401, a new token and the retry", calls.Counts)
	}
	if e.pc.Token() == old {
		t.Error("token not renewed")
	}
	// The same through the admin API's expiry.
	e.sim.ExpireTokens()
	if _, err := flavors.Get(ctx, e.compute, tinyFlavor).Extract(); err != nil {
		t.Fatalf("after ExpireTokens: %v", err)
	}
}

func TestTokenValidation(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	id, err := openstack.NewIdentityV3(e.pc, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Get(ctx, id, e.pc.Token()).ExtractToken()
	if err != nil || tok.ID != e.pc.Token() {
		t.Fatalf("tokens.Get = %+v, %v", tok, err)
	}
	if err := tokens.Get(ctx, id, "nope").Err; !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("unknown token: %v", err)
	}
}

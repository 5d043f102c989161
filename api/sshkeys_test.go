package api_test

import (
	"crypto/dsa" //nolint:staticcheck // only to prove DSA keys are refused
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

// testKeys are ed25519 public keys in authorized_keys form.
var testKeys = func() []string {
	var out []string
	for i := range 4 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		pub := ed25519.NewKeyFromSeed(seed).Public()
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			panic(err)
		}
		out = append(out, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))+" me@laptop")
	}
	return out
}()

func authorizedKey(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestSSHKeys(t *testing.T) {
	e := newEnv(t, api.Config{MaxSSHKeys: 3})
	r := e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "laptop", "public_key": "  " + testKeys[0] + "\n"}})
	var k api.SSHKeyView
	expect(t, r, 201, "", &k)
	pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(testKeys[0]))
	if k.Name != "laptop" || k.Type != "ssh-ed25519" || k.Fingerprint != ssh.FingerprintSHA256(pub) || k.FingerprintMD5 != ssh.FingerprintLegacyMD5(pub) ||
		k.PublicKey != testKeys[0] || k.Links.Self != "/v1/ssh_keys/"+k.ID || r.Header().Get("Location") != k.Links.Self {
		t.Errorf("key %+v", k)
	}
	if recs := e.kafka.records(api.TopicSSHKeys); len(recs) != 1 || string(recs[0].key) != k.ID {
		t.Errorf("records %+v", recs)
	}

	// Get by ID and by name; another customer sees nothing.
	var got api.SSHKeyView
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/" + k.ID, key: e.alice}), 200, "", &got)
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/laptop", key: e.alice}), 200, "", &got)
	if got.ID != k.ID {
		t.Errorf("by name: %+v", got)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/" + k.ID, key: e.bob}), 404, api.CodeNotFound, nil)
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/laptop", key: e.bob}), 404, api.CodeNotFound, nil)
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/-bad-", key: e.alice}), 400, api.CodeInvalidRequest, nil, "id")
	expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/a%20b", key: e.alice}), 400, api.CodeInvalidRequest, nil, "id")
	expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/" + k.ID, key: e.bob}), 404, api.CodeNotFound, nil)
	// Bob may use the same name and even the same key.
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.bob, body: map[string]any{"name": "laptop", "public_key": testKeys[0]}}), 201, "", nil)

	// Duplicates, quota.
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "laptop", "public_key": testKeys[1]}}), 409, api.CodeAlreadyExists, nil, "name")
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "other", "public_key": testKeys[0]}}), 409, api.CodeAlreadyExists, nil, "public_key")
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "k2", "public_key": testKeys[1]}}), 201, "", nil)
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "k3", "public_key": testKeys[2]}}), 201, "", nil)
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "k4", "public_key": testKeys[3]}}), 403, api.CodeQuotaExceeded, nil)

	// List, paginated.
	var l api.SSHKeyList
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys?page_size=2", key: e.alice}), 200, "", &l)
	if len(l.SSHKeys) != 2 || l.SSHKeys[0].Name != "laptop" || l.Next == "" {
		t.Fatalf("page 1 %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: l.Next, key: e.alice}), 200, "", &l)
	if len(l.SSHKeys) != 1 || l.SSHKeys[0].Name != "k3" || l.Next != "" {
		t.Errorf("page 2 %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys", key: e.bob}), 200, "", &l)
	if len(l.SSHKeys) != 1 {
		t.Errorf("bob's keys %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys?page_size=0", key: e.alice}), 400, api.CodeInvalidRequest, nil, "page_size")

	// A server created with the key by name (or ID) boots with its Nova
	// keypair; the saga gets the public key to make it.
	var op api.OperationView
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(validServer, "ssh_key", "laptop")}), 202, "", &op)
	reqs := e.kafka.records(cloudservers.TopicRequests)
	var kr cloudservers.Request
	_ = json.Unmarshal(reqs[len(reqs)-1].value, &kr)
	var p cloudservers.CreateParams
	_ = json.Unmarshal(kr.Params, &p)
	if p.KeyName != api.NovaKeyName(k.ID) || p.SSHKey != testKeys[0] {
		t.Errorf("create params %+v", p)
	}
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(withField(validServer, "name", "b"), "ssh_keys", []string{strings.ToUpper(k.ID)})}), 202, "", nil)
	// Bob cannot boot with Alice's key, not even by ID.
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.bob, body: withField(validServer, "ssh_keys", []string{k.ID})}), 422, api.CodeValidation, nil, "ssh_keys")

	// Delete, by name; then it is gone.
	r = e.do(req{method: "DELETE", path: "/v1/ssh_keys/laptop", key: e.alice})
	expect(t, r, 204, "", nil)
	if r.Body.Len() != 0 {
		t.Errorf("204 with a body: %q", r.Body)
	}
	recs := e.kafka.records(api.TopicSSHKeys)
	if last := recs[len(recs)-1]; last.value != nil || string(last.key) != k.ID {
		t.Errorf("deletion is not a tombstone: %+v", last)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys/" + k.ID, key: e.alice}), 404, api.CodeNotFound, nil)
	expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/" + k.ID, key: e.alice}), 404, api.CodeNotFound, nil)
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(withField(validServer, "name", "c"), "ssh_key", "laptop")}), 422, api.CodeValidation, nil, "ssh_key")

	// A replica that starts now reads the same keys from Kafka.
	rm := api.NewReadModel()
	e.kafka.replay(t, rm)
	if ks := rm.SSHKeys("alice"); len(ks) != 2 {
		t.Errorf("restarted replica has %d keys of alice", len(ks))
	}
}

func TestSSHKeyValidation(t *testing.T) {
	e := newEnv(t, api.Config{})
	rsaSmall, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaOK, _ := rsa.GenerateKey(rand.Reader, 2048)
	p := new(big.Int).Lsh(big.NewInt(1), 1023)
	p.Add(p, big.NewInt(1))
	q := new(big.Int).Lsh(big.NewInt(1), 159)
	q.Add(q, big.NewInt(1))
	dsaKey := &dsa.PublicKey{Parameters: dsa.Parameters{P: p, Q: q, G: big.NewInt(2)}, Y: big.NewInt(3)}

	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "rsa", "public_key": authorizedKey(t, &rsaOK.PublicKey)}}), 201, "", nil)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		fields []string
	}{
		{"not a key", map[string]any{"name": "a", "public_key": "hello"}, 422, api.CodeValidation, []string{"public_key"}},
		{"empty key", map[string]any{"name": "a", "public_key": ""}, 422, api.CodeValidation, []string{"public_key"}},
		{"private key", map[string]any{"name": "a", "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----"}, 422, api.CodeValidation, []string{"public_key"}},
		{"truncated", map[string]any{"name": "a", "public_key": testKeys[0][:40]}, 422, api.CodeValidation, []string{"public_key"}},
		{"options", map[string]any{"name": "a", "public_key": `command="/bin/true" ` + testKeys[0]}, 422, api.CodeValidation, []string{"public_key"}},
		{"two keys", map[string]any{"name": "a", "public_key": testKeys[0] + "\n" + testKeys[1]}, 422, api.CodeValidation, []string{"public_key"}},
		{"small RSA", map[string]any{"name": "a", "public_key": authorizedKey(t, &rsaSmall.PublicKey)}, 422, api.CodeValidation, []string{"public_key"}},
		{"DSA", map[string]any{"name": "a", "public_key": authorizedKey(t, dsaKey)}, 422, api.CodeValidation, []string{"public_key"}},
		{"huge", map[string]any{"name": "a", "public_key": "ssh-ed25519 " + strings.Repeat("A", 20000)}, 422, api.CodeValidation, []string{"public_key"}},
		{"bad name", map[string]any{"name": "my key", "public_key": testKeys[1]}, 422, api.CodeValidation, []string{"name"}},
		{"empty name", map[string]any{"name": "", "public_key": testKeys[1]}, 422, api.CodeValidation, []string{"name"}},
		{"UUID name", map[string]any{"name": "0193a0e4-0000-7000-8000-000000000000", "public_key": testKeys[1]}, 422, api.CodeValidation, []string{"name"}},
		{"both bad", map[string]any{"name": "", "public_key": ""}, 422, api.CodeValidation, []string{"name", "public_key"}},
		{"unknown field", map[string]any{"name": "a", "public_key": testKeys[1], "type": "rsa"}, 400, api.CodeInvalidRequest, []string{"type"}},
		{"wrong type", map[string]any{"name": "a", "public_key": 12}, 400, api.CodeInvalidRequest, []string{"public_key"}},
		{"not JSON", "name=a", 400, api.CodeInvalidRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: tc.body}), tc.status, tc.code, nil, tc.fields...)
		})
	}
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "a", "public_key": testKeys[1]}, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}), 415, api.CodeUnsupportedMedia, nil)
}

func TestSSHKeyTopicMissing(t *testing.T) {
	// Until the SSH key topic exists, the rest of the API works and SSH key
	// writes answer 503.
	e := newEnv(t, api.Config{})
	e.kafka.failTopic(api.TopicSSHKeys, errKafkaDown)
	expect(t, e.do(req{method: "GET", path: "/v1/ssh_keys", key: e.alice}), 200, "", nil)
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "a", "public_key": testKeys[1]}}), 503, api.CodeUnavailable, nil)
	e.create(e.alice, "a")
}

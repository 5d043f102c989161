package openstacksim

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Nova keypairs (os-keypairs): import or generate, get, list, delete.

type keypair struct {
	id                      int
	name, publicKey, fprint string
	typ                     string
	created                 time.Time
}

var keypairNameRe = regexp.MustCompile(`^[a-zA-Z0-9 _.@-]+$`)

func (s *Sim) keypairView(k *keypair, c *novaCall, full bool) map[string]any {
	v := map[string]any{"name": k.name, "public_key": k.publicKey, "fingerprint": k.fprint}
	if c.mv.atLeast(2) {
		v["type"] = k.typ
	}
	if full {
		v["user_id"] = s.cfg.UserID
		v["id"] = k.id
		v["created_at"] = k.created.Format(isoMicro)
		v["deleted"] = false
		v["deleted_at"] = nil
		v["updated_at"] = nil
	}
	return v
}

func (s *Sim) listKeypairs(w http.ResponseWriter, r *http.Request, c *novaCall) {
	s.mu.Lock()
	names := make([]string, 0, len(s.keypairs))
	for n := range s.keypairs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]any, 0, len(names))
	for _, n := range names {
		out = append(out, map[string]any{"keypair": s.keypairView(s.keypairs[n], c, false)})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"keypairs": out})
}

func (s *Sim) getKeypair(w http.ResponseWriter, r *http.Request, c *novaCall) {
	name := r.PathValue("name")
	s.mu.Lock()
	k := s.keypairs[name]
	var v map[string]any
	if k != nil {
		v = s.keypairView(k, c, true)
	}
	s.mu.Unlock()
	if k == nil {
		novaError(w, http.StatusNotFound, "Keypair "+name+" not found for user "+s.cfg.UserID)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypair": v})
}

func (s *Sim) deleteKeypair(w http.ResponseWriter, r *http.Request, c *novaCall) {
	name := r.PathValue("name")
	s.mu.Lock()
	_, ok := s.keypairs[name]
	delete(s.keypairs, name)
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, "Keypair "+name+" not found for user "+s.cfg.UserID)
		return
	}
	if c.mv.atLeast(2) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sim) createKeypair(w http.ResponseWriter, r *http.Request, c *novaCall) {
	raw, body, ok := readNovaBody(w, r)
	if !ok {
		return
	}
	kp, isObj := body["keypair"].(map[string]any)
	if !isObj {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute keypair. Value: "+pyRepr(rawField(raw, "keypair"))+". 'keypair' is a required property")
		return
	}
	repr := pyRepr(rawField(raw, "keypair"))
	name, _ := kp["name"].(string)
	if _, has := kp["name"]; !has {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute keypair. Value: "+repr+". 'name' is a required property")
		return
	}
	if name == "" || len(name) > 255 || !keypairNameRe.MatchString(name) {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute name. Value: "+name+". '"+name+"' does not match '^[a-zA-Z0-9 _.@-]+$'")
		return
	}
	pub, _ := kp["public_key"].(string)
	if pub == "" && c.mv.atLeast(92) {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute keypair. Value: "+repr+". 'public_key' is a required property")
		return
	}
	typ := "ssh"
	if t, _ := kp["type"].(string); t != "" && c.mv.atLeast(2) {
		typ = t
	}
	var private string
	if pub == "" {
		var err error
		pub, private, err = generateKeypair(name)
		if err != nil {
			novaError(w, http.StatusInternalServerError, "Unexpected API Error.")
			return
		}
	}
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		novaError(w, http.StatusBadRequest, "Keypair data is invalid: failed to generate fingerprint")
		return
	}
	s.mu.Lock()
	if _, dup := s.keypairs[name]; dup {
		s.mu.Unlock()
		novaError(w, http.StatusConflict, "Key pair '"+name+"' already exists.")
		return
	}
	s.seq++
	k := &keypair{id: s.seq, name: name, publicKey: strings.TrimSpace(pub), fprint: ssh.FingerprintLegacyMD5(parsed),
		typ: typ, created: now()}
	s.keypairs[name] = k
	v := s.keypairView(k, c, false)
	s.mu.Unlock()
	v["user_id"] = s.cfg.UserID
	if private != "" {
		v["private_key"] = private
	}
	code := http.StatusOK
	if c.mv.atLeast(2) {
		code = http.StatusCreated
	}
	writeJSON(w, code, map[string]any{"keypair": v})
}

// generateKeypair makes the key Nova generates when none is imported. Nova
// makes RSA keys; an ed25519 one is as usable and much cheaper.
func generateKeypair(comment string) (public, private string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	sshPub, err := ssh.NewPublicKey(pk)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return "", "", err
	}
	public = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " Generated-by-Nova"
	return public, string(pem.EncodeToMemory(block)), nil
}

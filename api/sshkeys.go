package api

import (
	"context"
	"crypto/rsa"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/cloudservers/cloudservers"
)

// TopicSSHKeys holds customers' SSH public keys: compacted, keyed by key
// ID; a deleted key is a tombstone.
const TopicSSHKeys = cloudservers.TopicSSHKeys

// NovaKeyName is the name of the Nova keypair a server boots with when it
// was created with the SSH key id (CreateParams.KeyName). Keypairs belong to
// the system's one OpenStack user, so the name carries the key's ID.
func NovaKeyName(id string) string { return cloudservers.NovaNamePrefix + "key-" + id }

// SSHKey is the stored record of a customer's SSH public key.
type SSHKey struct {
	ID             string    `json:"id"`
	CustomerID     string    `json:"customer_id"`
	Name           string    `json:"name"`
	PublicKey      string    `json:"public_key"` // one authorized_keys line, normalized
	Type           string    `json:"type"`
	Fingerprint    string    `json:"fingerprint"`     // SHA256:...
	FingerprintMD5 string    `json:"fingerprint_md5"` // aa:bb:..., as older tools show it
	CreatedAt      time.Time `json:"created_at"`
	Deleted        bool      `json:"deleted,omitempty"`
}

// SSHKeyView is an SSH key as customers see it.
type SSHKeyView struct {
	ID             string    `json:"id" example:"01937c3e-7f7c-7b6e-9a51-6a1f2b3c4d5e"`
	Name           string    `json:"name" example:"laptop"`
	PublicKey      string    `json:"public_key" example:"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"`
	Type           string    `json:"type" example:"ssh-ed25519"`
	Fingerprint    string    `json:"fingerprint" example:"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"`
	FingerprintMD5 string    `json:"fingerprint_md5" example:"d4:1d:8c:d9:8f:00:b2:04:e9:80:09:98:ec:f8:42:7e"`
	CreatedAt      time.Time `json:"created_at"`
	Links          Links     `json:"links"`
} // @name SSHKey

// CreateSSHKeyRequest is the body of POST /v1/ssh_keys.
type CreateSSHKeyRequest struct {
	Name      string `json:"name" example:"laptop"`                                                                                           // 1-64 letters, digits, dots, underscores, @ or hyphens, starting with a letter or digit
	PublicKey string `json:"public_key" example:"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"` // one OpenSSH authorized_keys line, without options
} // @name CreateSSHKeyRequest

// SSHKeyList is a page of SSH keys.
type SSHKeyList struct {
	SSHKeys []SSHKeyView `json:"ssh_keys"`
	Next    string       `json:"next,omitempty"` // link to the next page; absent on the last
} // @name SSHKeyList

var sshKeyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

const (
	maxPublicKeyLen = 16 << 10
	minRSABits      = 2048
)

func sshKeyView(k SSHKey) SSHKeyView {
	return SSHKeyView{ID: k.ID, Name: k.Name, PublicKey: k.PublicKey, Type: k.Type, Fingerprint: k.Fingerprint,
		FingerprintMD5: k.FingerprintMD5, CreatedAt: k.CreatedAt, Links: Links{Self: "/v1/ssh_keys/" + k.ID}}
}

// parsePublicKey checks one authorized_keys line and returns the key's
// normalized line, type and fingerprints; problem says what is wrong.
func parsePublicKey(line string) (k SSHKey, problem string) {
	if len(line) > maxPublicKeyLen {
		return k, fmt.Sprintf("public_key is over %d bytes", maxPublicKeyLen)
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return k, "public_key is not an OpenSSH public key (want one authorized_keys line such as \"ssh-ed25519 AAAA... me@laptop\")"
	}
	if len(options) > 0 {
		return k, "public_key must not carry authorized_keys options"
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return k, "public_key holds more than one key: add them one by one"
	}
	switch pub.Type() {
	case ssh.KeyAlgoDSA:
		return k, "DSA keys are not accepted (insecure): use ed25519, ECDSA or RSA of at least 2048 bits"
	case ssh.KeyAlgoRSA:
		if cpk, ok := pub.(ssh.CryptoPublicKey); ok {
			if rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
				return k, fmt.Sprintf("RSA keys must have at least %d bits, this one has %d", minRSABits, rk.N.BitLen())
			}
		}
	}
	norm := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment = strings.TrimSpace(comment); comment != "" {
		norm += " " + comment
	}
	return SSHKey{PublicKey: norm, Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub), FingerprintMD5: ssh.FingerprintLegacyMD5(pub)}, ""
}

// findSSHKey finds a customer's SSH key by ID or name.
func (s *Server) findSSHKey(customer, ref string) (SSHKey, bool) {
	if u, err := uuid.Parse(ref); err == nil && len(ref) == 36 {
		k, ok := s.rm.SSHKey(u.String())
		return k, ok && k.CustomerID == customer
	}
	for _, k := range s.rm.SSHKeys(customer) {
		if k.Name == ref {
			return k, true
		}
	}
	return SSHKey{}, false
}

// sshKeyRef checks the path parameter of the SSH key endpoints: an ID or a
// name.
func sshKeyRef(raw string) (string, error) {
	if u, err := uuid.Parse(raw); err == nil && len(raw) == 36 {
		return u.String(), nil
	}
	if !sshKeyNameRE.MatchString(raw) {
		return "", errorf(CodeInvalidRequest, fmt.Sprintf("%q is neither an SSH key ID (a UUID) nor an SSH key name", clip(raw)), "id")
	}
	return raw, nil
}

// createSSHKey godoc
//
//	@Summary		Add an SSH key
//	@Description	Stores an OpenSSH public key (ed25519, ECDSA, or RSA of at least 2048 bits) under a name. Create a server with it by ID or name (ssh_key). Names and keys are unique per customer. Answers 201 at once: there is nothing to provision.
//	@Tags			ssh_keys
//	@Accept			json
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			Idempotency-Key	header		string				false	"Makes retries safe: the same key and body return the original answer for 24 hours"
//	@Param			body			body		CreateSSHKeyRequest	true	"The key"
//	@Success		201				{object}	SSHKeyView
//	@Header			201				{string}	Location	"The new SSH key"
//	@Failure		400				{object}	Problem	"invalid_request"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		403				{object}	Problem	"quota_exceeded: too many SSH keys"
//	@Failure		409				{object}	Problem	"already_exists: the name or the key is taken"
//	@Failure		413				{object}	Problem	"request_too_large"
//	@Failure		415				{object}	Problem	"unsupported_media_type"
//	@Failure		422				{object}	Problem	"validation_failed: bad name or public_key; or idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/ssh_keys [post]
func (s *Server) createSSHKey(c *gin.Context) {
	var req CreateSSHKeyRequest
	_, idem, ok := s.openMutation(c, nil, &req)
	if !ok {
		return
	}
	customer := customerOf(c)
	var bad invalid
	if _, err := uuid.Parse(req.Name); !sshKeyNameRE.MatchString(req.Name) || err == nil {
		bad.add("name", "name must be 1-64 letters, digits, dots, underscores, @ or hyphens, starting with a letter or digit, and not a UUID")
	}
	k, problem := parsePublicKey(req.PublicKey)
	if problem != "" {
		bad.add("public_key", problem)
	}
	if err := bad.err(); err != nil {
		s.abort(c, err)
		return
	}
	k.ID, k.CustomerID, k.Name = idem.newID("ssh_key"), customer, req.Name
	if old, ok := s.rm.SSHKey(k.ID); ok && old.CustomerID == customer {
		// This very request was accepted before; its record was lost.
		s.respond(c, idem, http.StatusCreated, sshKeyView(old), "/v1/ssh_keys/"+old.ID)
		return
	}
	existing := s.rm.SSHKeys(customer)
	for _, o := range existing {
		if o.Name == k.Name {
			s.abort(c, errorf(CodeAlreadyExists, fmt.Sprintf("an SSH key named %q exists (%s)", o.Name, o.ID), "name"))
			return
		}
		if o.Fingerprint == k.Fingerprint {
			s.abort(c, errorf(CodeAlreadyExists, fmt.Sprintf("this public key exists as %q (%s)", o.Name, o.ID), "public_key"))
			return
		}
	}
	if len(existing) >= s.cfg.MaxSSHKeys {
		s.abort(c, errorf(CodeQuotaExceeded, fmt.Sprintf("SSH key quota exceeded: %d of %d in use; delete one first", len(existing), s.cfg.MaxSSHKeys)))
		return
	}
	k.CreatedAt = s.now().UTC()
	err := s.write(c, func(ctx context.Context) error {
		return s.state.Send(ctx, TopicSSHKeys, []byte(k.ID), mustJSON(k))
	})
	if err != nil {
		s.log.Error("SSH key not stored", "key", k.ID, "error", err)
		s.abort(c, unavailable(err))
		return
	}
	s.rm.acceptedSSHKey(k)
	s.respond(c, idem, http.StatusCreated, sshKeyView(k), "/v1/ssh_keys/"+k.ID)
}

// listSSHKeys godoc
//
//	@Summary		List SSH keys
//	@Description	Oldest first.
//	@Tags			ssh_keys
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			page_size	query		int		false	"1 to 100, default 20"	minimum(1)	maximum(100)
//	@Param			page_token	query		string	false	"From the previous page's next link"
//	@Success		200			{object}	SSHKeyList
//	@Failure		400			{object}	Problem	"invalid_request"
//	@Failure		401			{object}	Problem	"unauthorized"
//	@Failure		429			{object}	Problem	"rate_limited"
//	@Header			all			{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all			{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all			{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/ssh_keys [get]
func (s *Server) listSSHKeys(c *gin.Context) {
	q, err := query(c, "page_size", "page_token")
	if err != nil {
		s.abort(c, err)
		return
	}
	p, err := parsePage(q)
	if err != nil {
		s.abort(c, err)
		return
	}
	items, next := paginate(s.rm.SSHKeys(customerOf(c)), func(k SSHKey) (time.Time, string) { return k.CreatedAt, k.ID }, p, "/v1/ssh_keys", q)
	out := SSHKeyList{SSHKeys: make([]SSHKeyView, 0, len(items)), Next: next}
	for _, k := range items {
		out.SSHKeys = append(out.SSHKeys, sshKeyView(k))
	}
	c.JSON(http.StatusOK, out)
}

// getSSHKey godoc
//
//	@Summary	Get an SSH key
//	@Tags		ssh_keys
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"SSH key ID or name"
//	@Success	200	{object}	SSHKeyView
//	@Failure	400	{object}	Problem	"invalid_request: neither an ID nor a name"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	404	{object}	Problem	"not_found"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/ssh_keys/{id} [get]
func (s *Server) getSSHKey(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	k, err := s.ownSSHKey(c, true)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, sshKeyView(k))
}

// ownSSHKey resolves the path's SSH key, waiting for this replica to catch
// up when it is not found (it may have just been added elsewhere).
func (s *Server) ownSSHKey(c *gin.Context, syncOnMiss bool) (SSHKey, error) {
	ref, err := sshKeyRef(c.Param("id"))
	if err != nil {
		return SSHKey{}, err
	}
	k, ok := s.findSSHKey(customerOf(c), ref)
	if !ok && syncOnMiss {
		_ = s.sync(c)
		k, ok = s.findSSHKey(customerOf(c), ref)
	}
	if !ok {
		return SSHKey{}, errorf(CodeNotFound, fmt.Sprintf("SSH key %q not found", ref))
	}
	return k, nil
}

// deleteSSHKey godoc
//
//	@Summary		Delete an SSH key
//	@Description	Servers created with the key keep it.
//	@Tags			ssh_keys
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			id				path	string	true	"SSH key ID or name"
//	@Param			Idempotency-Key	header	string	false	"Makes retries safe: the same key returns the original answer for 24 hours"
//	@Success		204				"Deleted"
//	@Failure		400				{object}	Problem	"invalid_request"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		404				{object}	Problem	"not_found"
//	@Failure		422				{object}	Problem	"idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/ssh_keys/{id} [delete]
func (s *Server) deleteSSHKey(c *gin.Context) {
	k, idem, ok := mutationOf(s, c, sshKeyRef, nil, func(string) (SSHKey, error) {
		return s.ownSSHKey(c, false) // beginMutation synced
	})
	if !ok {
		return
	}
	err := s.write(c, func(ctx context.Context) error { return s.state.Send(ctx, TopicSSHKeys, []byte(k.ID), nil) })
	if err != nil {
		s.log.Error("SSH key not deleted", "key", k.ID, "error", err)
		s.abort(c, unavailable(err))
		return
	}
	k.Deleted = true
	s.rm.acceptedSSHKey(k)
	s.respond(c, idem, http.StatusNoContent, nil, "")
}

package openstack_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"

	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestCloudsYAMLCACert: a cloud behind TLS with a private CA (the
// simulator on an HTTPS server whose certificate no system root signs) is
// refused without clouds.yaml's cacert, naming the certificate problem,
// and reached with it; verify: false reaches it too.
func TestCloudsYAMLCACert(t *testing.T) {
	sim := openstacksim.New(openstacksim.Config{})
	srv := httptest.NewTLSServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	connect := func(extra string) error {
		t.Helper()
		path := filepath.Join(dir, "clouds.yaml")
		if err := os.WriteFile(path, []byte(sim.CloudsYAML(srv.URL)+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OS_CLIENT_CONFIG_FILE", path)
		t.Setenv("OS_CLOUD", "openstacksim")
		ctx := context.Background()
		c, err := openstack.Connect(ctx)
		if err != nil {
			return err
		}
		// Every service's calls use the same transport.
		_, err = flavors.ListDetail(c.Compute, nil).AllPages(ctx)
		return err
	}
	if err := connect(""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without cacert: %v, want a certificate error", err)
	}
	if err := connect("    cacert: " + ca + "\n"); err != nil {
		t.Fatalf("with cacert: %v", err)
	}
	if err := connect("    verify: false\n"); err != nil {
		t.Fatalf("with verify false: %v", err)
	}
}

// TestCloudsYAMLClientCert: a cloud that asks for a client certificate
// (mutual TLS) is refused without clouds.yaml's cert and key and reached
// with them.
func TestCloudsYAMLClientCert(t *testing.T) {
	dir := t.TempDir()
	// A CA of our own and a client certificate it signs.
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "cloudservers"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		caCert, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	sim := openstacksim.New(openstacksim.Config{})
	srv := httptest.NewUnstartedServer(sim.Handler())
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); sim.Close() })
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	connect := func(extra string) error {
		t.Helper()
		path := filepath.Join(dir, "clouds.yaml")
		if err := os.WriteFile(path, []byte(sim.CloudsYAML(srv.URL)+"    cacert: "+serverCA+"\n"+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OS_CLIENT_CONFIG_FILE", path)
		t.Setenv("OS_CLOUD", "openstacksim")
		_, err := openstack.Connect(context.Background())
		return err
	}
	if err := connect(""); err == nil {
		t.Fatal("reached a cloud that requires a client certificate without one")
	}
	if err := connect("    cert: " + certFile + "\n    key: " + keyFile + "\n"); err != nil {
		t.Fatalf("with cert and key: %v", err)
	}
}

// Package openstack connects to an OpenStack cloud the way every OpenStack
// tool does: from clouds.yaml (OS_CLOUD, OS_CLIENT_CONFIG_FILE) or from the
// OS_* environment variables.
package openstack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// ComputeMicroversion is the Nova API microversion the activities speak:
// tags on create (2.52) and the flavor embedded in servers (2.47).
const ComputeMicroversion = "2.79"

// Clients are the OpenStack service clients of one region.
type Clients struct {
	Compute *gophercloud.ServiceClient
	Network *gophercloud.ServiceClient
	Image   *gophercloud.ServiceClient
}

// Connect authenticates and returns the compute, network and image clients.
// With OS_CLOUD set, the cloud comes from clouds.yaml; otherwise from the
// OS_* variables. Every call has a timeout, and the token is renewed when it
// expires.
func Connect(ctx context.Context) (Clients, error) {
	var (
		auth     gophercloud.AuthOptions
		endpoint gophercloud.EndpointOpts
		tlsCfg   *tls.Config
		err      error
	)
	if os.Getenv("OS_CLOUD") != "" {
		// The TLS config carries clouds.yaml's cacert, verify, cert and
		// key (a private CA, client certificates).
		auth, endpoint, tlsCfg, err = clouds.Parse()
		if err != nil {
			return Clients{}, fmt.Errorf("read clouds.yaml for cloud %q: %w", os.Getenv("OS_CLOUD"), err)
		}
	} else {
		auth, err = gos.AuthOptionsFromEnv()
		if err != nil {
			return Clients{}, fmt.Errorf("OpenStack credentials: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL and friends: %w", err)
		}
		endpoint.Region = os.Getenv("OS_REGION_NAME")
	}
	return ConnectTLS(ctx, auth, endpoint, tlsCfg)
}

// ConnectWith authenticates with explicit options (tests point it at a
// simulator) and returns the clients.
func ConnectWith(ctx context.Context, auth gophercloud.AuthOptions, endpoint gophercloud.EndpointOpts) (Clients, error) {
	return ConnectTLS(ctx, auth, endpoint, nil)
}

// ConnectTLS is ConnectWith with a TLS configuration for every call (nil:
// the system's roots).
func ConnectTLS(ctx context.Context, auth gophercloud.AuthOptions, endpoint gophercloud.EndpointOpts, tlsCfg *tls.Config) (Clients, error) {
	auth.AllowReauth = true
	// Every call is a client span of the activity's trace (otelhttp), with
	// the W3C trace context in its headers; over clouds.yaml's TLS
	// settings when it has any.
	base := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		base.TLSClientConfig = tlsCfg
	}
	hc := http.Client{Timeout: 30 * time.Second, Transport: otelhttp.NewTransport(base,
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "openstack " + r.Method }))}
	provider, err := config.NewProviderClient(ctx, auth, config.WithHTTPClient(hc))
	if err != nil {
		return Clients{}, fmt.Errorf("authenticate with OpenStack at %s: %w", auth.IdentityEndpoint, err)
	}
	compute, err := gos.NewComputeV2(provider, endpoint)
	if err != nil {
		return Clients{}, fmt.Errorf("compute endpoint: %w", err)
	}
	compute.Microversion = ComputeMicroversion
	network, err := gos.NewNetworkV2(provider, endpoint)
	if err != nil {
		return Clients{}, fmt.Errorf("network endpoint: %w", err)
	}
	image, err := gos.NewImageV2(provider, endpoint)
	if err != nil {
		return Clients{}, fmt.Errorf("image endpoint: %w", err)
	}
	return Clients{Compute: compute, Network: network, Image: image}, nil
}

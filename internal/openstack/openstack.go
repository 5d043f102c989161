// Package openstack connects to an OpenStack cloud the way every OpenStack
// tool does: from clouds.yaml (OS_CLOUD, OS_CLIENT_CONFIG_FILE) or from the
// OS_* environment variables.
package openstack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/cloudservers/cloudservers/activities"
)

// ComputeMicroversion is the Nova API microversion the activities speak:
// tags on create (2.52) and the flavor embedded in servers (2.47).
const ComputeMicroversion = "2.79"

// Connect authenticates and returns the compute, network and image clients.
// With OS_CLOUD set, the cloud comes from clouds.yaml; otherwise from the
// OS_* variables. Every call has a timeout, and the token is renewed when it
// expires.
func Connect(ctx context.Context) (activities.Clients, error) {
	var (
		auth     gophercloud.AuthOptions
		endpoint gophercloud.EndpointOpts
		err      error
	)
	if os.Getenv("OS_CLOUD") != "" {
		auth, endpoint, _, err = clouds.Parse()
		if err != nil {
			return activities.Clients{}, fmt.Errorf("read clouds.yaml for cloud %q: %w", os.Getenv("OS_CLOUD"), err)
		}
	} else {
		auth, err = gos.AuthOptionsFromEnv()
		if err != nil {
			return activities.Clients{}, fmt.Errorf("OpenStack credentials: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL and friends: %w", err)
		}
		endpoint.Region = os.Getenv("OS_REGION_NAME")
	}
	return ConnectWith(ctx, auth, endpoint)
}

// ConnectWith authenticates with explicit options (tests point it at a
// simulator) and returns the clients.
func ConnectWith(ctx context.Context, auth gophercloud.AuthOptions, endpoint gophercloud.EndpointOpts) (activities.Clients, error) {
	auth.AllowReauth = true
	// Every call is a client span of the activity's trace (otelhttp), with
	// the W3C trace context in its headers.
	hc := http.Client{Timeout: 30 * time.Second, Transport: otelhttp.NewTransport(http.DefaultTransport,
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "openstack " + r.Method }))}
	provider, err := config.NewProviderClient(ctx, auth, config.WithHTTPClient(hc))
	if err != nil {
		return activities.Clients{}, fmt.Errorf("authenticate with OpenStack at %s: %w", auth.IdentityEndpoint, err)
	}
	compute, err := gos.NewComputeV2(provider, endpoint)
	if err != nil {
		return activities.Clients{}, fmt.Errorf("compute endpoint: %w", err)
	}
	compute.Microversion = ComputeMicroversion
	network, err := gos.NewNetworkV2(provider, endpoint)
	if err != nil {
		return activities.Clients{}, fmt.Errorf("network endpoint: %w", err)
	}
	image, err := gos.NewImageV2(provider, endpoint)
	if err != nil {
		return activities.Clients{}, fmt.Errorf("image endpoint: %w", err)
	}
	return activities.Clients{Compute: compute, Network: network, Image: image}, nil
}

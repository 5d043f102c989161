// Package temporal dials the Temporal frontend with the system's defaults.
package temporal

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Dial connects to Temporal at hostPort in namespace, retrying with backoff
// until ctx ends: a worker or bridge started before Temporal is up waits for
// it instead of crash-looping. options adjust the client's options (its
// metrics handler, its interceptors).
func Dial(ctx context.Context, hostPort, namespace string, logger *slog.Logger, options ...func(*client.Options)) (client.Client, error) {
	backoff := 500 * time.Millisecond
	opts := client.Options{
		HostPort:  hostPort,
		Namespace: namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	for _, o := range options {
		o(&opts)
	}
	for {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		logger.Warn("Temporal not reachable; retrying", "address", hostPort, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to Temporal at %s: %w", hostPort, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

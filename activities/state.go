package activities

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cloudservers/cloudservers"
)

// PublishServer writes a server record to the compacted servers topic,
// keyed by server ID. Publishing the same version twice is harmless: readers
// keep the highest version.
func (a *Activities) PublishServer(ctx context.Context, s cloudservers.Server) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := a.publisher.Send(ctx, cloudservers.TopicServers, []byte(s.ID), v); err != nil {
		return fmt.Errorf("publish server %s: %w", s.ID, err)
	}
	return nil
}

// PublishOperation writes an operation record to the compacted operations
// topic, keyed by operation ID.
func (a *Activities) PublishOperation(ctx context.Context, o cloudservers.Operation) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := a.publisher.Send(ctx, cloudservers.TopicOperations, []byte(o.ID), v); err != nil {
		return fmt.Errorf("publish operation %s: %w", o.ID, err)
	}
	return nil
}

package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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

// State is what one PublishState writes: a server record, an operation
// record, or both (a saga's start and end change both).
type State struct {
	Server    *cloudservers.Server    `json:"server,omitempty"`
	Operation *cloudservers.Operation `json:"operation,omitempty"`
}

// PublishState writes the server record, then the operation record. The
// lifecycle and the sagas run it as a local activity: one marker in the
// history instead of an activity's three events and a workflow task.
func (a *Activities) PublishState(ctx context.Context, st State) error {
	if st.Server != nil {
		if err := a.PublishServer(ctx, *st.Server); err != nil {
			return err
		}
	}
	if st.Operation != nil {
		if err := a.PublishOperation(ctx, *st.Operation); err != nil {
			return err
		}
	}
	return nil
}

// publishInstance records which server a Nova instance belongs to, for the
// notifications that carry only the instance's UUID.
func (a *Activities) publishInstance(ctx context.Context, instanceID, serverID, customerID string) error {
	v, err := json.Marshal(cloudservers.InstanceRecord{InstanceID: instanceID, ServerID: serverID, CustomerID: customerID, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := a.publisher.Send(ctx, cloudservers.TopicInstances, []byte(instanceID), v); err != nil {
		return fmt.Errorf("publish instance %s of server %s: %w", instanceID, serverID, err)
	}
	return nil
}

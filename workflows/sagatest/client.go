package sagatest

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// ClientDeliverer delivers notifications through a Temporal client, for a
// Cloud registered on a real worker (Register). Delays are real time,
// multiplied by Scale (0 means 1).
type ClientDeliverer struct {
	Client client.Client
	// Target maps the workflow whose activity asked Nova to the workflow to
	// signal: the saga itself when it runs alone, its lifecycle otherwise.
	// Nil signals the saga itself.
	Target func(workflowID string) string
	Scale  float64

	wg sync.WaitGroup
	mu sync.Mutex
	// Errs are the signals that could not be delivered (the workflow had
	// ended, typically a late duplicate): for the record, not a failure.
	Errs []error
}

// Deliver implements Deliverer.
func (d *ClientDeliverer) Deliver(workflowID string, after time.Duration, event func(time.Time) notification.Event) {
	target := workflowID
	if d.Target != nil {
		target = d.Target(workflowID)
	}
	if d.Scale > 0 {
		after = time.Duration(float64(after) * d.Scale)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		time.Sleep(after)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Client.SignalWorkflow(ctx, target, "", workflows.SignalNovaEvent, event(time.Now().UTC())); err != nil {
			d.mu.Lock()
			d.Errs = append(d.Errs, err)
			d.mu.Unlock()
		}
	}()
}

// Now implements Deliverer.
func (d *ClientDeliverer) Now() time.Time { return time.Now().UTC() }

// Wait waits for every scheduled delivery.
func (d *ClientDeliverer) Wait() { d.wg.Wait() }

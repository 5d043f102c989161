package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultNamespace is the Temporal namespace of the system.
const DefaultNamespace = "cloudservers"

// DefaultRetention is how long Temporal keeps a closed workflow's history
// in a namespace setup creates.
const DefaultRetention = 7 * 24 * time.Hour

// SearchAttributes are the custom search attributes setup registers in the
// namespace (all Keyword). Support engineers search workflows by them.
var SearchAttributes = []string{"CustomerId", "ServerId", "OperationId", "Operation", "NovaInstanceId"}

// quietLogger drops the Temporal client's log lines.
var quietLogger = tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// DialTemporal connects to the frontend at hostPort (for namespace).
func DialTemporal(ctx context.Context, hostPort, namespace string) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{HostPort: hostPort, Namespace: namespace, Logger: quietLogger})
	if err != nil {
		return nil, fmt.Errorf("temporal %s: %w", hostPort, err)
	}
	return c, nil
}

// planTemporal returns the steps that create the namespace and register
// the missing search attributes; a search attribute registered with
// another type is a problem.
func planTemporal(ctx context.Context, c client.Client, cfg Config) (steps []Step, problems []Problem, unchanged []string, err error) {
	ns := cfg.Namespace
	target := "temporal namespace " + ns
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		steps = append(steps, Step{Target: target, Action: fmt.Sprintf("create (retention %s)", cfg.Retention),
			apply: func(ctx context.Context) error {
				_, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
					Namespace:                        ns,
					Description:                      "Cloud Servers (created by cloudservers setup)",
					WorkflowExecutionRetentionPeriod: durationpb.New(cfg.Retention),
				})
				var exists *serviceerror.NamespaceAlreadyExists
				if errors.As(err, &exists) {
					return nil
				}
				return err
			}})
		steps = append(steps, Step{Target: target, Action: "register search attributes " + strings.Join(SearchAttributes, ", ") + " (Keyword)",
			apply: func(ctx context.Context) error { return addSearchAttributes(ctx, c, ns, SearchAttributes) }})
		return steps, nil, nil, nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("describe namespace %s: %w", ns, err)
	}
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("search attributes of %s: %w", ns, err)
	}
	var missing []string
	for _, name := range SearchAttributes {
		typ, ok := sa.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			problems = append(problems, Problem{Target: target, Detail: fmt.Sprintf("search attribute %s is %s, not Keyword (remove it, then run setup again)", name, typ)})
		}
	}
	if len(missing) == 0 {
		return nil, problems, []string{target}, nil
	}
	steps = append(steps, Step{Target: target, Action: "register search attributes " + strings.Join(missing, ", ") + " (Keyword)",
		apply: func(ctx context.Context) error { return addSearchAttributes(ctx, c, ns, missing) }})
	return steps, problems, nil, nil
}

// addSearchAttributes registers names as Keyword attributes and waits
// until the namespace lists them (a namespace registered a moment ago may
// not be known to every service yet).
func addSearchAttributes(ctx context.Context, c client.Client, ns string, names []string) error {
	add := map[string]enumspb.IndexedValueType{}
	for _, n := range names {
		add[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	return poll(ctx, 90*time.Second, func(ctx context.Context) error {
		sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
		if err != nil {
			return err
		}
		for n := range add {
			if _, ok := sa.GetCustomAttributes()[n]; ok {
				delete(add, n)
			}
		}
		if len(add) == 0 {
			return nil
		}
		if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: add}); err != nil {
			return fmt.Errorf("add search attributes: %w", err)
		}
		return errors.New("search attributes added, checking")
	})
}

// TemporalReady succeeds when the frontend at hostPort is healthy, the
// namespace exists and every one of SearchAttributes is registered in it.
func TemporalReady(ctx context.Context, hostPort, namespace string) error {
	c, err := DialTemporal(ctx, hostPort, namespace)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return err
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace}); err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("search attributes of %s: %w", namespace, err)
	}
	var missing []string
	for _, name := range SearchAttributes {
		if _, ok := sa.GetCustomAttributes()[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return errors.New("search attributes not registered yet: " + strings.Join(missing, ", "))
	}
	return nil
}

// poll calls f until it succeeds, ctx ends or limit passes.
func poll(ctx context.Context, limit time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

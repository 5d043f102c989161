package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/workflows"
)

// RequestGroup is the Kafka group under which request offsets are committed
// (offsets only: partitions are assigned through ZooKeeper, not by the
// group protocol).
const RequestGroup = "cloudservers-bridge"

// Requests hands requests to Temporal.
type Requests struct {
	// Kafka carries the offset commits; Consumer (on a client of its own,
	// see consumePartition) fetches the partitions this process owns.
	Kafka    sarama.Client
	Consumer sarama.Consumer

	// Topic is the requests topic; default cloudservers.TopicRequests.
	Topic string
	// TaskQueue of the lifecycle workflows; default workflows.TaskQueue.
	TaskQueue string
	// Group commits the offsets; default RequestGroup.
	Group        string
	Fresh        FreshStart
	Temporal     Temporal
	DeadLetters  DeadLetters
	Log          *slog.Logger
	Stats        *Stats
	EventTimeout time.Duration
}

// ConsumePartition consumes one partition of the requests topic until ctx
// ends. fence identifies the ownership tenure (ZooKeeper lock zxid) and is
// written with every committed offset.
func (r *Requests) ConsumePartition(ctx context.Context, partition int32, owner string, fence int64) error {
	meta := fmt.Sprintf("owner=%s fence=%d", owner, fence)
	group := r.Group
	if group == "" {
		group = RequestGroup
	}
	return consumePartition(ctx, r.Consumer, r.Kafka, group, r.topic(), partition, meta, r.Fresh, 0, r.handle, r.Log)
}

func (r *Requests) topic() string { return cmp.Or(r.Topic, cloudservers.TopicRequests) }

// DecodeRequest parses and checks a request message.
func DecodeRequest(value []byte) (cloudservers.Request, error) {
	var req cloudservers.Request
	if err := json.Unmarshal(value, &req); err != nil {
		return req, fmt.Errorf("malformed request: %w", err)
	}
	switch {
	case req.OperationID == "":
		return req, errors.New("malformed request: no operation_id")
	case req.ServerID == "":
		return req, errors.New("malformed request: no server_id")
	case req.CustomerID == "":
		return req, errors.New("malformed request: no customer_id")
	}
	if _, ok := cloudservers.LookupOperation(req.Operation); !ok {
		return req, fmt.Errorf("malformed request: unknown operation %q", req.Operation)
	}
	return req, nil
}

func (r *Requests) handle(ctx context.Context, msg *sarama.ConsumerMessage) error {
	r.Stats.Consumed.Add(1)
	// The request continues the trace of the API call that wrote it; the
	// Temporal client's tracing interceptor carries it into the workflow.
	ctx, span := otel.Tracer("github.com/cloudservers/cloudservers/bridge").Start(kafka.ExtractTrace(ctx, msg), "deliver request",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("messaging.destination.name", msg.Topic), attribute.Int("messaging.destination.partition.id", int(msg.Partition)),
			attribute.Int64("messaging.kafka.offset", msg.Offset)))
	defer span.End()
	req, err := DecodeRequest(msg.Value)
	if err != nil {
		r.Log.Error("request sent to the dead-letter topic", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
		if err := deadLetter(ctx, r.DeadLetters, msg, err, time.Now()); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		r.Stats.DeadLetters.Add(1)
		return nil
	}
	return r.Deliver(ctx, req)
}

// Deliver hands one request to its server's lifecycle workflow, starting the
// workflow if needed. Delivering the same request twice is harmless: the
// lifecycle ignores an operation ID it has seen.
func (r *Requests) Deliver(ctx context.Context, req cloudservers.Request) error {
	opts := client.StartWorkflowOptions{
		ID:        workflows.ServerWorkflowID(req.ServerID),
		TaskQueue: cmp.Or(r.TaskQueue, workflows.TaskQueue),
		// A server's lifecycle is never started twice: once it has ended
		// (the server was deleted), requests for it are refused here.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.AttrCustomerID.ValueSet(req.CustomerID),
			workflows.AttrServerID.ValueSet(req.ServerID),
		),
	}
	// A lifecycle this starts runs this build's workflow code level (an
	// existing one keeps its own: the input of a running workflow does
	// not change).
	in := workflows.LifecycleInput{ServerID: req.ServerID, CustomerID: req.CustomerID, EventTimeout: r.EventTimeout, Level: workflows.CodeLevel}
	_, err := r.Temporal.SignalWithStartWorkflow(ctx, opts.ID, workflows.SignalRequest, req, opts, workflows.ServerWorkflow, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		r.Log.Warn("request for a server whose lifecycle has ended (deleted); dropped",
			"server", req.ServerID, "operation", req.OperationID, "type", req.Operation)
		r.Stats.Skipped.Add(1)
		return nil
	}
	if err != nil {
		return fmt.Errorf("deliver %s %s of server %s: %w", req.Operation, req.OperationID, req.ServerID, err)
	}
	r.Stats.Delivered.Add(1)
	return nil
}

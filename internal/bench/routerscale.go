package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/workflows"
)

// RouterScaleConfig says what RouterScale measures.
type RouterScaleConfig struct {
	Brokers []string
	// Notifications on the topic, read once per row; default 30,000.
	Notifications int
	// Partitions of the notification topic; default 6.
	Partitions int32
	// ForeignShare of the notifications are about other tenants'
	// instances (random UUID, no cs- name, no cloudservers metadata);
	// default 0.9. The rest are the system's own (cs-<server id> and the
	// server's metadata), which the router signals.
	ForeignShare float64
	// Processes are the routing process counts, one row each; default 1,
	// 2, 3. Each process is a Router on Kafka clients of its own, owning
	// the partitions p with p % processes == its index.
	Processes []int
	// Log receives progress; default discarded.
	Log *slog.Logger
}

// RouterScaleRow is one process count's measurement.
type RouterScaleRow struct {
	Processes int `json:"processes"`
	// RouterPerSec is notifications/s over all routing processes: from
	// the first notification handled until every one was (the bare
	// consumer's clock starts at its first record too).
	RouterPerSec float64 `json:"router_per_s"`
	// BarePerSec is a bare sarama consumer's notifications/s reading all
	// partitions of the same topic, measured just before.
	BarePerSec float64 `json:"bare_consumer_per_s"`
	// PerProcessVsBare is RouterPerSec / Processes / BarePerSec.
	PerProcessVsBare float64 `json:"per_process_vs_bare"`
	// VsOneProcess is RouterPerSec / the one-process row's RouterPerSec
	// (0 without that row).
	VsOneProcess float64 `json:"vs_one_process"`
	// TemporalCallsPer1000Foreign counts the calls to Temporal (signals
	// and visibility queries) the router made because of foreign
	// notifications, per 1,000 of them.
	TemporalCallsPer1000Foreign float64 `json:"temporal_calls_per_1000_foreign"`
	// Signals to the operations running on the system's servers (one per
	// awaited own notification expected: the chatter costs none) and to
	// anything else, as counted.
	OwnSignals     int64         `json:"own_signals"`
	AwaitedOwn     int           `json:"awaited_own"`
	ForeignSignals int64         `json:"foreign_signals"`
	Elapsed        time.Duration `json:"elapsed_ns"`
	// MachineBusy is how busy the machine's cores were (0..1, all of
	// them) while the routers ran, and BareMachineBusy while the bare
	// consumer did: near 1, the row measures the machine, and more
	// processes cannot route more.
	MachineBusy     float64 `json:"machine_busy"`
	BareMachineBusy float64 `json:"bare_machine_busy"`
}

// RouterScaleResult is RouterScale's answer.
type RouterScaleResult struct {
	Notifications int              `json:"notifications"`
	Foreign       int              `json:"foreign"`
	Partitions    int32            `json:"partitions"`
	Rows          []RouterScaleRow `json:"rows"`
}

// RouterScale measures the notification router's throughput for a mix of
// foreign and own notifications with 1, 2 and 3 routing processes (by
// default) against a bare consumer of the same topic on the same Kafka,
// and counts the Temporal calls foreign notifications cost. Temporal is a
// stand-in that answers every call at once and counts it, so what is
// measured is the router's own work and Kafka; a real visibility query
// costs a round trip to Temporal's visibility store besides, which this
// figure does not include. It creates a topic of its own and deletes it.
func RouterScale(ctx context.Context, cfg RouterScaleConfig) (RouterScaleResult, error) {
	if cfg.Notifications <= 0 {
		cfg.Notifications = 30_000
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	if cfg.ForeignShare <= 0 || cfg.ForeignShare > 1 {
		cfg.ForeignShare = 0.9
	}
	if len(cfg.Processes) == 0 {
		cfg.Processes = []int{1, 2, 3}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	res := RouterScaleResult{Notifications: cfg.Notifications, Partitions: cfg.Partitions}
	for _, n := range cfg.Processes {
		if n < 1 || int32(n) > cfg.Partitions {
			return res, fmt.Errorf("router scale: %d processes for %d partitions: want 1 to the partition count", n, cfg.Partitions)
		}
	}
	topic := "bench-" + uuid.NewString()[:8] + ".versioned_notifications.info"
	if err := devstack.CreateTopics(ctx, cfg.Brokers, []devstack.TopicSpec{{Name: topic, Partitions: cfg.Partitions,
		Config: map[string]string{"retention.ms": "3600000"}}}, nil); err != nil {
		return res, fmt.Errorf("router scale: create topic: %w", err)
	}
	defer deleteTopic(cfg.Brokers, topic)
	mix, err := fillMix(cfg, topic)
	if err != nil {
		return res, fmt.Errorf("router scale: %w", err)
	}
	// The routes as the system keeps them: the servers topic says which
	// operation runs where (the saga publishes it before it calls Nova).
	routesTopics := [2]string{topic + ".servers", topic + ".instances"}
	for _, t := range routesTopics {
		if err := devstack.CreateTopics(ctx, cfg.Brokers, []devstack.TopicSpec{{Name: t, Partitions: 3,
			Config: map[string]string{"cleanup.policy": "compact"}}}, nil); err != nil {
			return res, fmt.Errorf("router scale: create topic: %w", err)
		}
		defer deleteTopic(cfg.Brokers, t)
	}
	if err := fillServers(cfg, routesTopics[0], mix); err != nil {
		return res, fmt.Errorf("router scale: %w", err)
	}
	res.Foreign = len(mix.foreign)
	for _, n := range cfg.Processes {
		meter := startBusy()
		bare, err := bareConsume(ctx, cfg, topic)
		if err != nil {
			return res, fmt.Errorf("router scale: bare consumer: %w", err)
		}
		bareBusy := meter.Share()
		meter = startBusy()
		row, err := routeWith(ctx, cfg, topic, routesTopics, n, mix)
		if err != nil {
			return res, fmt.Errorf("router scale: %d processes: %w", n, err)
		}
		row.MachineBusy, row.BareMachineBusy = meter.Share(), bareBusy
		row.BarePerSec = bare
		row.PerProcessVsBare = row.RouterPerSec / float64(n) / bare
		cfg.Log.Info("router scale row", "processes", n, "router_per_s", int(row.RouterPerSec), "bare_per_s", int(bare),
			"temporal_calls_per_1000_foreign", row.TemporalCallsPer1000Foreign)
		res.Rows = append(res.Rows, row)
	}
	for i := range res.Rows {
		for _, one := range res.Rows {
			if one.Processes == 1 {
				res.Rows[i].VsOneProcess = res.Rows[i].RouterPerSec / one.RouterPerSec
			}
		}
	}
	return res, nil
}

// WriteTable writes the result as a table for people.
func (r RouterScaleResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "router, %d notifications (%d foreign) on %d partitions\n", r.Notifications, r.Foreign, r.Partitions)
	fmt.Fprintf(w, "%-9s %12s %12s %14s %10s %22s %13s\n", "processes", "router/s", "bare/s", "per-proc/bare", "vs 1 proc", "temporal/1000 foreign", "machine busy")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-9d %12.0f %12.0f %14.2f %10.2f %22.1f %12.0f%%\n", row.Processes, row.RouterPerSec, row.BarePerSec,
			row.PerProcessVsBare, row.VsOneProcess, row.TemporalCallsPer1000Foreign, 100*row.MachineBusy)
	}
}

// mix is what the topic holds: which instances and servers are whose.
type mix struct {
	foreign map[string]bool   // instance UUIDs of other tenants
	own     map[string]bool   // workflow IDs of the operations running on the system's servers
	servers map[string]string // the system's servers -> the operation running on each
	awaited int               // own notifications a saga waits for (the others are chatter)
}

// instanceUpdate is a captured versioned instance.update (Nova, a create
// going from building to active), in oslo.messaging's envelope.
const instanceUpdate = `{"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"96224ed7-a88c-40a3-96d9-81d21b137a87\", \"publisher_id\": \"nova-compute:probe\", \"event_type\": \"instance.update\", \"priority\": \"INFO\", \"payload\": {\"nova_object.name\": \"InstanceUpdatePayload\", \"nova_object.namespace\": \"nova\", \"nova_object.version\": \"2.0\", \"nova_object.data\": {\"state_update\": {\"nova_object.name\": \"InstanceStateUpdatePayload\", \"nova_object.namespace\": \"nova\", \"nova_object.version\": \"1.0\", \"nova_object.data\": {\"old_state\": \"building\", \"state\": \"active\", \"old_task_state\": \"spawning\", \"new_task_state\": null}}, \"audit_period\": {\"nova_object.name\": \"AuditPeriodPayload\", \"nova_object.namespace\": \"nova\", \"nova_object.version\": \"1.0\", \"nova_object.data\": {\"audit_period_beginning\": \"2026-11-01T00:00:00Z\", \"audit_period_ending\": \"2026-11-25T21:04:45Z\"}}, \"old_display_name\": null, \"tags\": [], \"uuid\": \"fe487dca-a27c-4ace-a10b-791decd361ea\", \"user_id\": \"1c8497d2d7aa4e36a49cb4c03ebfc605\", \"tenant_id\": \"59056836ca1947739e778220431ee514\", \"reservation_id\": \"r-k74qbw0m\", \"display_name\": \"cap-vm\", \"display_description\": null, \"host_name\": \"cap-vm\", \"host\": \"probe\", \"node\": \"probe\", \"os_type\": null, \"architecture\": null, \"availability_zone\": \"nova\", \"flavor\": {\"nova_object.name\": \"FlavorPayload\", \"nova_object.namespace\": \"nova\", \"nova_object.version\": \"1.4\", \"nova_object.data\": {\"flavorid\": \"411218af-4ba3-458b-866a-c266548e30c7\", \"memory_mb\": 64, \"vcpus\": 1, \"root_gb\": 1, \"ephemeral_gb\": 0, \"name\": \"m1.tiny\", \"swap\": 0, \"rxtx_factor\": 1.0, \"vcpu_weight\": 0, \"disabled\": false, \"is_public\": true, \"extra_specs\": {}, \"projects\": null, \"description\": null}}, \"image_uuid\": \"7edef56c-d408-4fec-8910-43a6cf8c5637\", \"key_name\": null, \"kernel_id\": \"\", \"ramdisk_id\": \"\", \"created_at\": \"2026-11-25T21:04:42Z\", \"launched_at\": \"2026-11-25T21:04:45Z\", \"terminated_at\": null, \"deleted_at\": null, \"updated_at\": \"2026-11-25T21:04:43Z\", \"state\": \"active\", \"power_state\": \"running\", \"task_state\": null, \"progress\": 0, \"ip_addresses\": [{\"nova_object.name\": \"IpPayload\", \"nova_object.namespace\": \"nova\", \"nova_object.version\": \"1.0\", \"nova_object.data\": {\"label\": \"net1\", \"mac\": \"fa:16:3e:6c:72:ae\", \"meta\": {}, \"port_uuid\": \"5de128b1-5dba-4de7-b70b-fd984c9bef30\", \"version\": 4, \"address\": \"10.0.0.231\", \"device_name\": \"tap5de128b1-5d\"}}], \"block_devices\": null, \"metadata\": {\"purpose\": \"capture\"}, \"locked\": false, \"auto_disk_config\": \"MANUAL\", \"request_id\": \"req-218e9337-e4bc-4df4-93df-a9c669ff87c7\", \"action_initiator_user\": \"1c8497d2d7aa4e36a49cb4c03ebfc605\", \"action_initiator_project\": \"59056836ca1947739e778220431ee514\", \"locked_reason\": null}}, \"timestamp\": \"2026-11-25 21:04:45.761992\", \"_context\": {\"user\": \"1c8497d2d7aa4e36a49cb4c03ebfc605\", \"project_id\": \"59056836ca1947739e778220431ee514\", \"system_scope\": null, \"project\": \"59056836ca1947739e778220431ee514\", \"domain\": null, \"user_domain\": \"default\", \"project_domain\": \"default\", \"is_admin\": true, \"read_only\": false, \"show_deleted\": false, \"auth_token\": null, \"request_id\": \"req-218e9337-e4bc-4df4-93df-a9c669ff87c7\", \"global_request_id\": null, \"resource_uuid\": null, \"roles\": [\"member\", \"reader\", \"admin\"], \"user_identity\": \"1c8497d2d7aa4e36a49cb4c03ebfc605 59056836ca1947739e778220431ee514 - default default\", \"is_admin_project\": true, \"user_id\": \"1c8497d2d7aa4e36a49cb4c03ebfc605\", \"read_deleted\": \"no\", \"remote_address\": null, \"timestamp\": \"2026-11-25T21:04:45.761932\", \"quota_class\": null, \"user_name\": \"admin\", \"service_catalog\": [], \"project_name\": \"admin\"}}"}`

// notificationOf renders the capture about instance, named name, with
// metadata.
func notificationOf(tmpl map[string]any, eventType, instance, name string, metadata map[string]any) ([]byte, error) {
	var inner map[string]any
	if err := json.Unmarshal([]byte(tmpl["oslo.message"].(string)), &inner); err != nil {
		return nil, err
	}
	data := inner["payload"].(map[string]any)["nova_object.data"].(map[string]any)
	data["uuid"], data["display_name"], data["metadata"] = instance, name, metadata
	inner["message_id"] = uuid.NewString()
	inner["event_type"] = eventType
	b, err := json.Marshal(inner)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(b)})
}

// fillMix writes the notifications, round robin over the partitions as
// keyless records spread: every tenth is the system's own.
func fillMix(cfg RouterScaleConfig, topic string) (mix, error) {
	var tmpl map[string]any
	if err := json.Unmarshal([]byte(instanceUpdate), &tmpl); err != nil {
		return mix{}, fmt.Errorf("the capture: %w", err)
	}
	m := mix{foreign: map[string]bool{}, own: map[string]bool{}, servers: map[string]string{}}
	ownEvery := 0
	if cfg.ForeignShare < 1 {
		ownEvery = int(1/(1-cfg.ForeignShare) + 0.5)
	}
	msgs := make([]*sarama.ProducerMessage, cfg.Notifications)
	for i := range msgs {
		instance := uuid.NewString()
		var v []byte
		var err error
		if ownEvery > 0 && i%ownEvery == 0 {
			// The system's own: an operation runs on the server; half its
			// notifications are chatter no saga waits for, half the event
			// its saga waits for.
			server, op := uuid.NewString(), uuid.NewString()
			m.servers[server] = op
			m.own[workflows.OperationWorkflowID(op)] = true
			eventType := "instance.update"
			if (i/ownEvery)%2 == 1 {
				eventType = "instance.create.end"
				m.awaited++
			}
			v, err = notificationOf(tmpl, eventType, instance, cloudservers.NovaServerName(server), map[string]any{cloudservers.MetadataServerID: server})
		} else {
			m.foreign[instance] = true
			v, err = notificationOf(tmpl, "instance.update", instance, fmt.Sprintf("web-%d", i), map[string]any{"role": "web"})
		}
		if err != nil {
			return m, err
		}
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(v), Partition: int32(i) % cfg.Partitions}
	}
	p, err := sarama.NewSyncProducer(cfg.Brokers, kafka.ProducerConfig("bench-routerscale"))
	if err != nil {
		return m, err
	}
	defer p.Close()
	for len(msgs) > 0 { // batches well below the broker's request size
		n := min(len(msgs), 2000)
		if err := p.SendMessages(msgs[:n]); err != nil {
			var pe sarama.ProducerErrors
			if errors.As(err, &pe) && len(pe) > 0 {
				err = pe[0].Err
			}
			return m, fmt.Errorf("fill %s: %w", topic, err)
		}
		msgs = msgs[n:]
	}
	return m, nil
}

// bareConsume reads every partition of topic from the oldest record with a
// bare sarama consumer until it has read them all: notifications/s.
func bareConsume(ctx context.Context, cfg RouterScaleConfig, topic string) (float64, error) {
	kc, err := kafka.Connect(ctx, cfg.Brokers, "bench-bare", cfg.Log)
	if err != nil {
		return 0, err
	}
	defer kc.Close()
	c, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var got atomic.Int64
	done := make(chan struct{})
	var first sync.Once
	var start time.Time
	for p := range cfg.Partitions {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, err
		}
		defer pc.Close()
		go func() {
			for range pc.Messages() {
				first.Do(func() { start = time.Now() })
				if got.Add(1) == int64(cfg.Notifications) {
					close(done)
				}
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// From the first record: the consumers' start (offsets, leaders) is
	// not reading, and the routers' clock starts the same way.
	return float64(cfg.Notifications-1) / time.Since(start).Seconds(), nil
}

// fillServers writes a server record, with its running operation, for each
// of the system's servers in the mix.
func fillServers(cfg RouterScaleConfig, topic string, m mix) error {
	p, err := sarama.NewSyncProducer(cfg.Brokers, kafka.ProducerConfig("bench-routerscale"))
	if err != nil {
		return err
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for server, op := range m.servers {
		v, err := json.Marshal(cloudservers.Server{ID: server, Status: cloudservers.StatusCreating, OperationID: op})
		if err != nil {
			return err
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(server), Value: sarama.ByteEncoder(v)})
	}
	if err := p.SendMessages(msgs); err != nil {
		return fmt.Errorf("fill %s: %w", topic, err)
	}
	return nil
}

// routeWith runs n routing processes over topic, each on Kafka clients of
// its own (one for offsets, one for fetching, one for its routes, as the
// bridge runs them), under a new router group, until every notification
// was handled. Each process's routes have caught up before it starts, as a
// partner's have when it takes over.
func routeWith(ctx context.Context, cfg RouterScaleConfig, topic string, routesTopics [2]string, n int, m mix) (RouterScaleRow, error) {
	row := RouterScaleRow{Processes: n, AwaitedOwn: m.awaited}
	group := "bench-router-" + uuid.NewString()[:8]
	signals := &countingSignals{mix: m}
	stats := make([]*bridge.Stats, n)
	routers := make([]*bridge.Router, n)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	connect := func(name string) (sarama.Client, error) {
		kc, err := kafka.Connect(ctx, cfg.Brokers, name, cfg.Log)
		if err == nil {
			context.AfterFunc(rctx, func() { wg.Wait(); kc.Close() })
		}
		return kc, err
	}
	consumer := func(name string) (sarama.Consumer, error) {
		kc, err := connect(name)
		if err != nil {
			return nil, err
		}
		return sarama.NewConsumerFromClient(kc)
	}
	for i := range n {
		kc, err := connect(fmt.Sprintf("bench-router-%d", i))
		if err != nil {
			return row, err
		}
		c, err := consumer(fmt.Sprintf("bench-router-%d-fetch", i))
		if err != nil {
			return row, err
		}
		rc, err := consumer(fmt.Sprintf("bench-router-%d-routes", i))
		if err != nil {
			return row, err
		}
		routes := &bridge.Routes{Kafka: kc, Consumer: rc, Log: cfg.Log, ServersTopic: routesTopics[0], InstancesTopic: routesTopics[1]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = routes.Run(rctx)
		}()
		if err := routes.Sync(ctx); err != nil {
			return row, err
		}
		stats[i] = &bridge.Stats{}
		routers[i] = &bridge.Router{Kafka: kc, Consumer: c, Topics: []string{topic}, Group: group, Signals: signals,
			Namespace: "bench", Routes: routes, Log: cfg.Log, Stats: stats[i], Fresh: bridge.FreshAtOldest}
	}
	errs := make(chan error, cfg.Partitions)
	start := time.Now()
	for p := range cfg.Partitions {
		r := routers[int(p)%n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.RoutePartition(rctx, topic, p, fmt.Sprintf("owner=bench-%d fence=0", int(p)%n)); err != nil {
				errs <- err
			}
		}()
	}
	handled := func() int64 {
		var sum int64
		for _, s := range stats {
			sum += s.Consumed.Load()
		}
		return sum
	}
	var err error
	// The clock starts at the first notification handled, as the bare
	// consumer's does: the partitions' start (committed offsets, leaders)
	// is not routing.
	for handled() == 0 && err == nil {
		select {
		case err = <-errs:
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	start = time.Now()
	for handled() < int64(cfg.Notifications) && err == nil {
		select {
		case err = <-errs:
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	row.Elapsed = time.Since(start)
	cancel()
	if err != nil {
		return row, err
	}
	row.RouterPerSec = float64(cfg.Notifications-1) / row.Elapsed.Seconds()
	row.OwnSignals, row.ForeignSignals = signals.own.Load(), signals.foreign.Load()
	if len(m.foreign) > 0 {
		// The router's only Temporal handle is its Signaller: every call
		// it made about anything but the system's operations is here.
		row.TemporalCallsPer1000Foreign = float64(row.ForeignSignals) * 1000 / float64(len(m.foreign))
	}
	return row, nil
}

// countingSignals answers every signal at once and counts it: signals to
// the operations running on the system's servers, and to anything else.
type countingSignals struct {
	mix          mix
	own, foreign atomic.Int64
}

func (t *countingSignals) SignalWorkflowExecution(_ context.Context, in *workflowservice.SignalWorkflowExecutionRequest, _ ...grpc.CallOption) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	if t.mix.own[in.GetWorkflowExecution().GetWorkflowId()] {
		t.own.Add(1)
	} else {
		t.foreign.Add(1)
	}
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

func deleteTopic(brokers []string, topic string) {
	admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("bench-cleanup"))
	if err != nil {
		return
	}
	defer admin.Close()
	_ = admin.DeleteTopic(topic)
}

// RouterSection is the report's router part: RouterScale on the running
// system's Kafka, a row per process count beside the bare consumer, the
// scaling from one process, and the Temporal calls foreign notifications
// cost (issue targets: per process >= 0.8x the bare consumer, 3
// processes >= 2.4x one, 0 calls per 1,000 foreign).
func RouterSection(cfg RouterScaleConfig) Section {
	return Section{Name: "router", Run: func(ctx context.Context, env *Env, rep *Report) error {
		cfg.Brokers = env.Endpoints.Kafka
		res, err := RouterScale(ctx, cfg)
		if err != nil {
			return err
		}
		foreign := fmt.Sprintf("%.0f %% foreign", 100*float64(res.Foreign)/float64(res.Notifications))
		for _, row := range res.Rows {
			perProcess := row.RouterPerSec / float64(row.Processes)
			r := NewRow("router", fmt.Sprintf("notifications/s per process, %d process(es), %s (raw: bare sarama consumer)", row.Processes, foreign),
				"/s", perProcess, &row.BarePerSec, AtLeast(0.8, 0))
			r.Note = fmt.Sprintf("machine busy %.0f %% (bare consumer: %.0f %%) of %d cores", 100*row.MachineBusy, 100*row.BareMachineBusy, runtime.NumCPU())
			rep.Add(r)
			if row.Processes > 1 {
				var one *float64
				for _, r := range res.Rows {
					if r.Processes == 1 {
						v := r.RouterPerSec
						one = &v
					}
				}
				target := (*Target)(nil)
				if row.Processes == 3 {
					target = AtLeast(2.4, 0)
				}
				rep.Add(NewRow("router", fmt.Sprintf("notifications/s, %d processes (raw: 1 process)", row.Processes), "/s", row.RouterPerSec, one, target))
			}
			rep.Add(NewRow("router", fmt.Sprintf("Temporal calls per 1,000 foreign notifications, %d process(es)", row.Processes), "calls",
				row.TemporalCallsPer1000Foreign, nil, AtMostAbs(0)))
		}
		return nil
	}}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
	"github.com/cloudservers/cloudservers/workflows"
)

// Assignment modes of the bridge (-assignment-mode).
const (
	modeZooKeeper     = "zookeeper"
	modeConsumerGroup = "consumer-group"
)

// bridgeConfig is the bridge's configuration, checked before it connects to
// anything: a mistake is reported at once, not after minutes of retries.
type bridgeConfig struct {
	common
	id         string
	processes  []string
	assignment zkcoord.Assignment // explicit -assignment; nil for the default
	// routeProcesses share the notification topics' partitions (the
	// -processes list, in either assignment mode, else the processes the
	// assignments name); empty: the router is a singleton over them all.
	routeProcesses  []string
	routeAssignment zkcoord.Assignment // explicit -route-assignment; nil for the default
	mode            string
	zkServers       []string
	zkChroot        string
	session         time.Duration // ZooKeeper
	groupSession    time.Duration // Kafka consumer group
	eventTimeout    time.Duration
	statusListen    string
	taskQueue       string
	requestsTopic   string
	requestGroup    string
	routerGroup     string
	notifTopics     []string
	reaper          bool
	reapInterval    time.Duration
	reapGrace       time.Duration
	reapMax         int
	reapDryRun      bool
	// warnings are logged once the bridge has a logger.
	warnings []string
}

// parseBridgeConfig reads the bridge's flags and checks everything that can
// be checked without Kafka; the assignment against the topic's partitions
// is checked by assignmentFor once the partitions are known.
func parseBridgeConfig(args []string) (bridgeConfig, error) {
	var cfg bridgeConfig
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	cfg.common.register(fs)
	fs.StringVar(&cfg.id, "id", envOr("CLOUDSERVERS_PROCESS", ""), "this process's ID in the assignment (env CLOUDSERVERS_PROCESS)")
	processes := fs.String("processes", envOr("CLOUDSERVERS_PROCESSES", ""), "all bridge process IDs, comma-separated, for the default assignment (partition p: primary processes[p % n], then the others in order as partners) (env CLOUDSERVERS_PROCESSES)")
	assignment := fs.String("assignment", envOr("CLOUDSERVERS_ASSIGNMENT", ""), "explicit assignment: p=primary,partner[,partner...];... e.g. 0=a,b;1=b,a (overrides -processes) (env CLOUDSERVERS_ASSIGNMENT)")
	routeAssignment := fs.String("route-assignment", envOr("CLOUDSERVERS_ROUTE_ASSIGNMENT", ""), "explicit assignment of the notification topics' partitions to routing processes, p=primary,partner[,partner...];... applied to each notification topic (entries beyond a topic's partitions are ignored for it); default: spread over -processes like the request partitions; with neither (consumer-group mode without -processes), the router is one elected process over all of them (env CLOUDSERVERS_ROUTE_ASSIGNMENT)")
	fs.StringVar(&cfg.mode, "assignment-mode", envOr("CLOUDSERVERS_ASSIGNMENT_MODE", modeZooKeeper), "who assigns the request partitions: zookeeper (primary and partners, -processes/-assignment) or consumer-group (a Kafka consumer group, cooperative-sticky) (env CLOUDSERVERS_ASSIGNMENT_MODE)")
	fs.DurationVar(&cfg.session, "session-timeout", 4*time.Second, "ZooKeeper session timeout: a dead owner's partitions and singletons move after about this long")
	fs.DurationVar(&cfg.groupSession, "group-session-timeout", 10*time.Second, "consumer-group mode: the Kafka group session timeout (the broker accepts 6s..30m by default)")
	fs.DurationVar(&cfg.eventTimeout, "event-timeout", 5*time.Minute, "how long a saga waits for a notification before its one reconciliation read")
	fs.StringVar(&cfg.statusListen, "status-listen", "", "serve /healthz and /status (ownership, offsets, lag, leaders, counters) on this address")
	fs.StringVar(&cfg.taskQueue, "task-queue", envOr("CLOUDSERVERS_TASK_QUEUE", workflows.TaskQueue), "Temporal task queue of the workflows (env CLOUDSERVERS_TASK_QUEUE)")
	fs.StringVar(&cfg.requestsTopic, "requests-topic", cloudservers.TopicRequests, "the requests topic")
	fs.StringVar(&cfg.requestGroup, "request-group", bridge.RequestGroup, "Kafka group under which request offsets are committed")
	fs.StringVar(&cfg.routerGroup, "router-group", bridge.RouterGroup, "Kafka group under which the router commits notification offsets")
	notifTopics := fs.String("notification-topics", envOr("CLOUDSERVERS_NOTIFICATION_TOPICS", strings.Join(cloudservers.NotificationTopics, ",")), "the topics OpenStack notifies on, comma-separated: nova.conf's versioned_notifications_topics and [oslo_messaging_notifications] topics, each with .info and .error, and Ceilometer's event topic (env CLOUDSERVERS_NOTIFICATION_TOPICS)")
	fs.BoolVar(&cfg.reaper, "reaper", true, "take part in the election of the reaper (removes leaked OpenStack resources through reap workflows)")
	fs.DurationVar(&cfg.reapInterval, "reap-interval", bridge.DefaultReapInterval, "time between reaps")
	fs.DurationVar(&cfg.reapGrace, "reap-grace", bridge.DefaultReapGrace, "the reaper spares resources younger than this")
	fs.IntVar(&cfg.reapMax, "reap-max", workflows.DefaultMaxOrphans, "a reap that finds more orphaned resources than this removes nothing and fails")
	fs.BoolVar(&cfg.reapDryRun, "reap-dry-run", false, "the reaper reports orphans without removing them")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if _, err := cfg.common.load(fs, nil); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q (flags come as -name value)", fs.Args())
	}
	var errs []error
	if cfg.id == "" {
		errs = append(errs, errors.New("set -id (or CLOUDSERVERS_PROCESS): this process's ID in the assignment"))
	} else if strings.ContainsAny(cfg.id, "/\x00") || cfg.id == "." || cfg.id == ".." {
		errs = append(errs, fmt.Errorf("-id %q: a process ID must not contain '/' and must not be . or ..", cfg.id))
	}
	if _, err := cfg.brokers(); err != nil {
		errs = append(errs, err)
	}
	if cfg.temporal == "" {
		errs = append(errs, errors.New("no Temporal frontend: set -temporal host:port or CLOUDSERVERS_TEMPORAL"))
	}
	cfg.zkServers, cfg.zkChroot = zkcoord.ParseConnectString(cfg.zookeeper)
	if len(cfg.zkServers) == 0 {
		errs = append(errs, errors.New("no ZooKeeper: set -zookeeper host:port[,host:port...][/chroot] or CLOUDSERVERS_ZOOKEEPER (it elects the router and the reaper, and in zookeeper mode assigns the partitions)"))
	}
	for _, s := range cfg.zkServers {
		if _, port, err := splitHostPort(s); err != nil || port == 0 {
			errs = append(errs, fmt.Errorf("-zookeeper: %q is not host:port", s))
		}
	}
	if cfg.session <= 0 {
		errs = append(errs, fmt.Errorf("-session-timeout %s: must be positive", cfg.session))
	}
	if cfg.groupSession <= 0 {
		errs = append(errs, fmt.Errorf("-group-session-timeout %s: must be positive", cfg.groupSession))
	}
	if cfg.reapInterval <= 0 {
		errs = append(errs, fmt.Errorf("-reap-interval %s: must be positive", cfg.reapInterval))
	}
	if cfg.reapGrace < 0 {
		errs = append(errs, fmt.Errorf("-reap-grace %s: must not be negative", cfg.reapGrace))
	}
	if cfg.taskQueue == "" {
		errs = append(errs, errors.New("-task-queue must not be empty"))
	}
	if cfg.notifTopics = splitList(*notifTopics); len(cfg.notifTopics) == 0 {
		errs = append(errs, errors.New("-notification-topics must name at least one topic"))
	}
	if cfg.requestGroup == "" || cfg.routerGroup == "" || cfg.requestsTopic == "" {
		errs = append(errs, errors.New("-requests-topic, -request-group and -router-group must not be empty"))
	}
	if *routeAssignment != "" {
		a, err := parseAssignmentSpec(*routeAssignment)
		if err != nil {
			errs = append(errs, fmt.Errorf("-route-assignment: %w", err))
		}
		cfg.routeAssignment = a
	}
	switch cfg.mode {
	case modeZooKeeper:
		if *processes != "" {
			cfg.processes = splitList(*processes)
		}
		if *assignment != "" {
			a, err := parseAssignmentSpec(*assignment)
			if err != nil {
				errs = append(errs, err)
			}
			cfg.assignment = a
		}
		switch {
		case len(cfg.processes) == 0 && cfg.assignment == nil && *assignment == "":
			errs = append(errs, errors.New("zookeeper mode: set -processes a,b (each partition gets a primary and the others as partners) or -assignment 0=a,b;1=b,a"))
		case cfg.id != "" && (cfg.assignment != nil || len(cfg.processes) > 0) && !slices.Contains(processList(strings.Join(cfg.processes, ","), cfg.assignment), cfg.id):
			errs = append(errs, fmt.Errorf("process %q is not in the assignment (processes: %s): give it partitions or check -id", cfg.id,
				strings.Join(processList(strings.Join(cfg.processes, ","), cfg.assignment), ", ")))
		}
	case modeConsumerGroup:
		// Not an error: `dev` passes -processes to every bridge, and
		// CLOUDSERVERS_ASSIGNMENT_MODE=consumer-group switches them all.
		if *processes != "" || *assignment != "" {
			cfg.warnings = append(cfg.warnings, "consumer-group mode: -processes and -assignment are ignored for the request partitions (the Kafka group assigns them); -processes still spreads the notification partitions")
		}
	default:
		errs = append(errs, fmt.Errorf("-assignment-mode %q: want %s or %s", cfg.mode, modeZooKeeper, modeConsumerGroup))
	}
	cfg.routeProcesses = splitList(*processes)
	if len(cfg.routeProcesses) == 0 {
		cfg.routeProcesses = processList("", mergeAssignments(cfg.assignment, cfg.routeAssignment))
	}
	if cfg.id != "" && cfg.routeAssignment != nil && !slices.Contains(cfg.routeProcesses, cfg.id) {
		errs = append(errs, fmt.Errorf("process %q is not in the route assignment's processes (%s): check -id, -processes and -route-assignment",
			cfg.id, strings.Join(cfg.routeProcesses, ", ")))
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("bridge configuration: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// mergeAssignments lists every candidate of a and then of b under partition
// keys that do not collide, for processList.
func mergeAssignments(a, b zkcoord.Assignment) zkcoord.Assignment {
	out := zkcoord.Assignment{}
	n := int32(0)
	for _, x := range []zkcoord.Assignment{a, b} {
		for _, p := range x.Partitions() {
			out[n] = x[p]
			n++
		}
	}
	return out
}

// routeAssignments returns, for each notification topic (by its partition
// count), the assignment of its partitions to routing processes, checked
// like the request assignment: the explicit -route-assignment cut to the
// topic's partitions, or the default spread over routeProcesses. nil (no
// error) when no routing processes are configured: the router then runs
// as a singleton.
func (cfg bridgeConfig) routeAssignments(partitions map[string]int32) (map[string]zkcoord.Assignment, error) {
	if len(cfg.routeProcesses) == 0 {
		return nil, nil
	}
	most := int32(0)
	for _, n := range partitions {
		most = max(most, n)
	}
	var errs []error
	if cfg.routeAssignment != nil {
		for _, p := range cfg.routeAssignment.Partitions() {
			if p >= most {
				errs = append(errs, fmt.Errorf("-route-assignment: partition %d is outside every notification topic (the largest has %d partitions)", p, most))
			}
		}
	}
	out := map[string]zkcoord.Assignment{}
	for _, topic := range slices.Sorted(maps.Keys(partitions)) {
		n := partitions[topic]
		asg := defaultAssignment(cfg.routeProcesses, n)
		if cfg.routeAssignment != nil {
			asg = zkcoord.Assignment{}
			for p, cands := range cfg.routeAssignment {
				if p < n {
					asg[p] = cands
				}
			}
		}
		if err := asg.Validate(n, cfg.routeProcesses); err != nil {
			errs = append(errs, fmt.Errorf("routes of %s (%d partitions): %w", topic, n, err))
			continue
		}
		out[topic] = asg
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// assignmentFor returns the zookeeper mode's assignment for a topic with
// the given number of partitions, checked.
func (cfg bridgeConfig) assignmentFor(partitions int32) (zkcoord.Assignment, error) {
	asg := cfg.assignment
	if asg == nil {
		asg = defaultAssignment(cfg.processes, partitions)
	}
	procs := processList(strings.Join(cfg.processes, ","), asg)
	if err := asg.Validate(partitions, procs); err != nil {
		return nil, fmt.Errorf("assignment for %d partitions: %w", partitions, err)
	}
	return asg, nil
}

// defaultAssignment gives partition p the primary processes[p % n] and the
// others, in order after it, as partners.
func defaultAssignment(procs []string, partitions int32) zkcoord.Assignment {
	a := zkcoord.Assignment{}
	for p := int32(0); p < partitions; p++ {
		n := int(p) % len(procs)
		a[p] = append(append([]string{}, procs[n:]...), procs[:n]...)
	}
	return a
}

// parseAssignmentSpec reads "0=a,b;1=b,a" strictly: every entry is
// partition=candidates, a partition appears once, names are not empty.
func parseAssignmentSpec(spec string) (zkcoord.Assignment, error) {
	a := zkcoord.Assignment{}
	var errs []error
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("-assignment entry %q: want partition=primary,partner[,partner...]", part))
			continue
		}
		p, err := strconv.ParseInt(strings.TrimSpace(k), 10, 32)
		if err != nil || p < 0 {
			errs = append(errs, fmt.Errorf("-assignment entry %q: %q is not a partition number", part, strings.TrimSpace(k)))
			continue
		}
		if _, dup := a[int32(p)]; dup {
			errs = append(errs, fmt.Errorf("-assignment: partition %d is assigned twice", p))
			continue
		}
		var cands []string
		for _, c := range strings.Split(v, ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				errs = append(errs, fmt.Errorf("-assignment entry %q: empty process name", part))
				continue
			}
			cands = append(cands, c)
		}
		a[int32(p)] = cands
	}
	if len(a) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("-assignment %q assigns no partition", spec))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// splitHostPort splits "host:port" and parses the port.
func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("%q: no port", s)
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return s[:i], port, nil
}

// newPromptConsumer is newConsumer with short fetch long-polls. Kafka
// answers one connection's requests in order, and starting a partition
// (sarama looks up its offsets on the consumer's connection) waits behind
// the long-poll in flight: with Kafka's 500 ms default, a takeover or a
// handback would take up to half a second more. An idle consumer then
// polls ten times a second, which costs little.
func newPromptConsumer(ctx context.Context, brokers []string, clientID string, log *slog.Logger) (consumer, error) {
	kc, err := kafka.Connect(ctx, brokers, clientID, log)
	if err != nil {
		return consumer{}, err
	}
	// The client's configuration is read by the consumer created below
	// (no consumer exists yet).
	kc.Config().Consumer.MaxWaitTime = 100 * time.Millisecond
	c, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		kc.Close()
		return consumer{}, err
	}
	return consumer{Consumer: c, client: kc}, nil
}

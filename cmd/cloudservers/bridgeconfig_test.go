package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// base are flags that make a valid zookeeper-mode bridge.
var base = []string{"-id", "a", "-processes", "a,b", "-kafka", "k:9092", "-temporal", "t:7233", "-zookeeper", "z1:2181,z2:2181/cs"}

func withFlags(extra ...string) []string {
	return append(append([]string{}, base...), extra...)
}

// without removes a flag and its value from base.
func without(flag string) []string {
	var out []string
	for i := 0; i < len(base); i += 2 {
		if base[i] != flag {
			out = append(out, base[i], base[i+1])
		}
	}
	return out
}

func TestBridgeConfigValid(t *testing.T) {
	for _, env := range []string{"CLOUDSERVERS_KAFKA", "CLOUDSERVERS_TEMPORAL", "CLOUDSERVERS_ZOOKEEPER", "CLOUDSERVERS_PROCESS",
		"CLOUDSERVERS_PROCESSES", "CLOUDSERVERS_ASSIGNMENT", "CLOUDSERVERS_ASSIGNMENT_MODE", "CLOUDSERVERS_TASK_QUEUE", "CLOUDSERVERS_NOTIFICATION_TOPICS"} {
		t.Setenv(env, "")
	}
	cfg, err := parseBridgeConfig(withFlags("-session-timeout", "6s"))
	require.NoError(t, err)
	assert.Equal(t, []string{"z1:2181", "z2:2181"}, cfg.zkServers, "the ensemble")
	assert.Equal(t, "/cs", cfg.zkChroot)
	assert.Equal(t, 6*time.Second, cfg.session)
	assert.Equal(t, modeZooKeeper, cfg.mode)
	assert.Equal(t, cloudservers.NotificationTopics, cfg.notifTopics, "OpenStack's stock notification topics")
	asg, err := cfg.assignmentFor(4)
	require.NoError(t, err)
	assert.Equal(t, zkcoord.Assignment{0: {"a", "b"}, 1: {"b", "a"}, 2: {"a", "b"}, 3: {"b", "a"}}, asg)

	cfg, err = parseBridgeConfig(withFlags("-processes", "a,b,c"))
	require.NoError(t, err)
	asg, err = cfg.assignmentFor(3)
	require.NoError(t, err)
	assert.Equal(t, zkcoord.Assignment{0: {"a", "b", "c"}, 1: {"b", "c", "a"}, 2: {"c", "a", "b"}}, asg, "two partners each")

	cfg, err = parseBridgeConfig(append(without("-processes"), "-assignment", " 0=a,b ; 1=b,a;"))
	require.NoError(t, err)
	asg, err = cfg.assignmentFor(2)
	require.NoError(t, err)
	assert.Equal(t, zkcoord.Assignment{0: {"a", "b"}, 1: {"b", "a"}}, asg)

	cfg, err = parseBridgeConfig(append(without("-processes"), "-assignment-mode", "consumer-group", "-group-session-timeout", "6s"))
	require.NoError(t, err)
	assert.Equal(t, modeConsumerGroup, cfg.mode)
	assert.Equal(t, 6*time.Second, cfg.groupSession)

	cfg, err = parseBridgeConfig(withFlags("-assignment-mode", "consumer-group"))
	require.NoError(t, err, "dev passes -processes to every bridge; the mode may still be switched")
	assert.Equal(t, []string{"consumer-group mode: -processes and -assignment are ignored for the request partitions (the Kafka group assigns them); -processes still spreads the notification partitions"}, cfg.warnings)
	assert.Equal(t, []string{"a", "b"}, cfg.routeProcesses, "the routes are spread over -processes in consumer-group mode too")

	t.Setenv("CLOUDSERVERS_ZOOKEEPER", "zk:2181")
	t.Setenv("CLOUDSERVERS_ASSIGNMENT_MODE", "consumer-group")
	cfg, err = parseBridgeConfig([]string{"-id", "a", "-kafka", "k:9092", "-temporal", "t:7233"})
	require.NoError(t, err, "the environment configures a bridge started by dev")
	assert.Equal(t, modeConsumerGroup, cfg.mode)
	assert.Equal(t, "", cfg.zkChroot, "no chroot in the connect string: zkcoord's default")
}

func TestRouteAssignments(t *testing.T) {
	for _, env := range []string{"CLOUDSERVERS_PROCESSES", "CLOUDSERVERS_ASSIGNMENT", "CLOUDSERVERS_ROUTE_ASSIGNMENT", "CLOUDSERVERS_ASSIGNMENT_MODE", "CLOUDSERVERS_PROCESS"} {
		t.Setenv(env, "")
	}
	parts := map[string]int32{"versioned_notifications.info": 6, "versioned_notifications.error": 1}

	// Default: each topic spread over -processes like the requests.
	cfg, err := parseBridgeConfig(withFlags("-processes", "a,b,c"))
	require.NoError(t, err)
	got, err := cfg.routeAssignments(parts)
	require.NoError(t, err)
	assert.Equal(t, zkcoord.Assignment{0: {"a", "b", "c"}, 1: {"b", "c", "a"}, 2: {"c", "a", "b"}, 3: {"a", "b", "c"}, 4: {"b", "c", "a"}, 5: {"c", "a", "b"}},
		got["versioned_notifications.info"])
	assert.Equal(t, zkcoord.Assignment{0: {"a", "b", "c"}}, got["versioned_notifications.error"])

	// Only -assignment: the processes it names route.
	cfg, err = parseBridgeConfig(append(without("-processes"), "-assignment", "0=a,b;1=b,a"))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, cfg.routeProcesses)

	// Explicit, cut to each topic's partitions.
	cfg, err = parseBridgeConfig(withFlags("-route-assignment", "0=b,a;1=a;2=b;3=a;4=b;5=a,b"))
	require.NoError(t, err)
	got, err = cfg.routeAssignments(parts)
	require.NoError(t, err)
	assert.Equal(t, zkcoord.Assignment{0: {"b", "a"}}, got["versioned_notifications.error"])
	assert.Equal(t, []string{"a", "b"}, got["versioned_notifications.info"][5])

	// Validated like the request assignment, every problem at once.
	cfg, err = parseBridgeConfig(withFlags("-route-assignment", "0=a,a;1=zed;7=a"))
	require.NoError(t, err)
	_, err = cfg.routeAssignments(parts)
	require.Error(t, err)
	for _, want := range []string{"partition 7 is outside every notification topic", `process "a" is listed as its own partner`,
		`unknown process "zed"`, "partition 2 has no owner", "routes of versioned_notifications.info (6 partitions)"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = parseBridgeConfig(withFlags("-route-assignment", "x=a"))
	assert.ErrorContains(t, err, "-route-assignment: -assignment entry \"x=a\": \"x\" is not a partition number")

	// No process list (consumer-group mode without -processes): singleton.
	cfg, err = parseBridgeConfig(append(without("-processes"), "-assignment-mode", "consumer-group"))
	require.NoError(t, err)
	got, err = cfg.routeAssignments(parts)
	require.NoError(t, err)
	assert.Nil(t, got, "no process list: the router is elected")
}

func TestBridgeConfigErrors(t *testing.T) {
	for _, env := range []string{"CLOUDSERVERS_KAFKA", "CLOUDSERVERS_TEMPORAL", "CLOUDSERVERS_ZOOKEEPER", "CLOUDSERVERS_PROCESS",
		"CLOUDSERVERS_PROCESSES", "CLOUDSERVERS_ASSIGNMENT", "CLOUDSERVERS_ASSIGNMENT_MODE", "CLOUDSERVERS_TASK_QUEUE", "CLOUDSERVERS_NOTIFICATION_TOPICS"} {
		t.Setenv(env, "")
	}
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"no id", without("-id"), []string{"set -id (or CLOUDSERVERS_PROCESS)"}},
		{"id with a slash", withFlags("-id", "a/b"), []string{`-id "a/b": a process ID must not contain '/'`}},
		{"no Kafka", without("-kafka"), []string{"no Kafka brokers: set -kafka or CLOUDSERVERS_KAFKA"}},
		{"no Temporal", without("-temporal"), []string{"no Temporal frontend: set -temporal"}},
		{"no ZooKeeper", without("-zookeeper"), []string{"no ZooKeeper: set -zookeeper host:port[,host:port...][/chroot]"}},
		{"ZooKeeper without port", withFlags("-zookeeper", "zk1:2181,zk2"), []string{`-zookeeper: "zk2" is not host:port`}},
		{"root chroot is fine, bad port is not", withFlags("-zookeeper", "zk:0/x"), []string{`-zookeeper: "zk:0" is not host:port`}},
		{"bad session timeout", withFlags("-session-timeout", "0s"), []string{"-session-timeout 0s: must be positive"}},
		{"unparsable duration", withFlags("-session-timeout", "four"), []string{`invalid value "four" for flag -session-timeout`}},
		{"bad group session timeout", withFlags("-group-session-timeout", "-1s"), []string{"-group-session-timeout -1s: must be positive"}},
		{"bad reap interval", withFlags("-reap-interval", "0s"), []string{"-reap-interval 0s: must be positive"}},
		{"no notification topics", withFlags("-notification-topics", " , "), []string{"-notification-topics must name at least one topic"}},
		{"unknown mode", withFlags("-assignment-mode", "raft"), []string{`-assignment-mode "raft": want zookeeper or consumer-group`}},
		{"zookeeper mode without assignment", without("-processes"), []string{"zookeeper mode: set -processes a,b"}},
		{"process not in the assignment", withFlags("-id", "c"), []string{`process "c" is not in the assignment (processes: a, b)`}},
		{"stray argument", withFlags("extra"), []string{`unexpected arguments ["extra"]`}},
		{"assignment: no equals sign", append(without("-processes"), "-assignment", "0:a,b"), []string{`-assignment entry "0:a,b": want partition=primary,partner`}},
		{"assignment: partition not a number", append(without("-processes"), "-assignment", "0=a,b;1x=b,a"), []string{`-assignment entry "1x=b,a": "1x" is not a partition number`}},
		{"assignment: negative partition", append(without("-processes"), "-assignment", "-1=a"), []string{`"-1" is not a partition number`}},
		{"assignment: partition twice", append(without("-processes"), "-assignment", "0=a,b;0=b,a"), []string{"-assignment: partition 0 is assigned twice"}},
		{"assignment: empty name", append(without("-processes"), "-assignment", "0=a,,b"), []string{`-assignment entry "0=a,,b": empty process name`}},
		{"assignment: nothing", append(without("-processes"), "-assignment", ";;"), []string{`-assignment ";;" assigns no partition`}},
		{"every problem at once", []string{"-assignment-mode", "x", "-session-timeout", "0s"},
			[]string{"set -id", "no Kafka brokers", "no Temporal", "no ZooKeeper", "-session-timeout 0s", "-assignment-mode \"x\""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBridgeConfig(tt.args)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestBridgeAssignmentAgainstTheTopic(t *testing.T) {
	for _, env := range []string{"CLOUDSERVERS_PROCESSES", "CLOUDSERVERS_ASSIGNMENT", "CLOUDSERVERS_ASSIGNMENT_MODE"} {
		t.Setenv(env, "")
	}
	for _, tt := range []struct {
		name       string
		args       []string
		partitions int32
		want       []string
	}{
		{"a partition without owner", append(without("-processes"), "-assignment", "0=a,b;1=b,a"), 3,
			[]string{"assignment for 3 partitions", "partition 2 has no owner"}},
		{"a partition the topic does not have", append(without("-processes"), "-assignment", "0=a,b;7=b,a"), 1,
			[]string{"partition 7 is outside the topic (partitions 0..0)"}},
		{"own partner", append(without("-processes"), "-assignment", "0=a,a"), 1,
			[]string{`partition 0: process "a" is listed as its own partner`}},
		{"unknown process with -processes", withFlags("-assignment", "0=a,zed"), 1,
			[]string{`partition 0: unknown process "zed" (known: a, b)`}},
		{"a process twice in -processes", withFlags("-processes", "a,b,a"), 2,
			[]string{`process "a" is configured twice`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseBridgeConfig(tt.args)
			require.NoError(t, err)
			_, err = cfg.assignmentFor(tt.partitions)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestStatusReportText(t *testing.T) {
	since := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := statusReport{
		Time: since, Topic: "cloudservers.requests", Group: "g", Chroot: "/cs", Mode: modeZooKeeper,
		Partitions: []partitionReport{
			{Partition: 0, Owner: "b", Candidates: []string{"a", "b"}, Alive: []string{"b"}, Fence: 42, Since: since,
				Committed: 10, End: 12, Lag: 2, Note: "partner owns it (a is down)"},
			{Partition: 1, Candidates: []string{"b", "a"}, Committed: -1, End: 3, Lag: 3},
		},
		Singletons: []singletonReport{{Name: "router", Leader: "b", Standbys: []string{}, Fence: 7, Joined: since}},
		Problems:   []string{"consumer group g: boom"},
	}
	var b strings.Builder
	require.NoError(t, st.WriteText(&b))
	out := b.String()
	for _, want := range []string{
		"assignment zookeeper",
		"PARTITION  OWNER  PRIMARY,PARTNERS",
		"a(down),b",
		"partner owns it (a is down)",
		"router     b",
		"problem: consumer group g: boom",
	} {
		assert.Contains(t, out, want)
	}
	lines := strings.Split(out, "\n")
	var p1 string
	for _, l := range lines {
		if strings.HasPrefix(l, "1 ") {
			p1 = l
		}
	}
	assert.Regexp(t, `^1\s+-\s+b\(down\),a\(down\)\s+-\s+3\s+3\s+-`, p1, "no owner, nothing committed")
}

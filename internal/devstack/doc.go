// Package devstack runs the real infrastructure of the system on one
// machine, without Docker: Apache ZooKeeper (standalone), Apache Kafka
// (KRaft, one combined broker+controller) and the Temporal dev server with
// its Web UI. It also holds the small process supervisor (Group) that the
// `dev` command uses for the application's own processes.
//
// StartHA runs the HA topology instead (ha.go): a 3-server ZooKeeper
// ensemble, 3 Kafka nodes (RF 3, min.insync.replicas 2), the Temporal
// server on PostgreSQL (postgres.go, temporalserver.go) and its UI, in
// <DataDir>/ha; it needs PostgreSQL (Debian: postgresql) and builds the
// server, temporal-sql-tool and the UI server into <cache>/bin.
//
// # What it needs, and the cache
//
// A Java 17+ runtime (java on PATH or $JAVA_HOME), Maven (mvn) the first
// time, and Go the first time. Ensure fills the cache folder
// ($CLOUDSERVERS_CACHE, else $HOME/.cache/cloudservers):
//
//	jars/zookeeper-<pom hash>/lib/*.jar   mvn dependency:copy-dependencies of maven/zookeeper/pom.xml
//	jars/kafka-<pom hash>/lib/*.jar       the same for maven/kafka/pom.xml
//	bin/temporal (+ temporal.version)      go install github.com/temporalio/cli/cmd/temporal@v1.5.1
//	logs/maven-*.log, logs/temporal-build.log
//
// The poms are embedded in the binary. The first run takes a few minutes
// (the Temporal build about 8 minutes on 2 cores) and prints progress; a
// later run checks two stamp files. A missing java, mvn or go is reported
// as a *MissingToolError naming what to install. Processes that share a
// cache wait for each other (a file lock).
//
// # The data folder
//
// Config.DataDir ($CLOUDSERVERS_DATA, else ./.data) is kept between runs:
//
//	zookeeper/zoo.cfg, zookeeper/data/    written on every start / ZooKeeper's snapshots and logs
//	kafka/server.properties, log4j2.xml   written on every start
//	kafka/data/                           Kafka's log dirs, formatted on the first start
//	temporal/temporal.db                  the dev server's SQLite database (WAL)
//	logs/{zookeeper,kafka,temporal}.log   each component's stdout+stderr, appended
//	ports.json                            the ports used last (see below)
//	stack.lock                            held while a stack runs: one stack per folder
//
// # Ports
//
// Everything listens on 127.0.0.1 only. Every port is configurable; 0
// means "any free port", and then the port recorded in ports.json for the
// same data folder is preferred if it is free, so URLs (the Temporal UI)
// survive restarts. A configured port that is taken is an error
// (*PortBusyError, one line naming the component and the port); nothing
// ever falls back to a well-known default like 2181 or 9092. Kafka uses a
// static controller quorum, so its ports may change between runs of the
// same data folder.
//
// # Starting and stopping
//
//	st, err := devstack.Start(ctx, devstack.Config{DataDir: dir, Log: os.Stderr})
//	if err != nil { ... }           // anything started is already stopped again
//	defer st.Stop()
//	e := st.Endpoints()             // e.Kafka, e.ZooKeeper, e.Temporal, e.TemporalUI, ...
//
// Start runs Ensure, starts the three components side by side and
// health-checks each (ZooKeeper: ruok → imok; Kafka: a live broker and a
// controller in a metadata answer; Temporal: CheckHealth, the namespace
// and every one of SearchAttributes registered, and the UI answering), then
// creates the topics (Topics, CreateTopics: explicit partitions and
// configs, idempotent). The topics are cloudservers.requests
// (Config.RequestPartitions, default 6), the compacted state topics
// cloudservers.servers and cloudservers.operations, cloudservers.deadletter
// (1 partition) and OpenStack's notification topics (NotificationPartitions each).
//
// Stop sends SIGTERM to each process group in reverse start order, waits
// (bounded per process), then SIGKILLs. Every child runs in its own process
// group with Pdeathsig SIGKILL, forked from a thread that lives as long as
// the process, so nothing outlives the parent even when it is killed with
// SIGKILL. After such a kill, the next start on the same data folder works
// (Kafka then recovers its logs: about 15 s instead of 5).
//
// # Endpoints file
//
// Endpoints is the JSON contract between `cloudservers stack
// -endpoints-file F`, scripts and integration tests (WriteEndpoints,
// LoadEndpoints). Integration tests (build tag integration) call
// TestEndpoints(t), which reads the file named by $CLOUDSERVERS_ENDPOINTS
// (scripts/test-stack.sh sets it) and fails the test with instructions when
// it is unset. Fields are only ever added; readers ignore unknown ones.
//
// # The process supervisor
//
// Group supervises any child processes, for example the application's
// (the API, the bridges, the worker, the simulator: the same binary with
// other subcommands):
//
//	g := devstack.NewGroup(os.Stderr)        // or st.Group(): stopped by st.Stop, before the infrastructure
//	err := g.Start(ctx, devstack.Process{
//		Name:    "bridge-1",
//		Cmd:     []string{exe, "bridge", "-id", "1"},
//		Env:     []string{"CLOUDSERVERS_KAFKA=" + strings.Join(e.Kafka, ",")},
//		LogFile: filepath.Join(e.LogDir, "bridge-1.log"),
//		Ready:   devstack.HTTPReady("http://127.0.0.1:8081/healthz"), // polled until nil
//	})
//	g.Kill("bridge-1")                 // SIGKILL its process group: failover demo
//	g.Restart(ctx, "bridge-1")         // the same spec again; keeps its place in the stop order
//	for x := range g.Exits() { ... }   // processes that ended on their own
//	g.Stop()                           // reverse start order, SIGTERM → bounded wait → SIGKILL
//
// Start returns when Ready succeeds; if the process exits first, or Ready
// keeps failing for ReadyTimeout, the process is stopped and the error (a
// *ProcessError) ends with the last 30 lines of its log. Output is appended
// to LogFile, each run starting with a "=====" header line; failure tails
// only show the current run.
package devstack

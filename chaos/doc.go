// Package chaos proves the bridge's coordination with real processes (build
// tag integration): bridge processes of the built binary, started and
// killed by the tests, on the real ZooKeeper, Kafka and Temporal of the
// test stack (scripts/test-stack.sh), with an in-process worker and
// OpenStack simulator.
//
//   - failover: kill -9 the owner of partitions while requests stream in;
//     the partner takes over within the session timeout + 2 s, resuming
//     from the committed offsets; restart it: the partitions go back; every
//     request is started exactly once. Both assignment modes (ZooKeeper
//     with partners, Kafka consumer group), with their takeover times.
//   - partition: cut one owner's ZooKeeper connection (a TCP proxy): it
//     pauses before its session expires, the partner takes over, nothing is
//     processed twice.
//   - zombie: freeze an owner (SIGSTOP) past its session timeout, wake it:
//     how long it goes on believing it owns its partitions, and every saga
//     still started once.
//   - singletons: kill the leading router and reaper: a standby takes over;
//     sagas waiting on notifications still complete; leaked resources are
//     reaped through a reap workflow.
//   - bad input: ZooKeeper or Kafka down at start-up (clear errors,
//     retries with backoff); malformed messages on the requests and
//     notification topics (logged with partition and offset, counted,
//     dead-lettered, passed).
//
// Each test has its own requests topic, task queue, consumer groups and
// ZooKeeper chroot. Run:
//
//	scripts/test-stack.sh go test -tags integration -v -run . ./chaos/
//
// The measured takeover times are logged as lines starting with
// "TAKEOVER" (go test -v).
package chaos

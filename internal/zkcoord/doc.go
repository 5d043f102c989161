// Package zkcoord is the ZooKeeper coordination used by the bridge
// processes: partition ownership with failover partners, and leader
// election for single-instance services (the notification router, the
// reaper). It wraps github.com/go-zookeeper/zk.
//
// # Use
//
//	c, err := zkcoord.Connect(ctx, zkcoord.Config{
//		Servers:        []string{"127.0.0.1:2181"},
//		Chroot:         "/cloudservers",       // created if missing
//		SessionTimeout: 4 * time.Second,        // ≈ failover time
//		ProcessID:      "bridge-a",
//		Logger:         slog.Default(),
//	})
//	defer c.Close()
//
//	asn := zkcoord.DefaultAssignment(partitions, "bridge-a", "bridge-b")
//	if err := asn.Validate(partitions, []string{"bridge-a", "bridge-b"}); err != nil { ... }
//	go c.OwnPartitions(ctx, asn, func(ctx context.Context, l zkcoord.Lease) error {
//		// consume partition l.Partition from the last committed offset
//		// until ctx is cancelled; stop at a message boundary, commit, return.
//	})
//	go c.RunSingleton(ctx, "notification-router", runRouter)
//	st, _ := c.Status(ctx) // for the status command / admin endpoint
//
// Connect retries (logging every attempt, backing off 1 s, 2 s, 4 s, 8 s,
// then every 15 s) until ZooKeeper answers or ctx ends. OwnPartition,
// OwnPartitions and RunSingleton block until ctx ends or Close is called,
// and return only after their run function has returned and their nodes are
// deleted. Close stops them all, waits for them and for the client library's
// goroutines, and ends the session.
//
// # ZooKeeper layout
//
// Under the chroot (default /cloudservers):
//
//	partitions/<p>                  persistent; data {"candidates":[primary, partner...]}
//	partitions/<p>/candidates/<id>  ephemeral: process <id> is alive and a candidate for p
//	partitions/<p>/lock/n_<token>_<seq>
//	                                ephemeral sequential; the lowest one owns p;
//	                                data {"process","token","since"}
//	singletons/<name>/n_<token>_<seq>
//	                                ephemeral sequential; the lowest one leads
//
// # Partition ownership
//
// Each partition has an ordered candidate list (configuration: Assignment).
// The preferred candidate is the first one, in that order, whose candidate
// node exists, that is, whose ZooKeeper session lives. Only the preferred
// candidate queues for the lock; the owner is whoever's lock node is first.
//
//   - Failover: when the owner's session ends (process death, or a network
//     partition longer than the session timeout), the server deletes its
//     ephemeral nodes; the next live candidate becomes preferred, queues,
//     and owns the partition. Measured: about one session timeout after
//     the owner's last contact with the server.
//   - Handback: when a candidate with higher priority appears, the owner's
//     run context is cancelled; after run has returned, the owner deletes
//     its lock node, and only then does the queued preferred candidate find
//     itself first and start. Runs never overlap in a handback.
//   - A process restarting under the same ID before its old session
//     expired waits until the old candidate node is gone: the old session
//     may still be a zombie owner.
//   - If run returns by itself while the process still owns the partition,
//     the lock is kept (nobody else may take it while this process is the
//     preferred live candidate) and run is called again after a backoff
//     (1 s doubling to 30 s).
//
// # Singletons
//
// ZooKeeper's leader election recipe: every process adds an ephemeral
// sequential node; the lowest leads; each standby watches only its
// predecessor (no herd effect). If run returns by itself, the leader
// steps down (deletes its node, so a standby takes over) and queues again
// after a backoff.
//
// # Safety when the connection is lost
//
// A ZooKeeper client is never told that it lost a lock while it is
// partitioned away from the server, so on StateDisconnected the holder
// assumes it lost it: the run context is cancelled at once (the session
// event is taken from the client's synchronous event callback, which, unlike
// the 6-slot event channel, never drops an event). The client notices a
// silent network after 2/3 of the session timeout (its read timeout), the
// server expires the session after the full timeout, so a run that returns
// within the remaining third never overlaps with the next owner (measured:
// 3 s session, run stopped 2.0 s after the cut, partner started 3.2 s after
// it). A closed connection is noticed at once.
//
// When the same session reconnects before it expired, the loop re-reads the
// lock queue and, if its lock node (same path, token and czxid) is still
// first, calls run again with the same Lease. After StateExpired, or with a
// new session, everything starts again from scratch with a new lock node.
//
// Lock node paths are unique (sequential), so a delete can only hit the
// node it was meant for. This matters because the client library may send
// a request that was queued during a disconnection in the next session: a
// lock at one fixed path has version 0 in every incarnation, and a late
// Delete(path, 0) would remove another process's lock. Nodes of our own
// session that we did not know about (a create whose answer was lost) are
// adopted or deleted, never waited on.
//
// # Fencing
//
// Lease.Fence is the lock node's czxid: it grows with every new holder,
// partition and singleton alike. A zombie (a process frozen longer than
// the session timeout, or a run that ignores its context) can still act
// for a moment after the next owner started; writes that carry the fence
// can be rejected downstream, and idempotent starts (deduplication by
// operation ID) make the overlap harmless. Lease.Token is the GUID in the
// lock node; CheckLease(lease) asks the server whether the lease is still
// held, for a run function that wants to check before an irreversible step.
//
// # Session timeout
//
// Failover takes about Config.SessionTimeout. The server clamps the
// requested value to [minSessionTimeout, maxSessionTimeout] (default 2 and
// 20 ticks); Coordinator.SessionTimeout returns the negotiated one. The
// server expires sessions on tick boundaries, so failover takes between
// the timeout and the timeout plus one tickTime: with tickTime=2000 a 2 s
// session fails over in 2 to 4 s, with tickTime=500 in 2 to 2.5 s.
//
// # Tests
//
// Unit tests: go test -race ./internal/zkcoord/
//
// Integration tests run against a real ZooKeeper named by the endpoints
// file in $CLOUDSERVERS_ENDPOINTS ({"zookeeper":"host:port"}), each in a
// fresh chroot, and cut connections through a TCP proxy:
//
//	CLOUDSERVERS_ENDPOINTS=/path/endpoints.json go test -race -tags integration ./internal/zkcoord/
package zkcoord

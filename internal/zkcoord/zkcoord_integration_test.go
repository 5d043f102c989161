//go:build integration

package zkcoord

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Failover to the partner when the primary's session ends, and handback
// when the primary returns, with no overlap in the handback.
func TestPartitionFailoverAndHandback(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	a := connectT(t, log, proxyA.Addr(), chroot, "bridge-a", timeout)
	b := connectT(t, log, zkServer, chroot, "bridge-b", timeout)
	cands := []string{"bridge-a", "bridge-b"}
	background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 0, cands, rec.run("bridge-a")) })
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 0, cands, rec.run("bridge-b")) })

	a1 := rec.mustWait("bridge-a", true, 1, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := rec.count("bridge-b", true); n != 0 {
		t.Fatalf("the partner ran while the primary is alive: %s", rec.dump())
	}
	st, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Partitions) != 1 || st.Partitions[0].Owner == nil || st.Partitions[0].Owner.Process != "bridge-a" ||
		st.Partitions[0].Owner.Fence != a1.lease.Fence || st.Partitions[0].Owner.Token != a1.lease.Token ||
		!slices.Equal(st.Partitions[0].Alive, cands) || !slices.Equal(st.Partitions[0].Candidates, cands) {
		t.Fatalf("status = %+v", st.Partitions)
	}

	// The primary's process dies: its connection goes, its session ends
	// one session timeout later on the server.
	cut := time.Now()
	proxyA.Stop()
	aStop := rec.mustWait("bridge-a", false, 1, 2*time.Second)
	b1 := rec.mustWait("bridge-b", true, 1, timeout+5*time.Second)
	takeover := b1.at.Sub(cut)
	t.Logf("MEASURED failover: primary's run stopped %v after the cut; partner took over %v after the cut (session timeout %v)",
		aStop.at.Sub(cut).Round(time.Millisecond), takeover.Round(time.Millisecond), timeout)
	if takeover > timeout+2*time.Second {
		t.Errorf("takeover took %v, want within session timeout + 2s = %v", takeover, timeout+2*time.Second)
	}
	if takeover < timeout/2 {
		t.Errorf("takeover after %v: the partner did not wait for the primary's session to end", takeover)
	}
	if !(b1.lease.Fence > a1.lease.Fence) {
		t.Errorf("fence did not grow: primary %d, partner %d", a1.lease.Fence, b1.lease.Fence)
	}

	// The primary comes back (new session): the partner stops, releases,
	// and only then does the primary start.
	back := time.Now()
	proxyA.Start()
	bStop := rec.mustWait("bridge-b", false, 1, 10*time.Second)
	a2 := rec.mustWait("bridge-a", true, 2, 10*time.Second)
	t.Logf("MEASURED handback: partner's run returned %v after the primary reconnected; primary started %v after (gap %v)",
		bStop.at.Sub(back).Round(time.Millisecond), a2.at.Sub(back).Round(time.Millisecond), a2.at.Sub(bStop.at).Round(time.Millisecond))
	if bStop.seq > a2.seq || a2.at.Before(bStop.at) {
		t.Errorf("handback overlapped: partner stopped at #%d, primary started at #%d: %s", bStop.seq, a2.seq, rec.dump())
	}
	if !(a2.lease.Fence > b1.lease.Fence) || a2.lease.Token == a1.lease.Token || a2.lease.Session == a1.lease.Session {
		t.Errorf("the primary's new tenure should have a new session, token and a larger fence: %+v after %+v", a2.lease, b1.lease)
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v", o)
	}
	time.Sleep(200 * time.Millisecond)
	if got := rec.current("partition 0"); got != "bridge-a" {
		t.Errorf("owner at the end = %q, want bridge-a", got)
	}
}

// A network partition: the owner notices only through its read timeout
// (2/3 of the session timeout) and must stop before the server expires its
// session and the partner takes over.
func TestOwnerStopsBeforeItsSessionExpiresInAPartition(t *testing.T) {
	const timeout = 3 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	a := connectT(t, log, proxyA.Addr(), chroot, "bridge-a", timeout)
	b := connectT(t, log, zkServer, chroot, "bridge-b", timeout)
	cands := []string{"bridge-a", "bridge-b"}
	background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 7, cands, rec.run("bridge-a")) })
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 7, cands, rec.run("bridge-b")) })
	rec.mustWait("bridge-a", true, 1, 10*time.Second)

	cut := time.Now()
	proxyA.Blackhole()
	aStop := rec.mustWait("bridge-a", false, 1, timeout)
	b1 := rec.mustWait("bridge-b", true, 1, timeout+5*time.Second)
	t.Logf("MEASURED partition: owner stopped %v after the cut (before expiry at ~%v); partner took over %v after the cut",
		aStop.at.Sub(cut).Round(time.Millisecond), timeout, b1.at.Sub(cut).Round(time.Millisecond))
	if d := aStop.at.Sub(cut); d >= timeout {
		t.Errorf("the partitioned owner stopped %v after the cut, not before its session could expire (%v)", d, timeout)
	}
	if aStop.seq > b1.seq {
		t.Errorf("the partner started before the partitioned owner stopped: %s", rec.dump())
	}
	if d := b1.at.Sub(cut); d > timeout+2*time.Second {
		t.Errorf("takeover took %v, want within %v", d, timeout+2*time.Second)
	}

	proxyA.Heal() // the old session is gone: a comes back with a new one and gets the partition back
	rec.mustWait("bridge-b", false, 1, 10*time.Second)
	a2 := rec.mustWait("bridge-a", true, 2, 10*time.Second)
	if a2.lease.Session == aStop.lease.Session {
		t.Errorf("resumed the expired session %x", a2.lease.Session)
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v", o)
	}
}

// A short cut: the owner stops at once, the same session reconnects within
// the session timeout, re-checks its lock (same token) and resumes; the
// partner never runs.
func TestSameSessionResumesAfterShortCut(t *testing.T) {
	const timeout = 4 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	a := connectT(t, log, proxyA.Addr(), chroot, "bridge-a", timeout)
	b := connectT(t, log, zkServer, chroot, "bridge-b", timeout)
	cands := []string{"bridge-a", "bridge-b"}
	background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 1, cands, rec.run("bridge-a")) })
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 1, cands, rec.run("bridge-b")) })
	a1 := rec.mustWait("bridge-a", true, 1, 10*time.Second)

	cut := time.Now()
	proxyA.Stop()
	aStop := rec.mustWait("bridge-a", false, 1, time.Second)
	t.Logf("MEASURED: owner's run stopped %v after its connection closed", aStop.at.Sub(cut).Round(time.Millisecond))
	if d := aStop.at.Sub(cut); d > 500*time.Millisecond {
		t.Errorf("owner stopped %v after StateDisconnected, want at once", d)
	}
	time.Sleep(300 * time.Millisecond)
	proxyA.Start()
	a2 := rec.mustWait("bridge-a", true, 2, timeout)
	t.Logf("MEASURED: same session resumed %v after the cut", a2.at.Sub(cut).Round(time.Millisecond))
	if a2.lease != a1.lease {
		t.Errorf("resumed with lease %+v, want the same lease %+v", a2.lease, a1.lease)
	}
	if a.SessionID() != a1.lease.Session {
		t.Errorf("session changed: %x -> %x", a1.lease.Session, a.SessionID())
	}
	time.Sleep(timeout) // past the old expiry: nothing may have moved
	if n := rec.count("bridge-b", true); n != 0 {
		t.Errorf("partner ran although the primary's session survived: %s", rec.dump())
	}
	if err := a.CheckLease(a1.lease); err != nil {
		t.Errorf("CheckLease after resume: %v", err)
	}
}

// Graceful stop, restart under the same process ID, three candidates, and
// a chroot that has to be created.
func TestGracefulLeaveAndSecondPartner(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, log, rec := zkAddr(t), newTestLog(t), newRecorder(t)
	chroot := testChroot(t) + "/nested/deeper"
	a := connectT(t, log, zkServer, chroot, "a", timeout)
	b := connectT(t, log, zkServer, chroot, "b", timeout)
	c := connectT(t, log, zkServer, chroot, "c", timeout)
	cands := []string{"a", "b", "c"}
	stopA := background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 2, cands, rec.run("a")) })
	stopB := background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 2, cands, rec.run("b")) })
	background(t, func(ctx context.Context) error { return c.OwnPartition(ctx, 2, cands, rec.run("c")) })
	a1 := rec.mustWait("a", true, 1, 10*time.Second)
	if err := b.CheckLease(a1.lease); err == nil || !errors.Is(err, ErrLeaseLost) {
		t.Errorf("another process's CheckLease = %v, want ErrLeaseLost (not its session)", err)
	}

	// A graceful stop releases at once: no session timeout to wait for.
	t0 := time.Now()
	stopA()
	b1 := rec.mustWait("b", true, 1, 2*time.Second)
	t.Logf("MEASURED graceful release: partner started %v after the owner's stop was requested", b1.at.Sub(t0).Round(time.Millisecond))
	if err := a.CheckLease(a1.lease); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("CheckLease of the released lease = %v, want ErrLeaseLost", err)
	}

	t0 = time.Now()
	stopB() // the second partner takes over
	c1 := rec.mustWait("c", true, 1, 2*time.Second)
	t.Logf("MEASURED: second partner started %v after the first partner stopped", c1.at.Sub(t0).Round(time.Millisecond))

	// The primary restarts as a new process: handback from c to a.
	a2c := connectT(t, log, zkServer, chroot, "a", timeout)
	background(t, func(ctx context.Context) error { return a2c.OwnPartition(ctx, 2, cands, rec.run("a")) })
	cStop := rec.mustWait("c", false, 1, 5*time.Second)
	a2 := rec.mustWait("a", true, 2, 5*time.Second)
	if a2.seq < cStop.seq {
		t.Errorf("handback overlapped: %s", rec.dump())
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Chroot != chroot || len(st.Partitions) != 1 || st.Partitions[0].Owner == nil || st.Partitions[0].Owner.Process != "a" ||
		!slices.Equal(st.Partitions[0].Alive, []string{"a", "c"}) || st.Partitions[0].HandbackPending {
		t.Errorf("status = %+v", st)
	}
	var text strings.Builder
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", text.String())
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v", o)
	}
}

// A process that restarts before its old session expired waits for the
// old session (a possible zombie owner) to end before it joins.
func TestRestartWaitsOutTheOldSession(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	old := connectT(t, log, proxyA.Addr(), chroot, "bridge-a", timeout)
	b := connectT(t, log, zkServer, chroot, "bridge-b", timeout)
	cands := []string{"bridge-a", "bridge-b"}
	background(t, func(ctx context.Context) error { return old.OwnPartition(ctx, 3, cands, rec.run("bridge-a")) })
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 3, cands, rec.run("bridge-b")) })
	a1 := rec.mustWait("bridge-a", true, 1, 10*time.Second)

	proxyA.Stop() // the old process is gone for good; its session lingers on the server
	rec.mustWait("bridge-a", false, 1, 2*time.Second)
	restarted := time.Now()
	fresh := connectT(t, log, zkServer, chroot, "bridge-a", timeout)
	background(t, func(ctx context.Context) error { return fresh.OwnPartition(ctx, 3, cands, rec.run("bridge-a")) })
	a2 := rec.mustWait("bridge-a", true, 2, timeout+5*time.Second)
	t.Logf("MEASURED: restarted primary owns again %v after its restart", a2.at.Sub(restarted).Round(time.Millisecond))
	if a2.lease.Session == a1.lease.Session || a2.lease.Session != fresh.SessionID() {
		t.Errorf("new tenure %+v should belong to the new session %x", a2.lease, fresh.SessionID())
	}
	if !log.contains("candidate node of an earlier session of this process still exists") {
		t.Errorf("the restarted process did not wait for its old session")
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v", o)
	}
}

// Singleton: three processes, exactly one leader at any time; killing the
// leader's connection moves leadership to a standby within the session
// timeout + 2s.
func TestSingletonElection(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	procs := []string{"p1", "p2", "p3"}
	proxies := map[string]*tcpProxy{}
	coords := map[string]*Coordinator{}
	stops := map[string]func(){}
	for _, p := range procs {
		proxies[p] = newProxy(t, zkServer)
		c := connectT(t, log, proxies[p].Addr(), chroot, p, timeout)
		coords[p] = c
		stops[p] = background(t, func(ctx context.Context) error { return c.RunSingleton(ctx, "router", rec.run(p)) })
	}
	leader := func() string {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if l := rec.current("singleton router"); l != "" {
				return l
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no leader: %s", rec.dump())
		return ""
	}
	first := leader()
	time.Sleep(500 * time.Millisecond)
	st, err := coords["p1"].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Singletons) != 1 || st.Singletons[0].Leader == nil || st.Singletons[0].Leader.Process != first || len(st.Singletons[0].Standbys) != 2 {
		t.Fatalf("status = %+v", st.Singletons)
	}

	cut := time.Now()
	proxies[first].Stop()
	firstStop := rec.mustWait(first, false, 1, 2*time.Second)
	var second string
	deadline := time.Now().Add(timeout + 5*time.Second)
	for second == "" && time.Now().Before(deadline) {
		if l := rec.current("singleton router"); l != "" && l != first {
			second = l
		}
		time.Sleep(5 * time.Millisecond)
	}
	if second == "" {
		t.Fatalf("no standby took over: %s", rec.dump())
	}
	secondStart := rec.mustWait(second, true, 1, time.Second)
	takeover := secondStart.at.Sub(cut)
	t.Logf("MEASURED singleton failover: leader %s stopped %v after the cut, %s leads %v after the cut (session timeout %v)",
		first, firstStop.at.Sub(cut).Round(time.Millisecond), second, takeover.Round(time.Millisecond), timeout)
	if takeover > timeout+2*time.Second {
		t.Errorf("standby took over after %v, want within %v", takeover, timeout+2*time.Second)
	}
	if firstStop.seq > secondStart.seq {
		t.Errorf("leaders overlapped: %s", rec.dump())
	}
	if secondStart.lease.Fence <= firstStop.lease.Fence {
		t.Errorf("fence did not grow: %d then %d", firstStop.lease.Fence, secondStart.lease.Fence)
	}

	// The old leader's process comes back as a standby.
	proxies[first].Start()
	// A graceful stop hands over at once to the last one.
	t0 := time.Now()
	stops[second]()
	var third string
	for _, p := range procs {
		if p != first && p != second {
			third = p
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	var next string
	for time.Now().Before(deadline) {
		if next = rec.current("singleton router"); next != "" && next != second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("MEASURED: after a graceful stop, %s leads %v later", next, time.Since(t0).Round(time.Millisecond))
	if next != third && next != first {
		t.Errorf("leader after graceful stop = %q", next)
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("more than one leader at once: %v", o)
	}
}

// Connect keeps retrying while ZooKeeper is down and succeeds once it is up;
// with ctx ending first it returns a clear error.
func TestConnectRetriesWhileZooKeeperIsDown(t *testing.T) {
	zkServer, log := zkAddr(t), newTestLog(t)
	proxy := newProxy(t, zkServer)
	proxy.Stop()
	go func() {
		time.Sleep(2 * time.Second)
		proxy.Start()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := Connect(ctx, Config{Servers: []string{proxy.Addr()}, Chroot: testChroot(t), SessionTimeout: 2 * time.Second,
		ProcessID: "late", Logger: log.logger()})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer c.Close()
	t.Logf("connected %v after start while ZooKeeper came up after 2s", time.Since(t0).Round(time.Millisecond))
	if !log.contains("zookeeper unreachable, retrying") {
		t.Errorf("no retry was logged")
	}

	// Nothing listens: a clear error when ctx ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	_, err = Connect(ctx2, Config{Servers: []string{dead}, SessionTimeout: time.Second, Logger: log.logger()})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dead) ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Connect to nothing = %v, want an error naming %s and the refusal", err, dead)
	}
	t.Logf("error: %v", err)
}

// OwnPartition refuses a process that is not a candidate, and everything
// returns ErrClosed after Close.
func TestMisuse(t *testing.T) {
	zkServer, log := zkAddr(t), newTestLog(t)
	c := connectT(t, log, zkServer, testChroot(t), "x", 2*time.Second)
	ctx := context.Background()
	rec := newRecorder(t)
	if err := c.OwnPartition(ctx, 0, []string{"a", "b"}, rec.run("x")); !errors.Is(err, ErrNotCandidate) {
		t.Errorf("OwnPartition for a non-candidate = %v", err)
	}
	if err := c.OwnPartition(ctx, 0, []string{"x", "x"}, rec.run("x")); err == nil {
		t.Errorf("OwnPartition with a duplicate candidate accepted")
	}
	if err := c.OwnPartitions(ctx, DefaultAssignment(2, "a", "b"), rec.run("x")); !errors.Is(err, ErrNotCandidate) {
		t.Errorf("OwnPartitions for a process in no partition = %v", err)
	}
	background(t, func(ctx context.Context) error { return c.OwnPartition(ctx, 4, []string{"x"}, rec.run("x")) })
	rec.mustWait("x", true, 1, 5*time.Second)
	if err := c.OwnPartition(ctx, 4, []string{"x"}, rec.run("x")); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("a second OwnPartition for the same partition = %v, want ErrAlreadyRunning", err)
	}
	c.Close()
	if err := c.RunSingleton(ctx, "router", rec.run("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("RunSingleton after Close = %v", err)
	}
}

// Close stops running loops: their runs are cancelled, they return
// ErrClosed, and their nodes are gone for the others at once.
func TestCloseStopsLoops(t *testing.T) {
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	a := connectT(t, log, zkServer, chroot, "a", 2*time.Second)
	b := connectT(t, log, zkServer, chroot, "b", 2*time.Second)
	asn := DefaultAssignment(2, "a", "b")
	errc := make(chan error, 1)
	go func() { errc <- a.OwnPartitions(context.Background(), asn, rec.run("a")) }()
	background(t, func(ctx context.Context) error { return b.OwnPartitions(ctx, asn, rec.run("b")) })
	rec.mustWait("a", true, 1, 10*time.Second)
	rec.mustWait("b", true, 1, 10*time.Second)
	t0 := time.Now()
	a.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("OwnPartitions after Close = %v", err)
	}
	if rec.count("a", true) != rec.count("a", false) {
		t.Errorf("Close returned with runs still going: %s", rec.dump())
	}
	rec.mustWait("b", true, 2, 2*time.Second) // b takes a's partition 0 at once
	t.Logf("MEASURED: partner took over %v after Close", time.Since(t0).Round(time.Millisecond))
}

// The primary's connection flaps, sometimes shorter than the session
// timeout (the same session resumes), sometimes longer (the partner takes
// over, then hands back). The owners never overlap, and the primary ends
// up owning the partition.
func TestFlappingPrimaryNeverOverlaps(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	a := connectT(t, log, proxyA.Addr(), chroot, "bridge-a", timeout)
	b := connectT(t, log, zkServer, chroot, "bridge-b", timeout)
	cands := []string{"bridge-a", "bridge-b"}
	background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 5, cands, rec.run("bridge-a")) })
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 5, cands, rec.run("bridge-b")) })
	rec.mustWait("bridge-a", true, 1, 10*time.Second)

	settled := func() {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if rec.current("partition 5") == "bridge-a" {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the primary did not get the partition back: %s", rec.dump())
	}
	for i, cut := range []time.Duration{300 * time.Millisecond, 3 * time.Second, 700 * time.Millisecond, 100 * time.Millisecond, 2500 * time.Millisecond} {
		partnerRuns := rec.count("bridge-b", true)
		proxyA.Stop()
		time.Sleep(cut)
		proxyA.Start()
		settled()
		t.Logf("cut %d of %v: partner ran %d time(s)", i+1, cut, rec.count("bridge-b", true)-partnerRuns)
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v\n%s", o, rec.dump())
	}
}

// A run that fails: a partition owner keeps its lock and calls run again
// after a backoff with the same lease; a singleton leader steps down so a
// standby can try.
func TestRunReturningOnItsOwn(t *testing.T) {
	zkServer, chroot, log := zkAddr(t), testChroot(t), newTestLog(t)
	a := connectT(t, log, zkServer, chroot, "a", 2*time.Second)
	b := connectT(t, log, zkServer, chroot, "b", 2*time.Second)

	type call struct {
		at    time.Time
		lease Lease
	}
	calls := make(chan call, 10)
	var n atomic.Int32
	failOnce := func(ctx context.Context, l Lease) error {
		calls <- call{time.Now(), l}
		if n.Add(1) == 1 {
			return errors.New("kafka unreachable")
		}
		<-ctx.Done()
		return nil
	}
	background(t, func(ctx context.Context) error { return a.OwnPartition(ctx, 0, []string{"a", "b"}, failOnce) })
	var first, second call
	for i, c := range []*call{&first, &second} {
		select {
		case *c = <-calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("run call %d did not come", i+1)
		}
	}
	if first.lease != second.lease {
		t.Errorf("run was called again with another lease: %+v then %+v", first.lease, second.lease)
	}
	if d := second.at.Sub(first.at); d < 900*time.Millisecond {
		t.Errorf("run was called again after %v, want a backoff of 1s", d)
	}

	rec := newRecorder(t)
	leaderFails := func(proc string) RunFunc {
		return func(ctx context.Context, l Lease) error {
			rec.add(proc, true, l)
			defer rec.add(proc, false, l)
			if proc == "a" {
				return errors.New("cannot route")
			}
			<-ctx.Done()
			return nil
		}
	}
	background(t, func(ctx context.Context) error { return a.RunSingleton(ctx, "reaper", leaderFails("a")) })
	rec.mustWait("a", true, 1, 5*time.Second)
	background(t, func(ctx context.Context) error { return b.RunSingleton(ctx, "reaper", leaderFails("b")) })
	rec.mustWait("b", true, 1, 5*time.Second)
	st, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Singletons) != 1 || st.Singletons[0].Leader == nil || st.Singletons[0].Leader.Process != "b" {
		t.Errorf("after the leader's run failed, status = %+v", st.Singletons)
	}
}

// A notification topic's partitions (Routes) are owned apart from the
// request partitions with the same numbers: their own candidates, locks
// and fences under <chroot>/routes/<topic>, the request layout untouched;
// a route fails over to its partner like a request partition does.
func TestRoutesBesideRequests(t *testing.T) {
	const timeout = 2 * time.Second
	zkServer, chroot, log, rec := zkAddr(t), testChroot(t), newTestLog(t), newRecorder(t)
	proxyA := newProxy(t, zkServer)
	a := connectT(t, log, proxyA.Addr(), chroot, "a", timeout)
	b := connectT(t, log, zkServer, chroot, "b", timeout)
	const topic = "versioned_notifications.info"
	routes := Assignment{0: {"a", "b"}, 1: {"b", "a"}}
	// Request partition 0 has the opposite primary: b.
	background(t, func(ctx context.Context) error { return b.OwnPartition(ctx, 0, []string{"b", "a"}, rec.run("b")) })
	for _, c := range []*Coordinator{a, b} {
		proc := c.ProcessID()
		background(t, func(ctx context.Context) error {
			return c.OwnResourcePartitions(ctx, Routes(topic), routes, rec.run(proc))
		})
	}
	// a may hold route 1 for a moment, while b is not yet its live
	// candidate, and hand it back: its lease of route 0 is the one kept.
	var a1 event
	for n := 1; ; n++ {
		a1 = rec.mustWait("a", true, n, 10*time.Second)
		if a1.lease.Topic == topic && a1.lease.Partition == 0 {
			break
		}
		if a1.lease.Topic != topic || n == 3 {
			t.Fatalf("a's lease #%d = %+v, want route %s/0 (or route 1 for a moment)", n, a1.lease, topic)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for rec.current("route "+topic+"/1") != "b" || rec.current("partition 0") != "b" {
		if time.Now().After(deadline) {
			t.Fatalf("b owns neither route %s/1 nor request partition 0: %s", topic, rec.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, _, err := b.conn.Exists(chroot + "/routes/" + topic + "/0/lock"); err != nil || !ok {
		t.Fatalf("route lock node under %s/routes: exists %v, %v", chroot, ok, err)
	}
	st, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Partitions) != 1 || st.Partitions[0].Topic != "" || st.Partitions[0].Owner == nil || st.Partitions[0].Owner.Process != "b" {
		t.Errorf("request partitions = %+v, want partition 0 owned by b alone", st.Partitions)
	}
	if len(st.Routes) != 2 || st.Routes[0].Topic != topic || st.Routes[0].Owner == nil || st.Routes[0].Owner.Process != "a" ||
		st.Routes[0].Owner.Fence != a1.lease.Fence || st.Routes[1].Owner == nil || st.Routes[1].Owner.Process != "b" ||
		!slices.Equal(st.Routes[0].Candidates, []string{"a", "b"}) {
		t.Fatalf("routes = %+v", st.Routes)
	}
	var text strings.Builder
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), topic+"/0") {
		t.Errorf("the text status does not name route %s/0:\n%s", topic, text.String())
	}
	t.Logf("status:\n%s", text.String())

	// a dies: b takes its route over after a's session ends.
	cut := time.Now()
	proxyA.Stop()
	var b1 event
	for i := 1; ; i++ {
		e := rec.mustWait("b", true, i, timeout+5*time.Second)
		if e.lease.Topic == topic && e.lease.Partition == 0 && e.at.After(cut) {
			b1 = e
			break
		}
	}
	takeover := b1.at.Sub(cut)
	t.Logf("MEASURED route failover: partner took route %s/0 over %v after the cut (session timeout %v)", topic, takeover.Round(time.Millisecond), timeout)
	if takeover > timeout+2*time.Second {
		t.Errorf("takeover took %v, want within session timeout + 2s", takeover)
	}
	if !(b1.lease.Fence > a1.lease.Fence) {
		t.Errorf("fence did not grow: %d then %d", a1.lease.Fence, b1.lease.Fence)
	}
	if o := rec.overlaps(); len(o) > 0 {
		t.Errorf("overlapping owners: %v", o)
	}
}

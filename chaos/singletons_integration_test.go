//go:build integration

package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/workflows"
)

// TestSingletonFailover kills the process that leads the single-instance
// reaper, and routes notification partitions as their primary, while sagas
// wait for notifications and while leaked resources wait to be reaped. The
// standby must take the reaper and the routes over within the session
// timeout + 2 s; the sagas must complete on notifications the dead router
// never read (the partner resumes from the committed offsets), with no
// reconciliation read; the new reaper must remove the leak through a reap
// workflow and spare the live servers.
func TestSingletonFailover(t *testing.T) {
	const timeout = 4 * time.Second
	// Nova takes 2 s per boot: the notifications the sagas wait for come
	// while no router runs.
	w := newWorld(t, worldOptions{sim: openstacksim.Config{BootTime: 2 * time.Second}})
	ctx := context.Background()
	args := []string{"-processes", "bridge-a,bridge-b", "-session-timeout", timeout.String(),
		// A lost notification would stall its saga for 10 minutes.
		"-event-timeout", "10m",
		"-reap-interval", "2s", "-reap-grace", "3s"}
	// bridge-a starts first and leads both singletons.
	a := startProc(t, "bridge-a", w.bridgeArgs("bridge-a", args...)...)
	a.wait(time.Time{}, time.Minute, "bridge-a routes "+w.notifs.Versioned+".info/0", func(l line) bool {
		return l.is("consuming", "topic", w.notifs.Versioned+".info", "partition", "0")
	})
	a.wait(time.Time{}, time.Minute, "bridge-a's reaper is ready", func(l line) bool { return l.msg == "reaper ready" })
	b := startProc(t, "bridge-b", w.bridgeArgs("bridge-b", args...)...)
	waitOwners(t, b, 2*time.Minute, "each partition with its primary", func(o map[int32]string) bool {
		return o[0] == "bridge-a" && o[1] == "bridge-b" && o[2] == "bridge-a" && o[3] == "bridge-b" && o[4] == "bridge-a" && o[5] == "bridge-b"
	})
	eventually(t, time.Minute, "bridge-b stands by for the reaper", func() error {
		st, err := b.status()
		if err != nil {
			return err
		}
		for _, s := range st.System.Singletons {
			if s.Leader != "bridge-a" {
				return fmt.Errorf("%s led by %q", s.Name, s.Leader)
			}
		}
		if len(st.System.Singletons) != 1 {
			return fmt.Errorf("singletons %v", st.System.Singletons)
		}
		return nil
	})

	// One create per partition; the test waits until each saga asked Nova.
	var reqs []sent
	for p := int32(0); p < partitions; p++ {
		r, err := w.produce(ctx, p, int(p))
		must(t, err)
		reqs = append(reqs, r)
	}
	eventually(t, time.Minute, "every saga has asked Nova for its instance", func() error {
		if n := w.sim.Calls().Count("POST /compute/v2.1/servers"); n < len(reqs) {
			return fmt.Errorf("%d creates", n)
		}
		return nil
	})
	// A leak: what a saga that died half-way would leave, made by the same
	// activities, for a server that exists nowhere else.
	leak := uuid.NewString()
	port, err := w.acts.CreatePort(ctx, activities.CreatePortInput{ServerID: leak, CustomerID: w.customer, Region: "region-one"})
	must(t, err)
	fip, err := w.acts.AllocateFloatingIP(ctx, activities.AllocateFloatingIPInput{ServerID: leak, Region: "region-one"})
	must(t, err)
	inst, err := w.acts.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: leak, CustomerID: w.customer,
		Size: "s-1vcpu-64mb", Image: "tiny", PortID: port.ID})
	must(t, err)
	w.otherCreates++

	killed := a.kill()
	l := b.wait(killed, timeout+time.Minute, "bridge-b routes "+w.notifs.Versioned+".info/0", func(l line) bool {
		return l.is("consuming", "topic", w.notifs.Versioned+".info", "partition", "0")
	})
	routerBack := l.at
	t.Logf("TAKEOVER route=%s.info/0 timeout=%s took=%.2fs", w.notifs.Versioned, timeout, routerBack.Sub(killed).Seconds())
	l = b.wait(killed, timeout+time.Minute, "bridge-b leads the reaper", func(l line) bool { return l.is("leading", "service", "reaper") })
	took := l.at.Sub(killed)
	t.Logf("TAKEOVER singleton=reaper timeout=%s took=%.2fs", timeout, took.Seconds())
	for what, took := range map[string]time.Duration{"the reaper": took, "the route": routerBack.Sub(killed)} {
		if took > timeout+2*time.Second+slack {
			t.Errorf("the standby took %s to take %s over", took, what)
		}
	}

	// No notification lost: every saga completes, on notifications.
	w.verifyExactlyOnce(reqs, 2*time.Minute)
	during := w.published.between(killed, routerBack, "create.end")
	t.Logf("%d create.end notifications (versioned and legacy) were published while no router ran", len(during))
	if len(during) == 0 {
		t.Errorf("no create.end notification was published between the kill and the takeover: the test proved nothing")
	}
	if n := w.sim.Calls().Count("GET /compute/v2.1/servers/{id}"); n != 0 {
		t.Errorf("%d reconciliation reads: a saga missed its notification", n)
	}
	st, err := b.status()
	must(t, err)
	t.Logf("the new router: %v", st.Router)

	// The new reaper removes the leak and nothing else.
	eventually(t, 2*time.Minute, "the leak is reaped", func() error {
		inv := w.sim.Inventory()
		var left []string
		for _, s := range inv.Servers {
			if s.ID == inst.InstanceID {
				left = append(left, "instance "+s.ID)
			}
		}
		for _, p := range inv.Ports {
			if p.ID == port.ID {
				left = append(left, "port "+p.ID)
			}
		}
		for _, f := range inv.FloatingIPs {
			if f.ID == fip.ID {
				left = append(left, "floating IP "+f.ID)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
	inv := w.sim.Inventory()
	if len(inv.Servers) != len(reqs) || len(inv.Ports) < len(reqs) || len(inv.FloatingIPs) != len(reqs) {
		t.Errorf("the live servers' resources must stay: %d instances, %d ports, %d floating IPs for %d servers",
			len(inv.Servers), len(inv.Ports), len(inv.FloatingIPs), len(reqs))
	}

	// Support sees what was done: a reap workflow, found by its search
	// attribute, whose result names the three resources.
	var found string
	eventually(t, time.Minute, "a reap workflow that removed the leak is visible", func() error {
		resp, err := w.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("Operation = 'reap' AND TaskQueue = '%s' AND ExecutionStatus = 'Completed'", w.taskQueue)})
		if err != nil {
			return err
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			if !strings.HasPrefix(id, "reap/") {
				return fmt.Errorf("workflow %s has Operation = reap", id)
			}
			var res workflows.ReapResult
			if err := w.temporal.GetWorkflow(ctx, id, e.GetExecution().GetRunId()).Get(ctx, &res); err != nil {
				return err
			}
			if len(res.Removed) == 3 && strings.Contains(strings.Join(res.Removed, " "), leak) {
				found = id
				t.Logf("%s: examined %d, live %d, removed %v", id, res.Examined, res.Live, res.Removed)
				return nil
			}
		}
		return fmt.Errorf("none of %d reaps removed the leak", len(resp.GetExecutions()))
	})
	if st, err := b.status(); err == nil && st.LastReap != nil {
		t.Logf("bridge-b's last reap: %s %s", st.LastReap.WorkflowID, st.LastReap.Error)
	}
	_ = found
}

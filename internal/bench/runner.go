package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/temporal"
	"github.com/cloudservers/cloudservers/workflows"

	"log/slog"
)

type runner struct {
	cfg Config
	rep *Report
	log io.Writer
	e   Endpoints
	tc  client.Client
	// queue is the raw baseline's own task queue.
	queue string
	// rawHist holds the raw workflows' mean events and signals by shape
	// ("create", "delete"): the baseline of the history rows.
	rawHist map[string][2]float64
}

const (
	secAccept  = "accept"
	secCreate  = "create"
	secDelete  = "delete"
	secHistory = "history"
	secStages  = "stages"
)

func (r *runner) step(format string, args ...any) {
	fmt.Fprintf(r.log, "bench: "+format+"\n", args...)
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.cfg
	tc, err := temporal.Dial(ctx, r.e.Temporal, r.e.TemporalNamespace, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer tc.Close()
	r.tc = tc
	r.queue = fmt.Sprintf("bench-raw-%d", os.Getpid())
	stopWorker, err := rawWorker(tc, r.queue)
	if err != nil {
		return err
	}
	defer stopWorker()
	if err := openQuotas(ctx, r.e.SimAdmin); err != nil {
		return err
	}
	r.step("creating %d customers' API keys", cfg.Customers)
	custs, err := makeCustomers(ctx, r.e, cfg.Customers)
	if err != nil {
		return err
	}
	tr, err := newTracker(ctx, custs)
	if err != nil {
		return err
	}
	defer tr.stop()

	if err := r.accept(ctx, tr, custs); err != nil {
		return err
	}
	created, err := r.creates(ctx, tr, custs)
	if err != nil {
		return err
	}
	if err := r.deletes(ctx, tr, created); err != nil {
		return err
	}
	env := &Env{Endpoints: r.e, Temporal: tc, Log: r.log}
	for _, s := range cfg.Sections {
		r.step("section %s", s.Name)
		if err := s.Run(ctx, env, r.rep); err != nil {
			return fmt.Errorf("section %s: %w", s.Name, err)
		}
	}
	return nil
}

// accept measures POST /v1/servers → 202 one at a time and from
// AcceptClients concurrent clients, beside a raw produce of the same
// durability from as many producers, then lets the accepted creates finish
// so the next phase starts on a quiet system.
func (r *runner) accept(ctx context.Context, tr *tracker, custs []*customer) error {
	cfg := r.cfg
	topic := fmt.Sprintf("bench.raw-produce.%d", os.Getpid())
	drop, err := ensureTopic(r.e.Kafka, topic)
	if err != nil {
		return err
	}
	defer drop()
	var all []*op
	for _, conc := range []int{1, cfg.AcceptClients} {
		count := cfg.AcceptSingle
		if conc > 1 {
			count = cfg.AcceptConcurrent
		}
		r.step("raw produce: %d records from %d producers", count*4, conc)
		// More raw samples than POSTs: they are cheap, and the p99 of a
		// few is the max.
		raw, err := rawProduce(ctx, r.e.Kafka, topic, conc, count*4)
		if err != nil {
			return err
		}
		r.step("accept: %d POST /v1/servers from %d clients", count, conc)
		jobs := make([]job, count)
		for i := range jobs {
			jobs[i] = job{cust: custs[(i+len(all))%len(custs)], name: fmt.Sprintf("acc-%d-%d", conc, i)}
		}
		ops, errs := burst(ctx, tr, jobs, conc)
		for _, e := range errs {
			r.rep.AddError("accept: %s", e)
		}
		all = append(all, ops...)
		var acc []time.Duration
		for _, o := range ops {
			acc = append(acc, o.accept)
		}
		sys, base := Millis(acc), Millis(raw)
		label := fmt.Sprintf("%d client", conc)
		if conc > 1 {
			label += "s"
		}
		r.rep.AddSamples(fmt.Sprintf("accept/system/%d", conc), sys)
		r.rep.AddSamples(fmt.Sprintf("accept/raw/%d", conc), base)
		var p99Target *Target
		if conc > 1 {
			p99Target = AtMost(2, 2)
		}
		note := "raw: sarama produce, acks=all, idempotent, 1 record"
		r.rep.Add(
			Row{Section: secAccept, Measure: "POST → 202 p50, " + label, Unit: "ms", System: Percentile(sys, 50), Baseline: Float(Percentile(base, 50)), Note: note},
			Row{Section: secAccept, Measure: "POST → 202 p99, " + label, Unit: "ms", System: Percentile(sys, 99), Baseline: Float(Percentile(base, 99)), Target: p99Target},
			Row{Section: secAccept, Measure: "POST → 202 max, " + label, Unit: "ms", System: Max(sys), Baseline: Float(Max(base))},
		)
	}
	r.step("accept: waiting for the %d accepted creates to finish", len(all))
	if open := wait(ctx, all, cfg.OpTimeout); open > 0 {
		r.rep.AddError("accept: %d creates still open after %s", open, cfg.OpTimeout)
	}
	return ctx.Err()
}

// snapshot samples the engines; a failure (the metrics endpoint did not
// answer) is reported and leaves that part of the rows out.
func (r *runner) snapshot(ctx context.Context) engineSnapshot {
	s, err := snapshotEngines(ctx, r.e.Pids, r.e.TemporalMetrics)
	if err != nil {
		r.rep.AddError("engine sample: %s", err)
	}
	return s
}

// sampled is a server whose histories are counted.
type sampled struct {
	serverID        string
	createOp        string
	afterCreate     historyCount // lifecycle, once the create settled
	createOpCount   historyCount
	deleteOp        string
	afterDelete     historyCount
	deleteOpCount   historyCount
	lifecycleErr    error
	lifecycleShrunk bool
}

// creates runs N creates from C concurrent clients, each followed to its
// end, beside the raw create-shaped workflow; then counts histories.
func (r *runner) creates(ctx context.Context, tr *tracker, custs []*customer) ([]*op, error) {
	cfg := r.cfg
	shape := Shape{Before: 2, After: 2, Timeout: workflows.DefaultEventTimeout}
	r.step("raw create-shaped workflow: %d from %d clients, signalled %s after the start", cfg.N, cfg.C, cfg.BootTime)
	s0 := r.snapshot(ctx)
	rawLat, rawRate, rawIDs, err := rawRun(ctx, r.tc, r.queue, fmt.Sprintf("bench-raw-create-%d", os.Getpid()), shape, cfg.BootTime, cfg.N, cfg.C)
	if err != nil {
		return nil, err
	}
	s1 := r.snapshot(ctx)
	r.step("creates: %d from %d clients, followed to succeeded", cfg.N, cfg.C)
	jobs := make([]job, cfg.N)
	for i := range jobs {
		jobs[i] = job{cust: custs[i%len(custs)], name: fmt.Sprintf("e2e-%d", i)}
	}
	t0 := time.Now()
	ops, errs := burst(ctx, tr, jobs, cfg.C)
	for _, e := range errs {
		r.rep.AddError("create: %s", e)
	}
	if open := wait(ctx, ops, cfg.OpTimeout); open > 0 {
		r.rep.AddError("create: %d of %d still open after %s", open, len(ops), cfg.OpTimeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s2 := r.snapshot(ctx)
	out := summarize(ops, t0)
	r.e2eRows(secCreate, "creates", out, rawLat, rawRate)
	r.engineRows(secCreate, "create", s2.since(s1), s1.since(s0), len(ops), len(rawLat))
	r.stageRows(ctx, ops, rawIDs)
	var okOps []*op
	for _, o := range ops {
		if o.status == "succeeded" {
			okOps = append(okOps, o)
		} else if o.status == "failed" {
			r.rep.AddError("create %s failed: %s", o.id, o.errText)
		}
	}
	return okOps, r.rawHistoryRows(ctx, secHistory, "create", rawIDs)
}

// deletes deletes the created servers the same way, beside the raw
// delete-shaped workflow, and counts what each create and delete cost in
// Temporal history.
func (r *runner) deletes(ctx context.Context, tr *tracker, created []*op) error {
	cfg := r.cfg
	// Late notifications of the creates land before the lifecycle counts.
	time.Sleep(2 * time.Second)
	sample := make([]*sampled, 0, cfg.HistorySample)
	for _, o := range created {
		if len(sample) == cfg.HistorySample {
			break
		}
		s := &sampled{serverID: o.serverID, createOp: o.id}
		s.afterCreate, s.lifecycleErr = countHistory(ctx, r.tc, workflows.ServerWorkflowID(o.serverID))
		if s.lifecycleErr == nil {
			s.createOpCount, s.lifecycleErr = countHistory(ctx, r.tc, workflows.OperationWorkflowID(o.id))
		}
		sample = append(sample, s)
	}

	shape := Shape{Before: 3, After: 1, Timeout: workflows.DefaultEventTimeout}
	r.step("raw delete-shaped workflow: %d from %d clients, signalled %s after the start", len(created), cfg.C, cfg.DeleteTime)
	s0 := r.snapshot(ctx)
	rawLat, rawRate, rawIDs, err := rawRun(ctx, r.tc, r.queue, fmt.Sprintf("bench-raw-delete-%d", os.Getpid()), shape, cfg.DeleteTime, max(len(created), 1), cfg.C)
	if err != nil {
		return err
	}
	s1 := r.snapshot(ctx)
	r.step("deletes: %d from %d clients, followed to succeeded", len(created), cfg.C)
	jobs := make([]job, len(created))
	for i, o := range created {
		jobs[i] = job{cust: o.cust, serverID: o.serverID}
	}
	t0 := time.Now()
	ops, errs := burst(ctx, tr, jobs, cfg.C)
	for _, e := range errs {
		r.rep.AddError("delete: %s", e)
	}
	if open := wait(ctx, ops, cfg.OpTimeout); open > 0 {
		r.rep.AddError("delete: %d of %d still open after %s", open, len(ops), cfg.OpTimeout)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, o := range ops {
		if o.status == "failed" {
			r.rep.AddError("delete %s failed: %s", o.id, o.errText)
		}
	}
	s2 := r.snapshot(ctx)
	r.e2eRows(secDelete, "deletes", summarize(ops, t0), rawLat, rawRate)
	r.engineRows(secDelete, "delete", s2.since(s1), s1.since(s0), len(ops), len(rawLat))
	if err := r.rawHistoryRows(ctx, secHistory, "delete", rawIDs); err != nil {
		return err
	}

	time.Sleep(2 * time.Second)
	delOp := map[string]string{}
	for _, o := range ops {
		if o.status == "succeeded" {
			delOp[o.serverID] = o.id
		}
	}
	var creates, deletes []historyCount
	for _, s := range sample {
		if s.lifecycleErr != nil {
			r.rep.AddError("history of server %s: %v", s.serverID, s.lifecycleErr)
			continue
		}
		creates = append(creates, s.afterCreate.plus(s.createOpCount))
		id, ok := delOp[s.serverID]
		if !ok {
			continue
		}
		after, err := countHistory(ctx, r.tc, workflows.ServerWorkflowID(s.serverID))
		if err == nil {
			s.deleteOpCount, err = countHistory(ctx, r.tc, workflows.OperationWorkflowID(id))
		}
		if err != nil {
			r.rep.AddError("history of server %s: %v", s.serverID, err)
			continue
		}
		life := after.minus(s.afterCreate)
		if life.Events < 0 {
			// The lifecycle continued as new in between: its new run is
			// all that the delete added.
			life = after
		}
		deletes = append(deletes, life.plus(s.deleteOpCount))
	}
	r.systemHistoryRows("create", creates)
	r.systemHistoryRows("delete", deletes)
	return nil
}

// e2eRows adds throughput and latency rows of a followed burst.
func (r *runner) e2eRows(section, what string, out outcome, rawLat []time.Duration, rawRate float64) {
	sysMs, baseMs := Millis(out.e2e), Millis(rawLat)
	r.rep.AddSamples(section+"/system", sysMs)
	r.rep.AddSamples(section+"/raw", baseMs)
	sys, base := seconds(sysMs), seconds(baseMs)
	if r.rep.Throughput == nil {
		r.rep.Throughput = map[string]float64{}
	}
	r.rep.Throughput[section+"/system"] = out.perSec
	r.rep.Throughput[section+"/raw"] = rawRate
	note := fmt.Sprintf("%d of %d succeeded in %.1fs", len(out.e2e), len(out.accept), out.elapsed.Seconds())
	r.rep.Add(
		Row{Section: section, Measure: what + "/s, end to end", Unit: "/s", System: out.perSec, Baseline: Float(rawRate), Target: AtLeast(0.8, 0), Note: note},
		Row{Section: section, Measure: "POST → succeeded p50", Unit: "s", System: Percentile(sys, 50), Baseline: Float(Percentile(base, 50))},
		Row{Section: section, Measure: "POST → succeeded p99", Unit: "s", System: Percentile(sys, 99), Baseline: Float(Percentile(base, 99)), Target: AtMost(1.5, 0)},
	)
}

func seconds(ms []float64) []float64 {
	out := make([]float64, len(ms))
	for i, v := range ms {
		out[i] = v / 1000
	}
	return out
}

// rawHistoryRows counts the raw workflows' histories (a sample) and keeps
// them as the baseline of the system's rows, added later.
func (r *runner) rawHistoryRows(ctx context.Context, section, what string, ids []string) error {
	var cs []historyCount
	for i, id := range ids {
		if i == r.cfg.HistorySample {
			break
		}
		c, err := countHistory(ctx, r.tc, id)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	ev, sig := meanCount(cs)
	if r.rawHist == nil {
		r.rawHist = map[string][2]float64{}
	}
	r.rawHist[what] = [2]float64{ev, sig}
	return nil
}

func (r *runner) systemHistoryRows(what string, cs []historyCount) {
	raw := r.rawHist[what]
	if len(cs) == 0 {
		r.rep.AddError("history: no %s could be counted", what)
		return
	}
	ev, sig := meanCount(cs)
	note := fmt.Sprintf("server/<id> share + op/<id>, mean of %d", len(cs))
	var sigTarget *Target
	if what == "create" {
		sigTarget = AtMostAbs(3)
	}
	r.rep.Add(
		Row{Section: secHistory, Measure: "events per " + what, Unit: "events", System: ev, Baseline: Float(raw[0]), Target: AtMost(1.5, 0), Note: note},
		Row{Section: secHistory, Measure: "signals per " + what, Unit: "signals", System: sig, Baseline: Float(raw[1]), Target: sigTarget},
	)
}

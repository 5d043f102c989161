// Package setup bootstraps a cluster for the system, idempotently: the
// Kafka topics (partitions, replication factor, min.insync.replicas,
// compaction and retention), the Temporal namespace and its search
// attributes, the ZooKeeper chroot (and the bucket map, Config.BucketMap)
// and the first admin API key.
//
// Run first reads what exists and makes a plan: the steps that bring the
// cluster in line with the configuration, and the problems it does not fix
// on its own (a topic with fewer partitions than configured is grown only
// with GrowPartitions; one with more partitions or another replication
// factor, or a search attribute of another type, is never changed). With a
// problem in the plan it changes nothing at all, unless AcceptMismatch says
// to go ahead with the rest. With DryRun it only reports the plan. A second
// run finds nothing to do. `cloudservers setup`, the dev stack and the HA
// topology all bootstrap through it.
package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
)

// Config says what to bootstrap. A part whose address is empty (Kafka,
// Temporal, ZooKeeper) is left alone.
type Config struct {
	Kafka             []string
	Topics            []TopicSpec // default Topics(DefaultRequestPartitions)
	ReplicationFactor int16       // default 3
	// MinInsyncReplicas, when > 0, is set as every topic's
	// min.insync.replicas.
	MinInsyncReplicas int
	// GrowPartitions grows a topic that has fewer partitions than
	// configured (it never shrinks one).
	GrowPartitions bool
	// AcceptMismatch applies the plan's steps even when it has problems,
	// leaving what differs as it is (the dev stack does this).
	AcceptMismatch bool

	Temporal  string        // frontend host:port
	Namespace string        // default DefaultNamespace
	Retention time.Duration // of a namespace setup creates; default DefaultRetention

	ZooKeeper string        // connect string with the chroot: zk1:2181,zk2:2181/cloudservers
	BucketMap BucketMapFunc // nil: no bucket map step (BucketMap writes it when absent)

	// AdminCustomer, when set, gets the first admin API key if no admin key
	// exists yet.
	AdminCustomer string
	// APIKeysTopic is where the API reads its keys (default
	// cloudservers.TopicAPIKeys; tests give one of their own).
	APIKeysTopic string

	DryRun bool
	// Log receives the plan and what was changed, one line each.
	Log io.Writer
}

// Step is one change the plan makes.
type Step struct {
	Target string // "topic cloudservers.requests", "temporal namespace cloudservers", ...
	Action string
	apply  func(ctx context.Context) error
}

// Problem is a difference between the cluster and the configuration that
// setup does not fix without being told to.
type Problem struct {
	Target string `json:"target"`
	Detail string `json:"detail"`
}

func (p Problem) String() string { return p.Target + ": " + p.Detail }

// Report is what a run found and did.
type Report struct {
	Planned   []Step    // every step of the plan
	Applied   []Step    // those carried out (none on a dry run or a refused plan)
	Problems  []Problem // differences left as they are
	Unchanged []string  // targets already as configured
	// AdminKey is the secret of the admin API key this run made, shown
	// once; AdminCustomer its customer.
	AdminKey      string
	AdminCustomer string
}

// ErrMismatch is returned when the cluster differs from the configuration
// in a way setup does not fix on its own; the run changed nothing.
var ErrMismatch = errors.New("the cluster differs from the configuration (see the problems listed); nothing was changed")

func (cfg Config) withDefaults() Config {
	if cfg.Topics == nil {
		cfg.Topics = Topics(DefaultRequestPartitions)
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 3
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.APIKeysTopic == "" {
		cfg.APIKeysTopic = cloudservers.TopicAPIKeys
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return cfg
}

// Run plans and, unless cfg.DryRun or a problem stops it, applies. The
// report lists the plan, what was applied and the problems, also when it
// returns an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	r := &Report{}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var admin sarama.ClusterAdmin
	if len(cfg.Kafka) > 0 {
		a, err := connectAdmin(ctx, cfg.Kafka)
		if err != nil {
			return r, err
		}
		admin = a
		closers = append(closers, func() { a.Close() })
		if err := r.add(onAdmin(ctx, func() ([]Step, []Problem, []string, error) { return planTopics(admin, cfg) })); err != nil {
			return r, err
		}
	}
	if cfg.Temporal != "" {
		c, err := DialTemporal(ctx, cfg.Temporal, cfg.Namespace)
		if err != nil {
			return r, err
		}
		closers = append(closers, c.Close)
		if err := r.add(planTemporal(ctx, c, cfg)); err != nil {
			return r, err
		}
	}
	if cfg.ZooKeeper != "" {
		conn, chroot, err := dialZooKeeper(ctx, cfg.ZooKeeper)
		if err != nil {
			return r, err
		}
		closers = append(closers, conn.Close)
		if err := r.add(planZooKeeper(ctx, conn, chroot, cfg)); err != nil {
			return r, err
		}
	}
	if cfg.AdminCustomer != "" && admin != nil {
		exists := true
		for _, s := range r.Planned {
			if s.Target == "topic "+cfg.APIKeysTopic && strings.HasPrefix(s.Action, "create") {
				exists = false
			}
		}
		steps, unchanged, err := planAdminKey(ctx, cfg, exists, r)
		if err != nil {
			return r, err
		}
		r.Planned = append(r.Planned, steps...)
		r.Unchanged = append(r.Unchanged, unchanged...)
	}

	for _, p := range r.Problems {
		fmt.Fprintf(cfg.Log, "  differs   %s\n", p)
	}
	verb := "will"
	if cfg.DryRun {
		verb = "would"
	}
	for _, s := range r.Planned {
		fmt.Fprintf(cfg.Log, "  %-9s %s: %s\n", verb, s.Target, s.Action)
	}
	if len(r.Problems) > 0 && !cfg.AcceptMismatch {
		return r, ErrMismatch
	}
	if cfg.DryRun {
		return r, nil
	}
	for _, s := range r.Planned {
		if err := s.apply(ctx); err != nil {
			return r, fmt.Errorf("%s: %s: %w", s.Target, s.Action, err)
		}
		r.Applied = append(r.Applied, s)
		fmt.Fprintf(cfg.Log, "  changed   %s: %s\n", s.Target, s.Action)
	}
	if admin != nil {
		if err := onAdminErr(ctx, func() error { return AwaitTopics(ctx, admin, cfg.Topics) }); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r *Report) add(steps []Step, problems []Problem, unchanged []string, err error) error {
	if err != nil {
		return err
	}
	r.Planned = append(r.Planned, steps...)
	r.Problems = append(r.Problems, problems...)
	r.Unchanged = append(r.Unchanged, unchanged...)
	return nil
}

// connectAdmin connects a cluster admin, giving up when ctx ends.
func connectAdmin(ctx context.Context, brokers []string) (sarama.ClusterAdmin, error) {
	type result struct {
		a   sarama.ClusterAdmin
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := sarama.NewClusterAdmin(brokers, adminConfig())
		done <- result{a, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, fmt.Errorf("kafka %s: %w", strings.Join(brokers, ","), res.err)
		}
		return res.a, nil
	case <-ctx.Done():
		go func() {
			if res := <-done; res.a != nil {
				res.a.Close()
			}
		}()
		return nil, fmt.Errorf("kafka %s: %w", strings.Join(brokers, ","), ctx.Err())
	}
}

// onAdmin runs a sarama call (which takes no context) so that ctx can end
// the wait.
func onAdmin(ctx context.Context, f func() ([]Step, []Problem, []string, error)) ([]Step, []Problem, []string, error) {
	type result struct {
		s   []Step
		p   []Problem
		u   []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, p, u, err := f()
		done <- result{s, p, u, err}
	}()
	select {
	case res := <-done:
		return res.s, res.p, res.u, res.err
	case <-ctx.Done():
		return nil, nil, nil, ctx.Err()
	}
}

func onAdminErr(ctx context.Context, f func() error) error {
	_, _, _, err := onAdmin(ctx, func() ([]Step, []Problem, []string, error) { return nil, nil, nil, f() })
	return err
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/buckets"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

const bucketsUsage = `usage:
  cloudservers admin partitions add N [-assignment "P=primary,partner;..."]
  cloudservers admin buckets move B [B...] -to P
  cloudservers admin buckets rebalance
  cloudservers admin buckets status [-json]
flags of each: -kafka, -zookeeper (host:port[/chroot]), -requests-topic, -request-group,
  -lock-wait, -ack-timeout, -drain-timeout, -session-timeout`

// scaleFlags are the flags of the partitions and buckets commands.
type scaleFlags struct {
	common
	topic, group                       string
	lockWait, ackTimeout, drainTimeout time.Duration
	session                            time.Duration
	assignment                         string
	to                                 int
	asJSON                             bool
}

func (f *scaleFlags) register(fs *flag.FlagSet) {
	f.common.register(fs)
	fs.StringVar(&f.topic, "requests-topic", cloudservers.TopicRequests, "the requests topic")
	fs.StringVar(&f.group, "request-group", bridge.RequestGroup, "the Kafka group of the bridges' request offsets")
	fs.DurationVar(&f.lockWait, "lock-wait", 15*time.Second, "wait this long for another admin command's move lock (one that died holds it for its session timeout)")
	fs.DurationVar(&f.ackTimeout, "ack-timeout", 30*time.Second, "roll a move back when an API replica has not put the freeze in force within this")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 2*time.Minute, "roll a move back when the bridges have not delivered the bucket's queued requests within this")
	fs.DurationVar(&f.session, "session-timeout", 4*time.Second, "this command's ZooKeeper session timeout (its move lock outlives a kill by this much)")
	fs.StringVar(&f.assignment, "assignment", "", `partitions add: the new partitions' bridges, "P=primary,partner;..." (they take them up without a restart)`)
	fs.IntVar(&f.to, "to", -1, "buckets move: the destination partition")
	fs.BoolVar(&f.asJSON, "json", false, "buckets status: print JSON")
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("move 3 7 -to 2"), which flag.Parse alone stops
// at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runScale runs `admin partitions ...` and `admin buckets ...`.
func runScale(ctx context.Context, what string, args []string) error {
	if len(args) < 1 {
		return errors.New(bucketsUsage)
	}
	cmd := what + " " + args[0]
	var f scaleFlags
	fs := flag.NewFlagSet("admin "+cmd, flag.ContinueOnError)
	f.register(fs)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch cmd {
	case "partitions add", "buckets move", "buckets rebalance", "buckets status":
	default:
		return fmt.Errorf("unknown command %q\n%s", "admin "+cmd, bucketsUsage)
	}
	brokers, err := f.brokers()
	if err != nil {
		return err
	}
	if f.zookeeper == "" {
		return errors.New("no ZooKeeper: set -zookeeper host:port[/chroot] or CLOUDSERVERS_ZOOKEEPER")
	}
	servers, chroot := zkcoord.ParseConnectString(f.zookeeper)
	log := logger("admin")
	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: servers, Chroot: chroot, SessionTimeout: f.session, Logger: log})
	if err != nil {
		return err
	}
	defer coord.Close()
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-admin", log)
	if err != nil {
		return err
	}
	defer kc.Close()
	mv := &buckets.Mover{Coord: coord, Kafka: kc, Topic: f.topic, Group: f.group, LockWait: f.lockWait,
		AckTimeout: f.ackTimeout, DrainTimeout: f.drainTimeout, Out: os.Stdout}
	switch cmd {
	case "partitions add":
		if len(pos) != 1 {
			return errors.New("usage: cloudservers admin partitions add N (the number of partitions to add)")
		}
		n, err := strconv.Atoi(pos[0])
		if err != nil {
			return fmt.Errorf("partitions add %q: N must be a whole number of partitions to add", pos[0])
		}
		var asg zkcoord.Assignment
		if f.assignment != "" {
			if asg, err = parseAssignmentSpec(f.assignment); err != nil {
				return fmt.Errorf("-assignment: %w", err)
			}
		}
		admin, err := sarama.NewClusterAdminFromClient(kc)
		if err != nil {
			return err
		}
		mv.Admin = admin
		return mv.AddPartitions(ctx, n, asg)
	case "buckets move":
		if len(pos) == 0 || f.to < 0 {
			return errors.New("usage: cloudservers admin buckets move B [B...] -to P")
		}
		var bs []int
		for _, s := range pos {
			b, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("buckets move: %q is not a bucket number (0..%d)", s, cloudservers.Buckets-1)
			}
			bs = append(bs, b)
		}
		return mv.Move(ctx, bs, int32(f.to))
	case "buckets rebalance":
		return mv.Rebalance(ctx)
	default:
		rep, err := readBucketReport(coord, true)
		if err != nil {
			return err
		}
		if f.asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		printBucketReport(os.Stdout, rep, true)
		return nil
	}
}

// bucketReport is the bucket map as the status commands show it.
type bucketReport struct {
	Version    int64 `json:"version"`
	Partitions int32 `json:"partitions"`
	// PerPartition counts the buckets of each partition.
	PerPartition []int `json:"buckets_per_partition"`
	// Buckets[b] is bucket b's partition (admin buckets status only).
	Buckets  []int32              `json:"buckets,omitempty"`
	Move     *zkcoord.BucketMove  `json:"move,omitempty"`
	MoveLock *zkcoord.MoveLock    `json:"move_lock,omitempty"`
	Replicas []zkcoord.ReplicaAck `json:"api_replicas"`
	Error    string               `json:"error,omitempty"`
}

func readBucketReport(coord *zkcoord.Coordinator, full bool) (bucketReport, error) {
	var rep bucketReport
	m, err := coord.ReadBucketMap(cloudservers.Buckets)
	if err != nil {
		return rep, err
	}
	rep.Version, rep.Partitions, rep.Move = m.Version, m.Partitions, m.Move
	rep.PerPartition = make([]int, m.Partitions)
	for _, p := range m.Buckets {
		rep.PerPartition[p]++
	}
	if full {
		rep.Buckets = m.Buckets
	}
	if rep.MoveLock, err = coord.MoveLockHolder(); err != nil {
		return rep, err
	}
	if rep.Replicas, err = coord.BucketMapAcks(); err != nil {
		return rep, err
	}
	return rep, nil
}

func printBucketReport(out io.Writer, rep bucketReport, full bool) {
	if rep.Error != "" {
		fmt.Fprintf(out, "bucket map: %s\n", rep.Error)
		return
	}
	var per []string
	for p, n := range rep.PerPartition {
		per = append(per, fmt.Sprintf("%d:%d", p, n))
	}
	fmt.Fprintf(out, "bucket map version %d, %d partitions, buckets per partition %s\n", rep.Version, rep.Partitions, strings.Join(per, " "))
	var acks []string
	for _, a := range rep.Replicas {
		acks = append(acks, fmt.Sprintf("%s@%d", a.Replica, a.Version))
	}
	if len(acks) == 0 {
		acks = []string{"none"}
	}
	fmt.Fprintf(out, "API replicas (version in force): %s\n", strings.Join(acks, " "))
	switch {
	case rep.Move != nil && rep.MoveLock != nil:
		fmt.Fprintf(out, "MOVE IN PROGRESS: buckets %v from partitions %v to %d, frozen since %s, by %s\n",
			rep.Move.Buckets, rep.Move.From, rep.Move.To, rep.Move.Since.Format(time.RFC3339), rep.MoveLock.By)
	case rep.Move != nil:
		fmt.Fprintf(out, "MOVE INTERRUPTED: buckets %v from partitions %v to %d, frozen since %s by %s, which is gone: run admin buckets rebalance (or move) to complete it\n",
			rep.Move.Buckets, rep.Move.From, rep.Move.To, rep.Move.Since.Format(time.RFC3339), rep.Move.By)
	case rep.MoveLock != nil:
		fmt.Fprintf(out, "admin command running: %s since %s\n", rep.MoveLock.By, rep.MoveLock.Since.Format(time.RFC3339))
	}
	if !full {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "BUCKETS\tPARTITION")
	// Runs of consecutive buckets on one partition, so 256 fit a screen.
	for start := 0; start < len(rep.Buckets); {
		end := start
		for end+1 < len(rep.Buckets) && rep.Buckets[end+1] == rep.Buckets[start] {
			end++
		}
		r := strconv.Itoa(start)
		if end > start {
			r += "-" + strconv.Itoa(end)
		}
		fmt.Fprintf(tw, "%s\t%d\n", r, rep.Buckets[start])
		start = end + 1
	}
	tw.Flush()
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// statusReport is what `cloudservers status` prints and what every bridge's
// /status endpoint serves (under "system"): for every partition of the
// requests topic its owner and partners, committed and end offsets and lag,
// and the leader of every single-instance service. Ownership is read from
// ZooKeeper (zookeeper mode) and from the Kafka consumer group (its
// members' assignments, consumer-group mode); offsets from Kafka.
type statusReport struct {
	Time   time.Time `json:"time"`
	Topic  string    `json:"topic"`
	Group  string    `json:"group"`
	Chroot string    `json:"zookeeper_chroot"`
	// Mode is the assignment mode in use: "zookeeper", "consumer-group",
	// "none" (no bridge runs) or "mixed" (bridges disagree: a
	// misconfiguration, commits fail).
	Mode       string            `json:"assignment_mode"`
	Partitions []partitionReport `json:"partitions"`
	// RouterGroup commits the router's offsets of the notification topics.
	RouterGroup string `json:"router_group"`
	// Routes are the notification topics' partitions: who routes each
	// (zookeeper ownership per partition, or the singleton router), with
	// the router group's offsets.
	Routes     []partitionReport `json:"routes"`
	Singletons []singletonReport `json:"singletons"`
	Members    []memberReport    `json:"group_members,omitempty"`
	// Buckets is the bucket map: its version, the buckets of each
	// partition, a move in progress, and each API replica's version in
	// force (or why it cannot be read).
	Buckets *bucketReport `json:"bucket_map,omitempty"`
	// Problems lists what could not be read; the rest is still reported.
	Problems []string `json:"problems,omitempty"`
}

type partitionReport struct {
	// Topic is the notification topic of a route ("" for a request
	// partition: the report's Topic).
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	// Owner is the process consuming the partition ("" when none).
	Owner string `json:"owner"`
	// Candidates is the configured [primary, partner...] (zookeeper mode).
	Candidates []string `json:"candidates,omitempty"`
	// Alive are the candidates whose ZooKeeper session lives.
	Alive []string  `json:"alive,omitempty"`
	Fence int64     `json:"fence,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// Committed is the next offset the group will read (-1: nothing
	// committed yet), with the metadata of the commit ("owner=... fence=...").
	Committed      int64  `json:"committed"`
	CommitMetadata string `json:"commit_metadata,omitempty"`
	End            int64  `json:"end"`
	Lag            int64  `json:"lag"`
	Note           string `json:"note,omitempty"`
}

type singletonReport struct {
	Name     string   `json:"name"`
	Leader   string   `json:"leader"`
	Standbys []string `json:"standbys"`
	Fence    int64    `json:"fence,omitempty"`
	// Joined is when the leader joined the election (it may have led
	// only since its predecessor went away).
	Joined time.Time `json:"joined,omitzero"`
}

type memberReport struct {
	Process    string  `json:"process"`
	ClientID   string  `json:"client_id"`
	Host       string  `json:"host"`
	MemberID   string  `json:"member_id"`
	Partitions []int32 `json:"partitions"`
}

// bridgeStatus is one bridge process's /status.
type bridgeStatus struct {
	Process        string              `json:"process"`
	AssignmentMode string              `json:"assignment_mode"`
	Leading        map[string]int64    `json:"leading"` // singletons this process leads, with their fence
	Routing        map[string]int64    `json:"routing"` // notification partitions ("topic/partition") this process routes, with their fence
	GroupClaims    []bridge.GroupClaim `json:"group_claims,omitempty"`
	Requests       map[string]int64    `json:"requests"`
	Router         map[string]int64    `json:"router"`
	LastReap       *bridge.ReapStatus  `json:"last_reap,omitempty"`
	System         statusReport        `json:"system"`
}

// collectStatus reads the status from ZooKeeper and Kafka: the request
// partitions of topic (offsets of group) and the routes of the notification
// topics (offsets of routerGroup). It reports what it could read even when
// a part fails (the error names the parts).
func collectStatus(ctx context.Context, coord *zkcoord.Coordinator, kc sarama.Client, topic, group string, notifTopics []string, routerGroup string) (statusReport, error) {
	st := statusReport{Time: time.Now().UTC(), Topic: topic, Group: group, RouterGroup: routerGroup, Partitions: []partitionReport{},
		Routes: []partitionReport{}, Singletons: []singletonReport{}}
	var problems []error
	_ = kc.RefreshMetadata(topic) // a long-running bridge sees partitions added since its start
	parts, err := kc.Partitions(topic)
	if err != nil {
		return st, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	byPartition := map[int32]*partitionReport{}
	for _, p := range parts {
		st.Partitions = append(st.Partitions, partitionReport{Partition: p, Committed: -1})
	}
	slices.SortFunc(st.Partitions, func(a, b partitionReport) int { return int(a.Partition - b.Partition) })
	for i := range st.Partitions {
		byPartition[st.Partitions[i].Partition] = &st.Partitions[i]
	}

	zkOwners, groupOwners := 0, 0
	zs, err := coord.Status(ctx)
	st.Chroot = zs.Chroot
	if err != nil {
		problems = append(problems, fmt.Errorf("zookeeper: %w", err))
	}
	for _, ps := range zs.Partitions {
		if r := byPartition[ps.Partition]; r != nil && applyOwnership(r, ps) {
			zkOwners++
		}
	}
	for _, ss := range zs.Singletons {
		r := singletonReport{Name: ss.Name, Standbys: []string{}}
		if ss.Leader != nil {
			r.Leader, r.Fence, r.Joined = ss.Leader.Process, ss.Leader.Fence, ss.Leader.Since
		}
		for _, h := range ss.Standbys {
			r.Standbys = append(r.Standbys, h.Process)
		}
		st.Singletons = append(st.Singletons, r)
	}

	if members, err := groupMembers(kc, group, topic); err != nil {
		problems = append(problems, fmt.Errorf("consumer group %s: %w", group, err))
	} else {
		st.Members = members
		for _, m := range members {
			for _, p := range m.Partitions {
				if r := byPartition[p]; r != nil {
					groupOwners++
					if r.Owner == "" {
						r.Owner = m.Process
					} else if r.Owner != m.Process {
						r.Note = "also assigned to " + m.Process + " by the consumer group"
					}
				}
			}
		}
	}
	switch {
	case zkOwners > 0 && groupOwners > 0:
		st.Mode = "mixed"
	case groupOwners > 0 || len(st.Members) > 0:
		st.Mode = modeConsumerGroup
	case zkOwners > 0:
		st.Mode = modeZooKeeper
	default:
		st.Mode = "none"
	}

	problems = append(problems, fillOffsets(kc, group, topic, st.Partitions)...)
	// A map that cannot be read is shown in its place, not as a problem
	// of the partitions: the partitions are still owned and consumed.
	rep, err := readBucketReport(coord, false)
	if err != nil {
		rep = bucketReport{Error: err.Error()}
	}
	st.Buckets = &rep
	problems = append(problems, collectRoutes(&st, zs, kc, notifTopics, routerGroup)...)
	for _, e := range problems {
		st.Problems = append(st.Problems, e.Error())
	}
	return st, errors.Join(problems...)
}

// applyOwnership copies a partition's ZooKeeper ownership into its report;
// true when it has an owner.
func applyOwnership(r *partitionReport, ps zkcoord.PartitionStatus) bool {
	r.Candidates, r.Alive = ps.Candidates, ps.Alive
	if ps.Owner != nil {
		r.Owner, r.Fence, r.Since = ps.Owner.Process, ps.Owner.Fence, ps.Owner.Since
	}
	switch {
	case ps.Owner == nil && ps.Preferred == "" && len(ps.Candidates) > 0:
		r.Note = "no live candidate"
	case ps.Owner == nil && ps.Preferred != "":
		r.Note = ps.Preferred + " acquiring"
	case ps.HandbackPending:
		r.Note = "handing back to " + ps.Preferred
	case ps.Owner != nil && len(ps.Candidates) > 0 && ps.Owner.Process != ps.Candidates[0]:
		r.Note = "partner owns it (" + ps.Candidates[0] + " is down)"
	}
	return ps.Owner != nil
}

// collectRoutes reports every partition of the notification topics: its
// router (ZooKeeper route ownership, or the elected singleton router of a
// bridge that routes everything) and the router group's offsets.
func collectRoutes(st *statusReport, zs zkcoord.Status, kc sarama.Client, topics []string, group string) []error {
	var problems []error
	owned := map[string]zkcoord.PartitionStatus{}
	for _, ps := range zs.Routes {
		owned[fmt.Sprintf("%s/%d", ps.Topic, ps.Partition)] = ps
	}
	var single *singletonReport
	for i := range st.Singletons {
		if st.Singletons[i].Name == "router" && st.Singletons[i].Leader != "" {
			single = &st.Singletons[i]
		}
	}
	for _, topic := range topics {
		parts, err := kc.Partitions(topic)
		if err != nil {
			problems = append(problems, fmt.Errorf("partitions of %s: %w", topic, err))
			continue
		}
		slices.Sort(parts)
		reports := make([]partitionReport, len(parts))
		for i, p := range parts {
			r := &reports[i]
			*r = partitionReport{Topic: topic, Partition: p, Committed: -1}
			if ps, ok := owned[fmt.Sprintf("%s/%d", topic, p)]; ok {
				applyOwnership(r, ps)
			}
			if single != nil {
				switch {
				case r.Owner == "":
					r.Owner, r.Fence, r.Since, r.Note = single.Leader, single.Fence, single.Joined, "singleton router"
				case r.Owner != single.Leader:
					r.Note = "also routed by the singleton router " + single.Leader
				}
			}
		}
		problems = append(problems, fillOffsets(kc, group, topic, reports)...)
		st.Routes = append(st.Routes, reports...)
	}
	return problems
}

// fillOffsets reads the committed offsets of group and the end offsets of
// each partition of topic into reports, and the lag between them.
func fillOffsets(kc sarama.Client, group, topic string, reports []partitionReport) []error {
	var problems []error
	parts := make([]int32, len(reports))
	for i, r := range reports {
		parts[i] = r.Partition
	}
	committed, err := bridge.CommittedOffsets(kc, group, topic, parts)
	if err != nil {
		problems = append(problems, fmt.Errorf("committed offsets of %s in %s: %w", topic, group, err))
	}
	for i := range reports {
		r, p := &reports[i], reports[i].Partition
		if c, ok := committed[p]; ok {
			r.Committed, r.CommitMetadata = c.Offset, c.Metadata
		}
		end, err := kc.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			problems = append(problems, fmt.Errorf("end of %s/%d: %w", topic, p, err))
			continue
		}
		r.End = end
		from := r.Committed
		if from < 0 {
			if from, err = kc.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
				problems = append(problems, fmt.Errorf("start of %s/%d: %w", topic, p, err))
				continue
			}
		}
		r.Lag = max(end-from, 0)
		if r.Lag > 0 {
			// The API writes requests in transactions: their commit
			// markers (and aborted records) take offsets no consumer
			// handles. Only those left means caught up.
			if pos, err := kafka.Scan(kc, topic, p, from, end); err == nil && pos == kafka.CaughtUp {
				r.Lag = 0
			}
		}
	}
	return problems
}

// groupMembers lists the consumer group's members and the partitions of
// topic each is assigned.
func groupMembers(kc sarama.Client, group, topic string) ([]memberReport, error) {
	// Not closed: closing a cluster admin closes the client it wraps.
	admin, err := sarama.NewClusterAdminFromClient(kc)
	if err != nil {
		return nil, err
	}
	descs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return nil, err
	}
	var out []memberReport
	for _, d := range descs {
		if d.Err != sarama.ErrNoError {
			return nil, d.Err
		}
		for _, m := range d.Members {
			r := memberReport{Process: bridge.GroupProcess(m.ClientId), ClientID: m.ClientId, Host: m.ClientHost, MemberID: m.MemberId, Partitions: []int32{}}
			if a, err := m.GetMemberAssignment(); err == nil && a != nil {
				r.Partitions = append(r.Partitions, a.Topics[topic]...)
				slices.Sort(r.Partitions)
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b memberReport) int { return strings.Compare(a.Process, b.Process) })
	return out, nil
}

// WriteText writes the report as tables for people.
func (s statusReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s  topic %s, group %s, assignment %s, ZooKeeper chroot %s\n\n", s.Time.Format(time.RFC3339), s.Topic, s.Group, s.Mode, s.Chroot)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tPRIMARY,PARTNERS\tCOMMITTED\tEND\tLAG\tFENCE\tSINCE\tNOTE")
	writePartitionRows(tw, s.Partitions, false)
	if s.Buckets != nil {
		fmt.Fprintln(tw)
		printBucketReport(tw, *s.Buckets, false)
	}
	if len(s.Routes) > 0 {
		fmt.Fprintf(tw, "\nnotification routes, group %s\n", s.RouterGroup)
		fmt.Fprintln(tw, "ROUTE\tROUTER\tPRIMARY,PARTNERS\tCOMMITTED\tEND\tLAG\tFENCE\tSINCE\tNOTE")
		writePartitionRows(tw, s.Routes, true)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SINGLETON\tLEADER\tSTANDBYS\tFENCE")
	for _, sg := range s.Singletons {
		fence := "-"
		if sg.Fence != 0 {
			fence = strconv.FormatInt(sg.Fence, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sg.Name, dash(sg.Leader), dash(strings.Join(sg.Standbys, ",")), fence)
	}
	if len(s.Members) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "GROUP MEMBER\tHOST\tPARTITIONS")
		for _, m := range s.Members {
			ps := make([]string, len(m.Partitions))
			for i, p := range m.Partitions {
				ps[i] = strconv.Itoa(int(p))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Process, m.Host, dash(strings.Join(ps, ",")))
		}
	}
	for _, p := range s.Problems {
		fmt.Fprintf(tw, "\nproblem: %s\n", p)
	}
	return tw.Flush()
}

// writePartitionRows writes one row per partition; a route's first column
// is topic/partition.
func writePartitionRows(tw io.Writer, parts []partitionReport, routes bool) {
	for _, p := range parts {
		owner, fence, since, committed := dash(p.Owner), "-", "-", "-"
		if p.Fence != 0 {
			fence = strconv.FormatInt(p.Fence, 10)
		}
		if !p.Since.IsZero() {
			since = p.Since.Local().Format("15:04:05")
		}
		if p.Committed >= 0 {
			committed = strconv.FormatInt(p.Committed, 10)
		}
		cands := make([]string, len(p.Candidates))
		for i, c := range p.Candidates {
			cands[i] = c
			if !slices.Contains(p.Alive, c) {
				cands[i] += "(down)"
			}
		}
		name := strconv.Itoa(int(p.Partition))
		if routes {
			name = p.Topic + "/" + name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", name, owner, dash(strings.Join(cands, ",")),
			committed, p.End, p.Lag, fence, since, p.Note)
	}
}

// runStatus prints who owns each partition, the offsets and lag, and who
// leads each single-instance service.
func runStatus(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	c.register(fs)
	group := fs.String("group", bridge.RequestGroup, "the bridges' request group (-request-group of the bridge)")
	topic := fs.String("topic", cloudservers.TopicRequests, "the requests topic (-requests-topic of the bridge)")
	routerGroup := fs.String("router-group", bridge.RouterGroup, "the bridges' router group (-router-group of the bridge)")
	notifTopics := fs.String("notification-topics", envOr("CLOUDSERVERS_NOTIFICATION_TOPICS", strings.Join(cloudservers.NotificationTopics, ",")), "the notification topics (-notification-topics of the bridge; env CLOUDSERVERS_NOTIFICATION_TOPICS)")
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Duration("watch", 0, "print again every interval until interrupted (e.g. 1s)")
	timeout := fs.Duration("timeout", 15*time.Second, "give up connecting to ZooKeeper or Kafka after this long")
	endpoints := fs.String("endpoints", filepath.Join(devstack.DefaultDataDir(), "endpoints.json"), "the endpoints file of `cloudservers dev`, read when -kafka or -zookeeper is not set")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := c.load(fs, nil); err != nil {
		return err
	}
	if c.kafka == "" || c.zookeeper == "" {
		if e, err := devstack.LoadEndpoints(*endpoints); err == nil {
			if c.kafka == "" {
				c.kafka = strings.Join(e.Kafka, ",")
			}
			if c.zookeeper == "" {
				c.zookeeper = e.ZooKeeper
			}
		}
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	servers, chroot := zkcoord.ParseConnectString(c.zookeeper)
	if len(servers) == 0 {
		return errors.New("no ZooKeeper: set -zookeeper host:port[,host:port...][/chroot] or CLOUDSERVERS_ZOOKEEPER")
	}
	quiet := logger("status")
	if os.Getenv("CLOUDSERVERS_DEBUG") == "" {
		quiet = discardLogger()
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	kc, err := kafka.Connect(cctx, brokers, "cloudservers-status", quiet)
	if err != nil {
		return err
	}
	defer kc.Close()
	coord, err := zkcoord.Connect(cctx, zkcoord.Config{Servers: servers, Chroot: chroot, Logger: quiet})
	if err != nil {
		return err
	}
	defer coord.Close()
	for {
		st, err := collectStatus(ctx, coord, kc, *topic, *group, splitList(*notifTopics), *routerGroup)
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else {
			if *watch > 0 {
				fmt.Print("\033[H\033[2J")
			}
			if err := st.WriteText(os.Stdout); err != nil {
				return err
			}
		}
		if *watch <= 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

package zkcoord

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-zookeeper/zk"
)

// Status is a snapshot of every partition's and singleton's coordination
// state, for the status command and the admin endpoint.
type Status struct {
	Chroot     string            `json:"chroot"`
	Session    string            `json:"session"` // this coordinator's session ID (hex)
	Partitions []PartitionStatus `json:"partitions"`
	// Routes are the notification topics' partitions (Routes resources),
	// by topic, then partition.
	Routes     []PartitionStatus `json:"routes"`
	Singletons []SingletonStatus `json:"singletons"`
}

// PartitionStatus is one partition's ownership.
type PartitionStatus struct {
	// Topic is the notification topic of a route ("" for a request
	// partition).
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	// Candidates is the configured order [primary, partner, ...] as last
	// written by a candidate.
	Candidates []string `json:"candidates"`
	// Alive are the candidates with a live session, in configured order
	// (unknown ones last).
	Alive []string `json:"alive"`
	// Preferred is the first alive candidate: who should own the partition.
	Preferred string `json:"preferred,omitempty"`
	// Owner is nil while nobody holds the lock.
	Owner *Holder `json:"owner,omitempty"`
	// Queued are lock nodes behind the owner: the preferred candidate
	// waiting for a handback.
	Queued []Holder `json:"queued,omitempty"`
	// HandbackPending is true while the owner is not the preferred candidate
	// (the owner is stopping so that the preferred one can take over).
	HandbackPending bool `json:"handback_pending"`
}

// Holder is a lock znode's content.
type Holder struct {
	Node    string    `json:"node"`
	Process string    `json:"process"`
	Token   string    `json:"token"`
	Fence   int64     `json:"fence"`
	Since   time.Time `json:"since"`
	Session string    `json:"session"`
}

// SingletonStatus is one single-instance service's election.
type SingletonStatus struct {
	Name     string   `json:"name"`
	Leader   *Holder  `json:"leader,omitempty"`
	Standbys []Holder `json:"standbys"`
}

// Status reads the coordination state of every partition and singleton.
// Nodes that vanish while it reads are skipped.
func (c *Coordinator) Status(ctx context.Context) (Status, error) {
	st := Status{Chroot: c.cfg.Chroot, Session: sessionHex(c.SessionID()), Partitions: []PartitionStatus{}, Routes: []PartitionStatus{}, Singletons: []SingletonStatus{}}
	var err error
	if st.Partitions, err = c.resourceStatus(ctx, Requests); err != nil {
		return st, err
	}
	topics, _, err := c.conn.Children(c.routesPath())
	if err != nil && !errors.Is(err, zk.ErrNoNode) { // a chroot made before routes existed has none
		return st, fmt.Errorf("list routes: %w", err)
	}
	slices.Sort(topics)
	for _, topic := range topics {
		ps, err := c.resourceStatus(ctx, Routes(topic))
		if err != nil {
			return st, err
		}
		st.Routes = append(st.Routes, ps...)
	}

	names, _, err := c.conn.Children(c.singletonsPath())
	if err != nil {
		return st, fmt.Errorf("list singletons: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		ss, err := c.singletonStatus(name)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("singleton %s: %w", name, err)
		}
		st.Singletons = append(st.Singletons, ss)
	}
	return st, nil
}

// resourceStatus reads the ownership of every partition of resource, in
// partition order.
func (c *Coordinator) resourceStatus(ctx context.Context, r Resource) ([]PartitionStatus, error) {
	out := []PartitionStatus{}
	parts, _, err := c.conn.Children(c.resourcePath(r))
	if errors.Is(err, zk.ErrNoNode) && r != Requests {
		return out, nil // the topic's node vanished while we read
	}
	if err != nil {
		return out, fmt.Errorf("list partitions of %s: %w", r, err)
	}
	for _, name := range parts {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		p, err := strconv.ParseInt(name, 10, 32)
		if err != nil {
			continue
		}
		ps, err := c.partitionStatus(r, int32(p))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("partition %d of %s: %w", p, r, err)
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int { return cmp.Compare(a.Partition, b.Partition) })
	return out, nil
}

func (c *Coordinator) partitionStatus(r Resource, p int32) (PartitionStatus, error) {
	base := c.resourcePath(r) + "/" + strconv.Itoa(int(p))
	ps := PartitionStatus{Topic: r.Topic(), Partition: p, Candidates: []string{}, Alive: []string{}}
	data, _, err := c.conn.Get(base)
	if err != nil {
		return ps, err
	}
	var pd partitionData
	_ = json.Unmarshal(data, &pd)
	if pd.Candidates != nil {
		ps.Candidates = pd.Candidates
	}
	alive, _, err := c.conn.Children(base + "/candidates")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return ps, err
	}
	ps.Alive = orderAlive(ps.Candidates, alive)
	ps.Preferred = preferredCandidate(ps.Candidates, alive)
	queue, _, err := c.readQueue(base + "/lock")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return ps, err
	}
	for i, n := range queue {
		h := holderOf(n)
		if i == 0 {
			ps.Owner = &h
		} else {
			ps.Queued = append(ps.Queued, h)
		}
	}
	ps.HandbackPending = ps.Owner != nil && ps.Preferred != "" && ps.Owner.Process != ps.Preferred
	return ps, nil
}

// orderAlive lists alive candidates in configured order, unknown ones last.
func orderAlive(candidates, alive []string) []string {
	out := []string{}
	for _, c := range candidates {
		if slices.Contains(alive, c) {
			out = append(out, c)
		}
	}
	var extra []string
	for _, a := range alive {
		if !slices.Contains(candidates, a) {
			extra = append(extra, a)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

func (c *Coordinator) singletonStatus(name string) (SingletonStatus, error) {
	ss := SingletonStatus{Name: name, Standbys: []Holder{}}
	queue, _, err := c.readQueue(c.singletonsPath() + "/" + name)
	if err != nil {
		return ss, err
	}
	for i, n := range queue {
		h := holderOf(n)
		if i == 0 {
			ss.Leader = &h
		} else {
			ss.Standbys = append(ss.Standbys, h)
		}
	}
	return ss, nil
}

func holderOf(n lockNode) Holder {
	return Holder{Node: n.name, Process: n.data.Process, Token: n.data.Token, Fence: n.stat.Czxid,
		Since: zkTime(n.stat.Ctime), Session: sessionHex(n.stat.EphemeralOwner)}
}

// WriteText writes the status as aligned tables for people.
func (s Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ZooKeeper chroot %s, session %s\n\n", s.Chroot, s.Session)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tCANDIDATES\tALIVE\tFENCE\tSINCE\tTOKEN\tNOTE")
	writePartitions(tw, s.Partitions, false)
	if len(s.Routes) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ROUTE\tOWNER\tCANDIDATES\tALIVE\tFENCE\tSINCE\tTOKEN\tNOTE")
		writePartitions(tw, s.Routes, true)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SINGLETON\tLEADER\tSTANDBYS\tFENCE\tSINCE\tTOKEN")
	for _, sg := range s.Singletons {
		leader, fence, since, token := "-", "-", "-", "-"
		if sg.Leader != nil {
			leader, fence, since, token = sg.Leader.Process, strconv.FormatInt(sg.Leader.Fence, 10),
				sg.Leader.Since.Format(time.RFC3339), sg.Leader.Token
		}
		standbys := make([]string, len(sg.Standbys))
		for i, h := range sg.Standbys {
			standbys[i] = h.Process
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sg.Name, leader, strings.Join(standbys, ","), fence, since, token)
	}
	return tw.Flush()
}

// writePartitions writes one row per partition; a route's first column is
// topic/partition.
func writePartitions(tw io.Writer, parts []PartitionStatus, routes bool) {
	for _, p := range parts {
		owner, fence, since, token := "-", "-", "-", "-"
		if p.Owner != nil {
			owner, fence, since, token = p.Owner.Process, strconv.FormatInt(p.Owner.Fence, 10),
				p.Owner.Since.Format(time.RFC3339), p.Owner.Token
		}
		note := ""
		switch {
		case p.Owner == nil && p.Preferred == "":
			note = "no live candidate"
		case p.Owner == nil:
			note = "unowned (" + p.Preferred + " acquiring)"
		case p.HandbackPending:
			note = "handing back to " + p.Preferred
		case len(p.Queued) > 0:
			note = "queued: " + p.Queued[0].Process
		}
		name := strconv.Itoa(int(p.Partition))
		if routes {
			name = p.Topic + "/" + name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, owner, strings.Join(p.Candidates, ","),
			strings.Join(p.Alive, ","), fence, since, token, note)
	}
}

// ErrLeaseLost is wrapped by CheckLease's error when the lock is gone or
// held by someone else.
var ErrLeaseLost = errors.New("lease lost")

// CheckLease reports whether lease's lock znode still exists with its token,
// fence and session, asking the leader after a sync (so a lagging follower
// cannot answer from stale state). A run function can call it before an
// irreversible step. The answer is only as fresh as the call: a partition
// can make it stale a moment later; the fence is the real protection.
func (c *Coordinator) CheckLease(lease Lease) error {
	if v := c.sess.view(); !v.live || v.id != lease.Session {
		return fmt.Errorf("check lease (fence %d): %w: session %s is not connected", lease.Fence, ErrLeaseLost, sessionHex(lease.Session))
	}
	i := strings.LastIndexByte(lease.Node, '/')
	if i <= 0 {
		return fmt.Errorf("check lease: lease without a lock node")
	}
	dir, name := lease.Node[:i], lease.Node[i+1:]
	if _, err := c.conn.Sync(dir); err != nil {
		return fmt.Errorf("check lease: %w", err)
	}
	first, _, err := c.conn.Children(dir)
	if err != nil {
		return fmt.Errorf("check lease: %w", err)
	}
	order := electionOrder(first)
	if len(order) == 0 || order[0] != name {
		return fmt.Errorf("check lease (fence %d): %w: %s is not first in %s", lease.Fence, ErrLeaseLost, name, dir)
	}
	_, stat, err := c.conn.Get(lease.Node)
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("check lease (fence %d): %w: %s is gone", lease.Fence, ErrLeaseLost, lease.Node)
	}
	if err != nil {
		return fmt.Errorf("check lease: %w", err)
	}
	if stat.Czxid != lease.Fence || stat.EphemeralOwner != lease.Session {
		return fmt.Errorf("check lease (fence %d): %w: %s was re-created (fence %d)", lease.Fence, ErrLeaseLost, lease.Node, stat.Czxid)
	}
	return nil
}

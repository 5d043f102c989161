package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers/internal/kafka"
)

// GroupClientIDPrefix and GroupClientIDSuffix frame the process ID in the
// client ID of a consumer-group member, so that the status command can say
// which process owns a partition.
const (
	GroupClientIDPrefix = "cloudservers-bridge-"
	GroupClientIDSuffix = "-group"
)

// GroupProcess returns the bridge process ID in a consumer-group member's
// client ID, or the client ID itself when it is not a bridge's.
func GroupProcess(clientID string) string {
	id, ok := strings.CutPrefix(clientID, GroupClientIDPrefix)
	if !ok {
		return clientID
	}
	if id, ok = strings.CutSuffix(id, GroupClientIDSuffix); !ok {
		return clientID
	}
	return id
}

// GroupConsumer is the second assignment mode: instead of ZooKeeper, a Kafka
// consumer group with the cooperative-sticky assignor spreads the requests
// topic's partitions over the bridge processes. A process that dies is
// removed by the group coordinator after the group session timeout; its
// partitions go to the others, which resume from the committed offsets. A
// cooperative rebalance moves only the partitions that change owner: the
// others keep being consumed.
//
// Offsets are committed as in the ZooKeeper mode (after Temporal accepted
// the request, synchronously, under the same group), carrying the member's
// generation: the coordinator refuses a commit from a stale generation,
// which fences a zombie member. All bridges of a group must use the same
// mode: a simple commit (ZooKeeper mode) is refused while the group has
// members.
type GroupConsumer struct {
	Brokers []string
	// Process is this bridge's ID; it is in the member's client ID and in
	// the commit metadata.
	Process string
	// Group is the consumer group; default Requests.Group or RequestGroup.
	Group string
	// SessionTimeout is the group session timeout: a dead member's
	// partitions move after it (the broker accepts 6 s to 30 min by
	// default). Default 10 s.
	SessionTimeout time.Duration
	// Requests handles the messages; its Kafka client commits the offsets.
	Requests *Requests
	Log      *slog.Logger

	mu    sync.Mutex
	owned map[int32]GroupClaim
}

// GroupClaim is a partition this process consumes in consumer-group mode.
type GroupClaim struct {
	Partition  int32     `json:"partition"`
	Generation int32     `json:"generation"`
	Member     string    `json:"member"`
	Since      time.Time `json:"since"`
}

// Claims returns the partitions this process consumes now.
func (g *GroupConsumer) Claims() []GroupClaim {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GroupClaim, 0, len(g.owned))
	for _, c := range g.owned {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b GroupClaim) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}

func (g *GroupConsumer) group() string {
	return cmp.Or(g.Group, g.Requests.Group, RequestGroup)
}

// Config returns the sarama configuration of the group member.
func (g *GroupConsumer) Config() *sarama.Config {
	c := kafka.Config(GroupClientIDPrefix + g.Process + GroupClientIDSuffix)
	c.Consumer.Return.Errors = true
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	c.Consumer.Offsets.AutoCommit.Enable = false
	// Short long-polls: a partition starting waits behind the one in flight.
	c.Consumer.MaxWaitTime = 100 * time.Millisecond
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if g.Requests.Fresh == FreshAtNewest {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	st := cmp.Or(g.SessionTimeout, 10*time.Second)
	c.Consumer.Group.Session.Timeout = st
	// The coordinator tells the survivors of a member's death in its
	// answer to their next heartbeat: frequent heartbeats make the
	// takeover follow the session timeout closely.
	c.Consumer.Group.Heartbeat.Interval = max(st/10, 100*time.Millisecond)
	// A revoked partition's handler finishes its message within
	// finishGrace; the rebalance waits at most this long for it.
	c.Consumer.Group.Rebalance.Timeout = 30 * time.Second
	c.Consumer.Group.Rebalance.Retry.Backoff = 500 * time.Millisecond
	return c
}

// Run takes part in the group until ctx ends. It rejoins after errors,
// backing off; it returns nil when ctx ends.
func (g *GroupConsumer) Run(ctx context.Context) error {
	log := g.Log.With("assignment", "consumer-group", "group", g.group())
	var cg sarama.ConsumerGroup
	backoff := 500 * time.Millisecond
	for {
		var err error
		cg, err = sarama.NewConsumerGroup(g.Brokers, g.group(), g.Config())
		if err == nil {
			break
		}
		log.Warn("cannot create the consumer group member; retrying", "brokers", strings.Join(g.Brokers, ","), "error", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for err := range cg.Errors() {
			log.Warn("consumer group error", "error", err)
		}
	}()
	defer func() {
		// Close leaves the group (the partitions move at once) and
		// closes Errors(), ending the goroutine above.
		if err := cg.Close(); err != nil {
			log.Warn("leave the consumer group", "error", err)
		}
		wg.Wait()
	}()
	h := &groupHandler{g: g, log: log}
	backoff = 500 * time.Millisecond
	for ctx.Err() == nil {
		err := cg.Consume(ctx, []string{g.Requests.topic()}, h)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return err
		}
		if err != nil {
			log.Warn("consumer group session ended; rejoining", "error", err, "in", backoff)
			if !sleep(ctx, backoff) {
				break
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 500 * time.Millisecond
	}
	return nil
}

type groupHandler struct {
	g   *GroupConsumer
	log *slog.Logger
}

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.log.Info("joined the consumer group", "member", sess.MemberID(), "generation", sess.GenerationID(),
		"partitions", sess.Claims()[h.g.Requests.topic()])
	return nil
}

func (h *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.log.Info("left the consumer group session", "member", sess.MemberID(), "generation", sess.GenerationID())
	return nil
}

// ConsumeClaim consumes one partition until it is revoked (its Messages
// channel closes) or the session ends, committing after each message.
func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	g := h.g
	p := claim.Partition()
	log := h.log.With("topic", claim.Topic(), "partition", p)
	g.mu.Lock()
	if g.owned == nil {
		g.owned = map[int32]GroupClaim{}
	}
	g.owned[p] = GroupClaim{Partition: p, Generation: sess.GenerationID(), Member: sess.MemberID(), Since: time.Now().UTC()}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.owned, p)
		g.mu.Unlock()
		log.Info("partition released")
	}()
	log.Info("consuming", "from", claim.InitialOffset(), "generation", sess.GenerationID())
	kc := g.Requests.Kafka
	commit := func(_ context.Context, msg *sarama.ConsumerMessage) error {
		gen := sess.GenerationID()
		meta := fmt.Sprintf("owner=%s generation=%d", g.Process, gen)
		return commitOffset(kc, g.group(), gen, sess.MemberID(), msg.Topic, msg.Partition, msg.Offset+1, meta)
	}
	ctx := sess.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil // revoked
			}
			if err := process(ctx, msg, g.Requests.handle, commit, log); err != nil {
				return err
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

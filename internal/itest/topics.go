package itest

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// Notifications names the notification topics of one test's OpenStack, as
// a deployment's nova.conf and Ceilometer would.
type Notifications struct {
	Versioned, Legacy, Ceilometer string
}

// Topics lists the topics the router reads.
func (n Notifications) Topics() []string {
	return cloudservers.NotificationTopicsOf(n.Versioned, n.Legacy, n.Ceilometer)
}

// Configure makes a simulator publish to these topics.
func (n Notifications) Configure(cfg *openstacksim.Config) {
	cfg.VersionedTopic, cfg.LegacyTopic, cfg.CeilometerTopic = n.Versioned, n.Legacy, n.Ceilometer
}

// OwnNotificationTopics creates notification topics of the test's own,
// named with prefix, and deletes them when the test ends. A test whose
// simulator publishes there and whose router reads there neither sees the
// notifications of the tests running beside it (other packages share the
// stack) nor makes its router signal their workflows.
func OwnNotificationTopics(t testing.TB, brokers []string, prefix string) Notifications {
	t.Helper()
	n := Notifications{Versioned: prefix + "versioned_notifications", Legacy: prefix + "notifications", Ceilometer: prefix + "ceilometer.event.sample"}
	specs := make([]devstack.TopicSpec, 0, 5)
	for _, name := range n.Topics() {
		specs = append(specs, devstack.TopicSpec{Name: name, Partitions: 3, Config: map[string]string{"retention.ms": "3600000"}})
	}
	OwnTopics(t, brokers, specs...)
	return n
}

// OwnTopics creates topics of the test's own (named so that no other test
// uses them) and deletes them when the test ends.
func OwnTopics(t testing.TB, brokers []string, specs ...devstack.TopicSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devstack.CreateTopics(ctx, brokers, specs, nil); err != nil {
		t.Fatalf("create the test's topics: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("itest-cleanup"))
		if err != nil {
			return
		}
		defer admin.Close()
		for _, s := range specs {
			_ = admin.DeleteTopic(s.Name)
		}
	})
}

package setup

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// planAdminKey returns the step that makes the first admin API key when
// the API keys topic holds no admin key that is not revoked. The key is
// shown once, in the report; only its hash is stored.
func planAdminKey(ctx context.Context, cfg Config, topicExists bool, report *Report) ([]Step, []string, error) {
	target := "admin API key"
	if topicExists {
		n, err := adminKeys(ctx, cfg.Kafka, cfg.APIKeysTopic)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			return nil, []string{fmt.Sprintf("%s (%d admin keys exist; make more with cloudservers admin create-key -admin)", target, n)}, nil
		}
	}
	return []Step{{Target: target, Action: fmt.Sprintf("create one for customer %s (printed once)", cfg.AdminCustomer),
		apply: func(ctx context.Context) error {
			secret, rec, err := api.NewAPIKey(cfg.AdminCustomer, "setup", true, time.Now())
			if err != nil {
				return err
			}
			p, err := kafka.NewProducer(cfg.Kafka, "cloudservers-setup")
			if err != nil {
				return err
			}
			defer p.Close()
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := p.Send(ctx, cfg.APIKeysTopic, []byte(rec.Hash), v); err != nil {
				return fmt.Errorf("publish the admin key: %w", err)
			}
			report.AdminKey = secret
			report.AdminCustomer = cfg.AdminCustomer
			return nil
		}}}, nil, nil
}

// adminKeys counts the admin keys on the API keys topic that are not
// revoked (the newest record per key hash counts).
func adminKeys(ctx context.Context, brokers []string, topic string) (int, error) {
	kc, err := sarama.NewClient(brokers, kafka.Config("cloudservers-setup"))
	if err != nil {
		return 0, err
	}
	defer kc.Close()
	cons, err := sarama.NewConsumer(brokers, kafka.Config("cloudservers-setup-read"))
	if err != nil {
		return 0, err
	}
	defer cons.Close()
	var mu sync.Mutex
	keys := map[string]bool{}
	t := &kafka.Table{Client: kc, Consumer: cons, Topics: []string{topic},
		Apply: func(m *sarama.ConsumerMessage) {
			var k api.APIKey
			mu.Lock()
			defer mu.Unlock()
			if m.Value == nil || json.Unmarshal(m.Value, &k) != nil {
				delete(keys, string(m.Key))
				return
			}
			keys[string(m.Key)] = k.Admin && !k.Revoked
		}}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- t.Run(rctx) }()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	err = t.Sync(sctx)
	scancel()
	cancel()
	if runErr := <-done; runErr != nil {
		return 0, fmt.Errorf("read %s: %w", topic, runErr)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", topic, err)
	}
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, admin := range keys {
		if admin {
			n++
		}
	}
	return n, nil
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// runReplay re-sends the dead letters to where they came from (admin
// deadletters replay): see bridge.Replay.
func runReplay(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("admin deadletters replay", flag.ContinueOnError)
	c.register(fs)
	only := fs.String("topic", "", "replay only the dead letters of this source topic (e.g. cloudservers.requests or versioned_notifications.info)")
	dryRun := fs.Bool("dry-run", false, "list what would be replayed; send and commit nothing")
	asJSON := fs.Bool("json", false, "print each dead letter replayed as a JSON line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log := logger("admin")
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-admin-replay", log)
	if err != nil {
		return err
	}
	defer kc.Close()
	cons, err := newConsumer(ctx, brokers, "cloudservers-admin-replay-reader", log)
	if err != nil {
		return err
	}
	defer cons.Close()
	p, err := kafka.NewPartitionProducer(brokers, "cloudservers-admin-replay")
	if err != nil {
		return err
	}
	defer p.Close()
	r := &bridge.Replay{Kafka: kc, Consumer: cons, Producer: p, Only: *only, DryRun: *dryRun, Log: log}
	enc := json.NewEncoder(os.Stdout)
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	n, passed, err := r.Run(ctx, func(d bridge.Replayed) {
		if *asJSON {
			_ = enc.Encode(d)
			return
		}
		fmt.Printf("%s %s/%d@%d (dead-lettered %s: %s)\n", verb, d.Topic, d.Partition, d.Offset, d.At.Format("2006-01-02 15:04:05"), d.Error)
	})
	if !*asJSON {
		fmt.Printf("%d dead letters %s, %d passed over\n", n, verb, passed)
	}
	return err
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// runSim serves the OpenStack simulator (Keystone, Nova, Neutron, Glance on
// one port) and publishes its Nova notifications to Kafka, until ctx ends.
func runSim(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	brokers := fs.String("kafka", envOr("CLOUDSERVERS_KAFKA", ""), "Kafka brokers for the notifications, host:port[,host:port] (env CLOUDSERVERS_KAFKA); empty: notifications are dropped")
	formats := fs.String("formats", "versioned,legacy", "notification formats to publish: versioned, legacy, ceilometer (comma-separated), or none")
	ceiloTopic := fs.String("ceilometer-topic", "ceilometer.event.sample", "Kafka topic of Ceilometer events")
	versionedTopic := fs.String("versioned-topic", "versioned_notifications", "Nova's versioned_notifications_topics: versioned notifications go to <topic>.info and <topic>.error")
	legacyTopic := fs.String("legacy-topic", "notifications", "Nova's [oslo_messaging_notifications] topics: legacy notifications go to <topic>.info and <topic>.error")
	baseURL := fs.String("base-url", "", "URL clients reach the simulator at, for the catalog (default: from each request's Host)")
	readyFile := fs.String("ready-file", "", "write the simulator's base URL to this file once it listens")
	var cfg openstacksim.Config
	fs.DurationVar(&cfg.BootTime, "boot-time", 3*time.Second, "time from create to ACTIVE")
	fs.DurationVar(&cfg.RebootTime, "reboot-time", time.Second, "time a reboot takes")
	fs.DurationVar(&cfg.StopTime, "stop-time", time.Second, "time os-stop takes")
	fs.DurationVar(&cfg.StartTime, "start-time", time.Second, "time os-start takes")
	fs.DurationVar(&cfg.ResizeTime, "resize-time", 3*time.Second, "time from resize to VERIFY_RESIZE")
	fs.DurationVar(&cfg.ConfirmTime, "confirm-time", time.Second, "time confirmResize takes")
	fs.DurationVar(&cfg.RevertTime, "revert-time", 2*time.Second, "time revertResize takes")
	fs.DurationVar(&cfg.DeleteTime, "delete-time", time.Second, "time from delete to gone")
	fs.DurationVar(&cfg.RebuildTime, "rebuild-time", 2*time.Second, "time from rebuild to ACTIVE")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", time.Hour, "Keystone token lifetime")
	fs.IntVar(&cfg.Quotas.Instances, "quota-instances", 10, "Nova instances quota (-1: unlimited)")
	fs.IntVar(&cfg.Quotas.Cores, "quota-cores", 20, "Nova cores quota (-1: unlimited)")
	fs.IntVar(&cfg.Quotas.RAM, "quota-ram", 51200, "Nova RAM quota in MB (-1: unlimited)")
	fs.IntVar(&cfg.Quotas.Ports, "quota-ports", 500, "Neutron ports quota (-1: unlimited)")
	fs.IntVar(&cfg.Quotas.FloatingIPs, "quota-floatingips", 50, "Neutron floating IPs quota (-1: unlimited)")
	seed := fs.Uint64("seed", 0, "seed of rate-based faults and address choice")
	fs.StringVar(&cfg.StateFile, "state-file", "", "keep the cloud (servers, ports, floating IPs, keypairs) in this file between runs: restored at start, written at stop; empty: in memory only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := logger("openstack-sim")

	cfg.Formats = []string{}
	if *formats != "none" {
		for _, f := range strings.Split(*formats, ",") {
			switch f = strings.TrimSpace(f); f {
			case openstacksim.FormatVersioned, openstacksim.FormatLegacy, openstacksim.FormatCeilometer:
				cfg.Formats = append(cfg.Formats, f)
			case "":
			default:
				return fmt.Errorf("-formats: unknown format %q (want versioned, legacy, ceilometer or none)", f)
			}
		}
	}
	cfg.CeilometerTopic = *ceiloTopic
	cfg.VersionedTopic, cfg.LegacyTopic = *versionedTopic, *legacyTopic
	cfg.BaseURL = *baseURL
	cfg.Seed = *seed
	cfg.Logf = func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is the port in use? choose another with -listen)", *listen, err)
	}
	url := "http://" + ln.Addr().String()
	if cfg.BaseURL == "" && !strings.HasPrefix(*listen, "127.") && !strings.HasPrefix(*listen, "localhost") {
		log.Info("no -base-url: the catalog names the host each request was sent to")
	}

	// The HTTP side starts at once; notifications wait for Kafka, so that a
	// simulator started before the broker loses none.
	var pub *kafkaPublisher
	if *brokers == "" {
		log.Warn("no -kafka brokers: notifications are dropped")
	} else {
		pub = newKafkaPublisher(ctx, strings.Split(*brokers, ","), log)
		defer pub.Close()
		cfg.Publisher = pub
	}
	sim, err := openstacksim.Open(cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer sim.Close()

	hs := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("OpenStack simulator listening", "url", url, "auth_url", url+"/identity/v3", "admin", url+"/_sim/",
		"formats", strings.Join(cfg.Formats, ","), "kafka", *brokers)
	fmt.Println(url)
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(url+"\n"), 0o644); err != nil {
			_ = hs.Close()
			return fmt.Errorf("ready file: %w", err)
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if err := sim.Shutdown(); err != nil {
		return err
	}
	return ctx.Err()
}

// kafkaPublisher publishes the simulator's notifications with the shared
// acks=all producer. It connects in the background; Publish waits for the
// connection (or for ctx to end) rather than dropping notifications.
type kafkaPublisher struct {
	ready  chan struct{} // closed once connected (p set) or given up (err set)
	p      *kafka.Producer
	err    error
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newKafkaPublisher(ctx context.Context, brokers []string, log *slog.Logger) *kafkaPublisher {
	ctx, cancel := context.WithCancel(ctx)
	k := &kafkaPublisher{ready: make(chan struct{}), cancel: cancel}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer close(k.ready)
		k.p, k.err = kafka.ConnectProducer(ctx, brokers, "openstack-sim", false, log)
		if k.err == nil {
			log.Info("publishing notifications", "kafka", strings.Join(brokers, ","))
		}
	}()
	return k
}

func (k *kafkaPublisher) Publish(ctx context.Context, topic string, value []byte) error {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if k.err != nil {
		return k.err
	}
	return k.p.Publish(ctx, topic, value)
}

// Close stops connecting, waits for the connecting goroutine and closes
// the producer.
func (k *kafkaPublisher) Close() {
	k.cancel()
	k.wg.Wait()
	if k.p != nil {
		_ = k.p.Close()
	}
}

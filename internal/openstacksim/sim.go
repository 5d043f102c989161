package openstacksim

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Publisher sends one notification record. The simulator calls it from
// several goroutines at once; Kafka records carry no key, as oslo.messaging's
// kafka driver sends none.
type Publisher interface {
	Publish(ctx context.Context, topic string, value []byte) error
}

// Notification formats, as in Config.Formats.
const (
	FormatVersioned  = "versioned"
	FormatLegacy     = "legacy"
	FormatCeilometer = "ceilometer"
)

// Config configures a Sim. The zero value works: instant state changes, the
// real kit's credentials, flavors, image and networks, versioned and legacy
// notifications dropped (no Publisher).
type Config struct {
	// How long each operation takes inside "Nova", from the API call to its
	// last notification. Zero makes the operation complete at once (still
	// asynchronously), for benchmarks.
	BootTime, RebootTime, StopTime, StartTime, ResizeTime, ConfirmTime, RevertTime, DeleteTime, RebuildTime time.Duration

	// TokenTTL is a Keystone token's lifetime (default 1h). An expired token
	// gets 401, so gophercloud re-authenticates when AllowReauth is set.
	TokenTTL time.Duration

	// Formats lists the notification formats published: "versioned",
	// "legacy", "ceilometer". Nil means versioned and legacy, like the real
	// kit (notification_format = both); an empty non-nil slice means none.
	Formats []string
	// Publisher receives the notifications; nil drops them.
	Publisher Publisher
	// CeilometerTopic is the Kafka topic of Ceilometer events. Ceilometer's
	// notifier publisher sends to "<topic>.sample"; its stock event_topic is
	// "event", deployments usually set "ceilometer.event".
	CeilometerTopic string
	// VersionedTopic and LegacyTopic are the topics Nova sends its
	// versioned and legacy notifications to, as nova.conf's
	// [notifications] versioned_notifications_topics and
	// [oslo_messaging_notifications] topics (defaults
	// "versioned_notifications" and "notifications"); the Kafka driver
	// appends the priority: versioned_notifications.info, .error.
	VersionedTopic, LegacyTopic string

	// Credentials and scope accepted by Keystone (default admin / secret /
	// admin / Default / RegionOne, as the real kit).
	Username, Password, Project, Domain, Region string
	// ProjectID and UserID are the ids Keystone hands out (defaults: those
	// of the captures).
	ProjectID, UserID string

	// BaseURL is the URL clients reach the simulator at, used in the
	// catalog and in links. Empty: derived from each request's Host.
	BaseURL string
	// ComputeHost is the one hypervisor's name ("probe" in the captures).
	ComputeHost string

	// Flavors, Images and networks. Nil: the defaults of the real kit (see
	// DefaultFlavors, DefaultImages).
	Flavors []Flavor
	Images  []Image
	// TenantNetwork and ExternalNetwork are created at start; zero values
	// take the kit's: net1 10.0.0.0/24 and public 172.24.4.0/24.
	TenantNetwork, ExternalNetwork NetworkConfig

	// Quotas; zero fields take OpenStack's defaults, negative means
	// unlimited.
	Quotas Quotas

	// StateFile, when set, keeps the cloud between runs: Open restores the
	// servers, ports, floating IPs, networks' allocations and keypairs from
	// it when it exists, and saves them to it while running (see
	// StateSaveInterval) and at Close (see state.go). Empty:
	// the state lives in memory only.
	StateFile string
	// StateSaveInterval is how often the state is also saved while the
	// simulator runs, when it changed (default 5 s); negative: only at
	// Close.
	StateSaveInterval time.Duration

	// Seed makes rate-based faults reproducible.
	Seed uint64
	// Logf logs what a person running the simulator wants to see; nil
	// discards.
	Logf func(format string, args ...any)
}

// Flavor is a Nova flavor.
type Flavor struct {
	ID    string
	Name  string
	RAM   int // MB
	Disk  int // GB
	VCPUs int
}

// Image is a Glance image.
type Image struct {
	ID         string
	Name       string
	Size       int64
	MinDisk    int
	MinRAM     int
	DiskFormat string
	OSDistro   string
	OSVersion  string
}

// NetworkConfig names a network and its subnet's CIDR.
type NetworkConfig struct {
	Name string
	CIDR string
}

// Quotas are the per-project limits Nova and Neutron enforce.
type Quotas struct {
	Instances, Cores, RAM int // Nova: 10, 20, 51200 MB
	Ports, FloatingIPs    int // Neutron: 500, 50
}

// Hypervisor capacity of the real kit's FakeDriver: a flavor beyond it gets
// "No valid host was found." like m1.toobig in the captures.
const (
	hypervisorVCPUs  = 1000
	hypervisorRAMMB  = 800000
	hypervisorDiskGB = 600000
)

// The ids of the captured deployment, used as defaults so that simulated
// exchanges look like the captured ones.
const (
	defaultProjectID = "59056836ca1947739e778220431ee514"
	defaultUserID    = "1c8497d2d7aa4e36a49cb4c03ebfc605"
)

// DefaultFlavors are the flavors of the capture run: the kit's m1.tiny and
// m1.small, plus m1.huge (over the RAM quota: 403) and m1.toobig (bigger
// than the hypervisor: No valid host) to provoke those failures the real way.
func DefaultFlavors() []Flavor {
	return []Flavor{
		{ID: "411218af-4ba3-458b-866a-c266548e30c7", Name: "m1.tiny", RAM: 64, Disk: 1, VCPUs: 1},
		{ID: "dd4e164b-a488-445a-80f1-e0b829eaaf79", Name: "m1.small", RAM: 128, Disk: 2, VCPUs: 1},
		{ID: "af7ffe4a-d11c-48df-b689-27d2289b10cf", Name: "m1.huge", RAM: 4194304, Disk: 1, VCPUs: 1},
		{ID: "8f086964-042e-468c-8dae-06ec7d35db2f", Name: "m1.toobig", RAM: 128, Disk: 10000000, VCPUs: 1},
	}
}

// DefaultImages are the kit's "tiny" and two realistic cloud images.
func DefaultImages() []Image {
	return []Image{
		{ID: "7edef56c-d408-4fec-8910-43a6cf8c5637", Name: "tiny", Size: 1048576, DiskFormat: "raw"},
		{ID: "3c5f1a4e-8d2b-4f6a-9e7c-1b2d3e4f5a60", Name: "ubuntu-24.04", Size: 594542592, MinDisk: 3, DiskFormat: "qcow2", OSDistro: "ubuntu", OSVersion: "24.04"},
		{ID: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", Name: "debian-12", Size: 363528192, MinDisk: 2, DiskFormat: "qcow2", OSDistro: "debian", OSVersion: "12"},
	}
}

func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Username, "admin")
	def(&c.Password, "secret")
	def(&c.Project, "admin")
	def(&c.Domain, "Default")
	def(&c.Region, "RegionOne")
	def(&c.ProjectID, defaultProjectID)
	def(&c.UserID, defaultUserID)
	def(&c.ComputeHost, "probe")
	def(&c.CeilometerTopic, "ceilometer.event.sample")
	def(&c.VersionedTopic, "versioned_notifications")
	def(&c.LegacyTopic, "notifications")
	def(&c.TenantNetwork.Name, "net1")
	def(&c.TenantNetwork.CIDR, "10.0.0.0/24")
	def(&c.ExternalNetwork.Name, "public")
	def(&c.ExternalNetwork.CIDR, "172.24.4.0/24")
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
	if c.Formats == nil {
		c.Formats = []string{FormatVersioned, FormatLegacy}
	}
	if c.Flavors == nil {
		c.Flavors = DefaultFlavors()
	}
	if c.Images == nil {
		c.Images = DefaultImages()
	}
	q := &c.Quotas
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&q.Instances, 10)
	defInt(&q.Cores, 20)
	defInt(&q.RAM, 51200)
	defInt(&q.Ports, 500)
	defInt(&q.FloatingIPs, 50)
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Sim is a running simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config

	// ctx is cancelled by Close; every goroutine the Sim starts watches it
	// and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards everything below
	rng      *mrand.Rand
	tokens   map[string]*token
	flavors  []*flavor
	images   []*image
	networks []*network // creation order
	subnets  map[string]*subnet
	ports    map[string]*port
	fips     map[string]*floatingIP
	servers  map[string]*server
	deleted  map[string]*server // tombstones for changes-since
	keypairs map[string]*keypair
	quotas   Quotas
	seq      int // instance-NNNNNNNN names, keypair ids

	// faultRNG draws for rate-based faults; it has its own lock because
	// faults are matched outside s.mu.
	rngMu    sync.Mutex
	faultRNG *mrand.Rand

	faults   *Faults
	calls    *callLog
	notifier *notifier
	mux      *http.ServeMux
	admin    *http.ServeMux

	saveOnce sync.Once
	saveErr  error
}

// New starts a simulator. Close stops its goroutines. With a
// Config.StateFile that cannot be loaded New panics: use Open to get the
// error.
func New(cfg Config) *Sim {
	s, err := Open(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// Open starts a simulator like New and, when Config.StateFile exists,
// restores the cloud saved there, settling the operations it caught in
// flight. An unreadable, corrupt or inconsistent file is an error: it is
// never taken for an empty cloud.
func Open(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		cfg:      cfg,
		ctx:      ctx,
		cancel:   cancel,
		rng:      mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		faultRNG: mrand.New(mrand.NewPCG(cfg.Seed^0x5bd1e995, cfg.Seed)),
		tokens:   map[string]*token{},
		subnets:  map[string]*subnet{},
		ports:    map[string]*port{},
		fips:     map[string]*floatingIP{},
		servers:  map[string]*server{},
		deleted:  map[string]*server{},
		keypairs: map[string]*keypair{},
		quotas:   cfg.Quotas,
		calls:    newCallLog(),
	}
	s.faults = &Faults{sim: s}
	s.notifier = newNotifier(s)
	for _, f := range cfg.Flavors {
		s.flavors = append(s.flavors, &flavor{Flavor: f, created: startTime})
	}
	for _, im := range cfg.Images {
		s.images = append(s.images, newImage(im))
	}
	s.createDefaultNetworks()
	if cfg.StateFile != "" {
		s.mu.Lock()
		err := s.loadState()
		s.mu.Unlock()
		if err != nil {
			s.cancel() // not Close: that would write an empty cloud over the file
			s.wg.Wait()
			return nil, err
		}
		if cfg.StateSaveInterval >= 0 {
			s.wg.Add(1)
			go s.autosave(cmp.Or(cfg.StateSaveInterval, 5*time.Second))
		}
	}
	s.mux = http.NewServeMux()
	s.routeKeystone()
	s.routeNova()
	s.routeNeutron()
	s.routeGlance()
	s.admin = http.NewServeMux()
	s.routeAdmin()
	return s, nil
}

// startTime is when the simulated cloud's fixed resources were made; the
// captures' clock.
var startTime = time.Date(2026, 11, 25, 20, 48, 43, 0, time.UTC)

// Close stops every timer and goroutine of the simulator and waits for
// them. Operations in flight stop where they are; undelivered delayed
// notifications are dropped. With a Config.StateFile it then saves the
// state there (logging a failure; Shutdown returns it).
func (s *Sim) Close() { _ = s.Shutdown() }

// Shutdown is Close, reporting whether the state file was written. Only
// the first call saves; later ones return its result.
func (s *Sim) Shutdown() error {
	s.cancel()
	s.wg.Wait()
	s.saveOnce.Do(func() {
		if s.cfg.StateFile == "" {
			return
		}
		if s.saveErr = s.saveState(); s.saveErr != nil {
			s.logf("%v", s.saveErr)
		}
	})
	return s.saveErr
}

// Handler returns the simulator's HTTP handler.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Faults returns the fault injection API.
func (s *Sim) Faults() *Faults { return s.faults }

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") || r.URL.Path == "/_sim" {
		s.admin.ServeHTTP(w, r)
		return
	}
	_, pattern := s.mux.Handler(r)
	template := pattern
	if !strings.Contains(template, " ") {
		// A service's catch-all (404/405) matched: log the literal path,
		// there is no template.
		template = r.Method + " " + r.URL.Path
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	defer func() {
		s.calls.record(Call{Time: start, Method: r.Method, Path: r.URL.Path, Template: template,
			Status: rec.status, Duration: time.Since(start)})
	}()
	if s.faults.intercept(rec, r, template) {
		return
	}
	s.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(b)
}

// baseURL is where the client reached us: the configured one or the
// request's Host.
func (s *Sim) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return s.cfg.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// goAfter runs f after d in a goroutine owned by the Sim; it returns at once.
// f does not run if the Sim closes first.
func (s *Sim) goAfter(d time.Duration, f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.sleep(d) {
			return
		}
		f()
	}()
}

// sleep waits d or until Close; it reports whether the Sim is still open.
func (s *Sim) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// newUUID returns a random version 4 UUID, as OpenStack ids are.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newHexID returns 32 hex digits, the form of Keystone's ids.
func newHexID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newRequestID() string { return "req-" + newUUID() }

// Time formats of the OpenStack APIs.
const (
	isoSeconds = "2006-01-02T15:04:05Z"        // Nova created/updated, Neutron, Glance
	isoMicro   = "2006-01-02T15:04:05.000000"  // Nova launched_at, os-migrations
	osloTime   = "2006-01-02 15:04:05.000000"  // oslo notification timestamp
	keystoneTS = "2006-01-02T15:04:05.000000Z" // token expires_at
)

func now() time.Time { return time.Now().UTC() }

// logf logs through Config.Logf.
func (s *Sim) logf(format string, args ...any) { s.cfg.Logf(format, args...) }

// StdLogf adapts the standard logger to Config.Logf.
func StdLogf(l *log.Logger) func(string, ...any) {
	return func(format string, args ...any) { l.Output(2, fmt.Sprintf(format, args...)) }
}

package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// engineSnapshot is what the stack's processes had spent at one moment: the
// CPU time of each (user + system, from /proc), and Temporal's persistence
// requests by operation (its Prometheus endpoint). Two snapshots around a
// burst say where the burst's work went: the profile behind the throughput
// rows, taken on the engines the rows measure.
type engineSnapshot struct {
	at          time.Time
	cpu         map[string]float64 // process name -> CPU seconds
	persistence map[string]float64 // operation -> requests
	service     map[string]float64 // Temporal API method -> requests
}

// engineUse is the difference of two snapshots.
type engineUse struct {
	elapsed     time.Duration
	cpu         map[string]float64
	persistence map[string]float64
	service     map[string]float64
}

// snapshotEngines reads the CPU time of every process in pids and the
// persistence counters at metricsURL (either may be missing: the result
// then lacks that part).
func snapshotEngines(ctx context.Context, pids map[string]int, metricsURL string) (engineSnapshot, error) {
	s := engineSnapshot{at: time.Now(), cpu: map[string]float64{}}
	for name, pid := range pids {
		p, err := procfs.NewProc(pid)
		if err != nil {
			continue // ended, or not on this machine's /proc
		}
		st, err := p.Stat()
		if err != nil {
			continue
		}
		s.cpu[name] = st.CPUTime()
	}
	if metricsURL == "" {
		return s, nil
	}
	families, err := scrape(ctx, metricsURL)
	if err != nil {
		return s, err
	}
	s.persistence = byOperation(families, "persistence_requests")
	s.service = byOperation(families, "service_requests")
	return s, nil
}

// scrape reads a Prometheus text exposition.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Temporal metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("Temporal metrics %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("Temporal metrics %s: %w", url, err)
	}
	return families, nil
}

// byOperation sums a counter (with or without the _total suffix) by its
// operation label.
func byOperation(families map[string]*dto.MetricFamily, counter string) map[string]float64 {
	out := map[string]float64{}
	for _, name := range []string{counter, counter + "_total"} {
		f, ok := families[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			op := "?"
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					op = l.GetValue()
				}
			}
			out[op] += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return out
}

func (s engineSnapshot) since(before engineSnapshot) engineUse {
	u := engineUse{elapsed: s.at.Sub(before.at), cpu: map[string]float64{},
		persistence: grown(s.persistence, before.persistence), service: grown(s.service, before.service)}
	for k, v := range s.cpu {
		if b, ok := before.cpu[k]; ok {
			u.cpu[k] = v - b
		}
	}
	return u
}

// grown is what each counter grew by from before to now.
func grown(now, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range now {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// cpuTable renders each process's CPU seconds over the burst, largest
// first: "temporal 41.2 s, worker 6.1 s, ...".
func (u engineUse) cpuTable() string {
	names := make([]string, 0, len(u.cpu))
	for n := range u.cpu {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return u.cpu[names[i]] > u.cpu[names[j]] })
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f s", n, u.cpu[n]))
	}
	return strings.Join(parts, ", ")
}

// top renders the n largest counters of sys per unit of work (per
// create): "UpdateWorkflowExecution 9.1 (raw 6.0), ...", beside raw's
// figure for the same counter.
func top(sys, raw map[string]float64, sysN, rawN float64, n int) string {
	ops := make([]string, 0, len(sys))
	for op := range sys {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int {
		switch {
		case sys[a] > sys[b]:
			return -1
		case sys[a] < sys[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := []string{}
	for _, op := range ops[:min(n, len(ops))] {
		parts = append(parts, fmt.Sprintf("%s %.1f (raw %.1f)", op, sys[op]/sysN, raw[op]/rawN))
	}
	return strings.Join(parts, ", ")
}

// engineRows adds the rows of where a burst's work went: Temporal's CPU
// and persistence requests per unit, the system beside the raw workflow of
// the same shape (whose burst ran just before, on the same engines).
func (r *runner) engineRows(section, unit string, sys, raw engineUse, sysN, rawN int) {
	if sysN == 0 || rawN == 0 {
		return
	}
	fs, fr := float64(sysN), float64(rawN)
	if c, ok := sys.cpu["temporal"]; ok {
		if rc, ok := raw.cpu["temporal"]; ok {
			r.rep.Add(Row{Section: section, Measure: "Temporal server CPU per " + unit, Unit: "ms", System: 1000 * c / fs,
				Baseline: Float(1000 * rc / fr), Note: "CPU over the burst: " + sys.cpuTable()})
		}
	}
	if len(sys.persistence) > 0 && len(raw.persistence) > 0 {
		r.rep.Add(Row{Section: section, Measure: "Temporal persistence requests per " + unit, Unit: "requests",
			System: total(sys.persistence) / fs, Baseline: Float(total(raw.persistence) / fr),
			Note: "busiest: " + top(sys.persistence, raw.persistence, fs, fr, 5)})
	}
	if len(sys.service) > 0 && len(raw.service) > 0 {
		r.rep.Add(Row{Section: section, Measure: "Temporal API requests per " + unit, Unit: "requests",
			System: total(sys.service) / fs, Baseline: Float(total(raw.service) / fr),
			Note: "busiest: " + top(sys.service, raw.service, fs, fr, 6)})
	}
}

// machineBusy returns the CPU seconds the whole machine had been busy and
// idle since boot (every core), so that two readings give how busy it was
// in between.
func machineBusy() (busy, idle float64, err error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, 0, err
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, 0, err
	}
	c := st.CPUTotal
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal, c.Idle + c.Iowait, nil
}

// busyMeter measures the machine's busy share of all its cores between
// its start and Share.
type busyMeter struct{ busy, idle float64 }

func startBusy() busyMeter {
	b, i, _ := machineBusy()
	return busyMeter{b, i}
}

// Share is the busy fraction (0..1) since the start; 0 when /proc cannot
// be read.
func (m busyMeter) Share() float64 {
	b, i, err := machineBusy()
	if err != nil || b+i-m.busy-m.idle <= 0 {
		return 0
	}
	return (b - m.busy) / (b + i - m.busy - m.idle)
}

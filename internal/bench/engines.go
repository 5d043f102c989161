package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

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
}

// engineUse is the difference of two snapshots.
type engineUse struct {
	elapsed     time.Duration
	cpu         map[string]float64
	persistence map[string]float64
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
	var err error
	s.persistence, err = persistenceRequests(ctx, metricsURL)
	return s, err
}

// persistenceRequests sums Temporal's persistence_requests counter by its
// operation label.
func persistenceRequests(ctx context.Context, url string) (map[string]float64, error) {
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
	out := map[string]float64{}
	for _, name := range []string{"persistence_requests", "persistence_requests_total"} {
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
	return out, nil
}

func (s engineSnapshot) since(before engineSnapshot) engineUse {
	u := engineUse{elapsed: s.at.Sub(before.at), cpu: map[string]float64{}, persistence: map[string]float64{}}
	for k, v := range s.cpu {
		if b, ok := before.cpu[k]; ok {
			u.cpu[k] = v - b
		}
	}
	for k, v := range s.persistence {
		if d := v - before.persistence[k]; d > 0 {
			u.persistence[k] = d
		}
	}
	return u
}

func (u engineUse) persistenceTotal() float64 {
	var t float64
	for _, v := range u.persistence {
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

// topPersistence renders the n busiest persistence operations per unit of
// work (per create): "UpdateWorkflowExecution 9.1, ...", beside the
// baseline's figure for the same operation.
func topPersistence(sys, raw engineUse, sysN, rawN float64, n int) string {
	ops := make([]string, 0, len(sys.persistence))
	for op := range sys.persistence {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int {
		switch {
		case sys.persistence[a] > sys.persistence[b]:
			return -1
		case sys.persistence[a] < sys.persistence[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := []string{}
	for _, op := range ops[:min(n, len(ops))] {
		parts = append(parts, fmt.Sprintf("%s %.1f (raw %.1f)", op, sys.persistence[op]/sysN, raw.persistence[op]/rawN))
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
			System: sys.persistenceTotal() / fs, Baseline: Float(raw.persistenceTotal() / fr),
			Note: "busiest: " + topPersistence(sys, raw, fs, fr, 5)})
	}
}

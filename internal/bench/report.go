package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// Report is the outcome of one benchmark run: rows of measures beside their
// baselines, and the raw samples behind the latency rows (for the picture).
type Report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Machine  string    `json:"machine"`
	Config   Config    `json:"config"`
	Rows     []Row     `json:"rows"`
	// Samples holds latency samples in milliseconds by series name
	// ("accept/system/1"), and Throughput the rates per second by series,
	// for the picture and for anyone who wants other percentiles.
	Samples    map[string][]float64 `json:"samples,omitempty"`
	Throughput map[string]float64   `json:"throughput,omitempty"`
	// Errors are failures that did not stop the run (a POST refused, an
	// operation that failed): a row without them would overstate the system.
	Errors []string `json:"errors,omitempty"`
}

// Row is one measure of the system beside its raw baseline on the same
// engines in the same run. Sections other than this package's (the router
// benchmark, say) append rows of the same type through Report.Add.
type Row struct {
	Section string  `json:"section"`
	Measure string  `json:"measure"`
	Unit    string  `json:"unit"`
	System  float64 `json:"system"`
	// Baseline is nil where the measure has none (a count the target bounds
	// on its own).
	Baseline *float64 `json:"baseline,omitempty"`
	// Ratio is System / Baseline, when there is a baseline.
	Ratio  *float64 `json:"ratio,omitempty"`
	Target *Target  `json:"target,omitempty"`
	// Met says whether the target holds; nil without a target.
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

// Target is a bound on a row: System Op Factor×Baseline + Offset, or, when
// Absolute, System Op Offset.
type Target struct {
	Op       string  `json:"op"` // "<=" or ">="
	Factor   float64 `json:"factor,omitempty"`
	Offset   float64 `json:"offset,omitempty"`
	Absolute bool    `json:"absolute,omitempty"`
}

// AtMost is the target System <= factor×baseline + offset.
func AtMost(factor, offset float64) *Target { return &Target{Op: "<=", Factor: factor, Offset: offset} }

// AtLeast is the target System >= factor×baseline + offset.
func AtLeast(factor, offset float64) *Target {
	return &Target{Op: ">=", Factor: factor, Offset: offset}
}

// AtMostAbs is the target System <= limit.
func AtMostAbs(limit float64) *Target { return &Target{Op: "<=", Offset: limit, Absolute: true} }

// Bound is the value System is compared with; ok is false when the target
// needs a baseline the row lacks.
func (t Target) Bound(baseline *float64) (float64, bool) {
	if t.Absolute {
		return t.Offset, true
	}
	if baseline == nil {
		return 0, false
	}
	return t.Factor**baseline + t.Offset, true
}

func (t Target) String() string {
	op := map[string]string{"<=": "≤", ">=": "≥"}[t.Op]
	if t.Absolute {
		return op + " " + fmt.Sprintf("%g", t.Offset)
	}
	s := op + " " + fmt.Sprintf("%g", t.Factor) + "× raw"
	if t.Offset != 0 {
		s += fmt.Sprintf(" + %g", t.Offset)
	}
	return s
}

// NewRow builds a row and evaluates it: ratio and whether the target is met.
func NewRow(section, measure, unit string, system float64, baseline *float64, target *Target) Row {
	r := Row{Section: section, Measure: measure, Unit: unit, System: system, Baseline: baseline, Target: target}
	r.evaluate()
	return r
}

func (r *Row) evaluate() {
	r.Ratio, r.Met = nil, nil
	if r.Baseline != nil && *r.Baseline != 0 && !math.IsNaN(r.System) {
		q := r.System / *r.Baseline
		r.Ratio = &q
	}
	if r.Target == nil || math.IsNaN(r.System) {
		return
	}
	bound, ok := r.Target.Bound(r.Baseline)
	if !ok {
		return
	}
	met := r.System <= bound
	if r.Target.Op == ">=" {
		met = r.System >= bound
	}
	r.Met = &met
}

// Float returns a pointer to v, for Row.Baseline.
func Float(v float64) *float64 { return &v }

// Add appends rows, evaluating each (ratio, met): the hook through which
// other benchmarks put their measures in the same report.
func (rep *Report) Add(rows ...Row) {
	for _, r := range rows {
		r.evaluate()
		rep.Rows = append(rep.Rows, r)
	}
}

// AddSamples records latency samples (milliseconds) under name.
func (rep *Report) AddSamples(name string, ms []float64) {
	if rep.Samples == nil {
		rep.Samples = map[string][]float64{}
	}
	rep.Samples[name] = ms
}

// AddError records a failure that did not end the run.
func (rep *Report) AddError(format string, args ...any) {
	rep.Errors = append(rep.Errors, fmt.Sprintf(format, args...))
}

// Percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample with at least p % of the
// samples at or below it. An empty slice gives NaN. samples is not changed.
func Percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Max returns the largest sample, NaN for none.
func Max(samples []float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	return slices.Max(samples)
}

// Millis converts durations to milliseconds.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// num prints a number with a precision that suits its size.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// WriteTable prints the rows side by side, grouped by section.
// maxInlineNote is the longest note written beside its measure.
const maxInlineNote = 60

func (rep *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "topology: %s\n", TopologyLabel(rep.Config.Topology))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tmeasure\tsystem\traw baseline\tratio\ttarget\tmet")
	section := ""
	var notes []string
	for _, r := range rep.Rows {
		sec := ""
		if r.Section != section {
			sec, section = r.Section, r.Section
		}
		base, ratio, target, met := "-", "-", "-", "-"
		if r.Baseline != nil {
			base = num(*r.Baseline) + " " + r.Unit
		}
		if r.Ratio != nil {
			ratio = num(*r.Ratio) + "×"
		}
		if r.Target != nil {
			target = r.Target.String()
			if r.Target.Absolute {
				target += " " + r.Unit
			}
		}
		if r.Met != nil {
			met = map[bool]string{true: "met", false: "NOT met"}[*r.Met]
		}
		measure := r.Measure
		switch {
		case len(r.Note) > maxInlineNote:
			// A long note (where the CPU went, the busiest requests)
			// goes under the table, so the columns stay readable.
			notes = append(notes, r.Note)
			measure += fmt.Sprintf(" [%d]", len(notes))
		case r.Note != "":
			measure += " (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sec, measure, num(r.System)+" "+r.Unit, base, ratio, target, met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, n := range notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
	met, all := 0, 0
	for _, r := range rep.Rows {
		if r.Met != nil {
			all++
			if *r.Met {
				met++
			}
		}
	}
	fmt.Fprintf(w, "\ntargets met: %d of %d\n", met, all)
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\n%d errors during the run:\n  %s\n", len(rep.Errors), strings.Join(firstN(rep.Errors, 10), "\n  "))
	}
	return nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("... and %d more", len(s)-n))
	}
	return s
}

// WriteJSON writes the report to path, creating its folder.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// TopologyLabel says what a topology runs the system on, for the report:
// the Temporal dev server or the Temporal server on PostgreSQL above all.
func TopologyLabel(topology string) string {
	if topology == devstack.TopologyHA {
		return fmt.Sprintf("ha: the Temporal server on PostgreSQL (%d history shards), 3 Kafka brokers (RF %d, min.insync.replicas %d), 3 ZooKeeper servers, 2 API replicas (the load goes to the first), 3 bridges, 2 workers",
			devstack.HAHistoryShards, devstack.HAReplicationFactor, devstack.HAMinInsyncReplicas)
	}
	return "single: the Temporal dev server (SQLite), 1 Kafka broker (RF 1), 1 ZooKeeper server, 1 API, 2 bridges, 1 worker"
}

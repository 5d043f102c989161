package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	s := []float64{15, 20, 35, 40, 50}
	for _, c := range []struct{ p, want float64 }{
		{5, 15}, {30, 20}, {40, 20}, {50, 35}, {99, 50}, {100, 50},
	} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", s, c.p, got, c.want)
		}
	}
	// Unsorted input gives the same answers and is left as it was.
	u := []float64{50, 15, 40, 20, 35}
	if got := Percentile(u, 50); got != 35 {
		t.Errorf("unsorted p50 = %v, want 35", got)
	}
	if u[0] != 50 {
		t.Errorf("Percentile sorted its input: %v", u)
	}
	// p99 of 100 samples 1..100 is 99, of 1000 it is 990.
	var h []float64
	for i := 1; i <= 1000; i++ {
		h = append(h, float64(i))
	}
	if got := Percentile(h[:100], 99); got != 99 {
		t.Errorf("p99 of 1..100 = %v", got)
	}
	if got := Percentile(h, 99); got != 990 {
		t.Errorf("p99 of 1..1000 = %v", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) || !math.IsNaN(Max(nil)) {
		t.Error("no samples must give NaN")
	}
	if got := Max(s); got != 50 {
		t.Errorf("Max = %v", got)
	}
}

func TestMillis(t *testing.T) {
	got := Millis([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if got[0] != 1.5 || got[1] != 2000 {
		t.Errorf("Millis = %v", got)
	}
}

func TestTargets(t *testing.T) {
	for _, c := range []struct {
		name      string
		system    float64
		baseline  *float64
		target    *Target
		wantMet   *bool
		wantRatio float64
	}{
		{"throughput under 0.8x", 4.5, Float(20), AtLeast(0.8, 0), boolp(false), 0.225},
		{"throughput at 0.8x", 16, Float(20), AtLeast(0.8, 0), boolp(true), 0.8},
		// accept p99 at 20 clients: <= 2x raw + 2 ms
		{"accept within 2x+2", 9.6, Float(3.8), AtMost(2, 2), boolp(true), 9.6 / 3.8},
		{"accept over 2x+2", 380, Float(3.8), AtMost(2, 2), boolp(false), 380 / 3.8},
		{"signals absolute", 20, nil, AtMostAbs(3), boolp(false), math.NaN()},
		{"signals absolute with a baseline", 2, Float(2), AtMostAbs(3), boolp(true), 1},
		{"relative target without a baseline", 1, nil, AtMost(1.5, 0), nil, math.NaN()},
		{"no target", 1, Float(2), nil, nil, 0.5},
		{"no system value", math.NaN(), Float(2), AtMost(1.5, 0), nil, math.NaN()},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewRow("s", "m", "u", c.system, c.baseline, c.target)
			if (r.Met == nil) != (c.wantMet == nil) || (r.Met != nil && *r.Met != *c.wantMet) {
				t.Errorf("met = %v, want %v", deref(r.Met), deref(c.wantMet))
			}
			if math.IsNaN(c.wantRatio) {
				if r.Ratio != nil {
					t.Errorf("ratio = %v, want none", *r.Ratio)
				}
			} else if r.Ratio == nil || math.Abs(*r.Ratio-c.wantRatio) > 1e-9 {
				t.Errorf("ratio = %v, want %v", r.Ratio, c.wantRatio)
			}
		})
	}
	if got := AtMost(2, 2).String(); got != "≤ 2× raw + 2" {
		t.Errorf("target text %q", got)
	}
	if got := AtLeast(0.8, 0).String(); got != "≥ 0.8× raw" {
		t.Errorf("target text %q", got)
	}
}

func boolp(b bool) *bool { return &b }

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestReportOutputs: rows appended by another section are evaluated, the
// table shows each with its verdict, and the JSON round-trips.
func TestReportOutputs(t *testing.T) {
	rep := &Report{Config: DefaultConfig()}
	rep.Add(
		Row{Section: "create", Measure: "creates/s", Unit: "/s", System: 4.5, Baseline: Float(20), Target: AtLeast(0.8, 0)},
		Row{Section: "create", Measure: "p50", Unit: "s", System: 30, Baseline: Float(5)},
		// As the router benchmark would append it.
		Row{Section: "router", Measure: "notifications/s, 2 routers", Unit: "/s", System: 8300, Baseline: Float(16000), Target: AtLeast(0.5, 0)},
	)
	rep.AddError("create by bench-01: %s", "rate_limited")
	if rep.Rows[0].Met == nil || *rep.Rows[0].Met || rep.Rows[2].Met == nil || !*rep.Rows[2].Met {
		t.Fatalf("rows not evaluated by Add: %+v", rep.Rows)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"topology: single: the Temporal dev server", "NOT met", "0.225×", "router", "notifications/s, 2 routers", "targets met: 1 of 2", "rate_limited"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// The section name is printed once per group.
	if n := strings.Count(out, "create  "); n != 1 {
		t.Errorf("section printed %d times:\n%s", n, out)
	}

	path := filepath.Join(t.TempDir(), "sub", "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 3 || back.Rows[0].Ratio == nil || *back.Rows[0].Ratio != 0.225 || back.Rows[1].Met != nil || back.Config.N != 100 {
		t.Errorf("JSON did not round-trip: %s", b)
	}
}

// TestPicture draws a report's picture without engines: the file is a PNG
// (or an SVG) of some size.
func TestPicture(t *testing.T) {
	rep := &Report{Config: DefaultConfig(), Started: time.Now()}
	rep.AddSamples("accept/system/1", []float64{190, 200, 250, 400})
	rep.AddSamples("accept/raw/1", []float64{0.3, 0.29, 0.5, 3.8})
	rep.AddSamples("accept/system/20", []float64{200, 300, 360})
	rep.AddSamples("accept/raw/20", []float64{1, 2, 4})
	rep.AddSamples("create/system", []float64{27000, 33000, 40000})
	rep.AddSamples("create/raw", []float64{4600, 5500})
	rep.Throughput = map[string]float64{"create/system": 4.5, "create/raw": 20}
	rep.Add(Row{Section: secHistory, Measure: "events per create", System: 264, Baseline: Float(25)})
	dir := t.TempDir()
	for _, name := range []string{"r.png", "r.svg"} {
		path := filepath.Join(dir, name)
		if err := rep.WritePicture(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 10000 {
			t.Errorf("%s: only %d bytes", name, len(b))
		}
		if name == "r.png" && !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
		if name == "r.svg" && !bytes.Contains(b[:200], []byte("<svg")) {
			t.Errorf("%s is not an SVG", name)
		}
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	c.N = 2000
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-customers") {
		t.Errorf("too many servers for the customers: %v", err)
	}
	c = DefaultConfig()
	c.C = 0
	if err := c.Validate(); err == nil {
		t.Error("c = 0 accepted")
	}
}

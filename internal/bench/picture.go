package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	systemColor = color.RGBA{R: 0xd6, G: 0x4f, B: 0x3c, A: 0xff}
	rawColor    = color.RGBA{R: 0x4a, G: 0x7d, B: 0xb8, A: 0xff}
)

// WritePicture draws the latency distributions and the throughputs beside
// their baselines: PNG, or SVG when path ends in .svg.
func (rep *Report) WritePicture(path string) error {
	panels := [][]*plot.Plot{{nil, nil}, {nil, nil}}
	var err error
	if panels[0][0], err = rep.boxes("accept: POST → 202 beside a raw produce (ms, log scale)", true, 1,
		[]string{"accept/system/1", "accept/raw/1", fmt.Sprintf("accept/system/%d", rep.Config.AcceptClients), fmt.Sprintf("accept/raw/%d", rep.Config.AcceptClients)},
		[]string{"system\n1 client", "raw\n1 producer", fmt.Sprintf("system\n%d clients", rep.Config.AcceptClients), fmt.Sprintf("raw\n%d producers", rep.Config.AcceptClients)}); err != nil {
		return err
	}
	if panels[0][1], err = rep.boxes(fmt.Sprintf("POST → succeeded, %d at %d clients (s)", rep.Config.N, rep.Config.C), false, 1000,
		[]string{"create/system", "create/raw", "delete/system", "delete/raw"},
		[]string{"create\nsystem", "create\nraw workflow", "delete\nsystem", "delete\nraw workflow"}); err != nil {
		return err
	}
	if panels[1][0], err = bars("end-to-end throughput (operations/s)",
		[]string{"creates\nsystem", "creates\nraw", "deletes\nsystem", "deletes\nraw"},
		[]float64{rep.Throughput["create/system"], rep.Throughput["create/raw"], rep.Throughput["delete/system"], rep.Throughput["delete/raw"]}); err != nil {
		return err
	}
	hist := func(measure string, baseline bool) float64 {
		for _, r := range rep.Rows {
			if r.Section == secHistory && r.Measure == measure {
				if baseline {
					if r.Baseline != nil {
						return *r.Baseline
					}
					return 0
				}
				return r.System
			}
		}
		return 0
	}
	if panels[1][1], err = bars("Temporal history per operation (events; signals)",
		[]string{"events/create\nsystem", "raw", "events/delete\nsystem", "raw", "signals/create\nsystem", "raw"},
		[]float64{hist("events per create", false), hist("events per create", true), hist("events per delete", false), hist("events per delete", true),
			hist("signals per create", false), hist("signals per create", true)}); err != nil {
		return err
	}

	w, h := vg.Points(1400), vg.Points(1000)
	var c vg.CanvasWriterTo
	if strings.HasSuffix(path, ".svg") {
		c = vgsvg.New(w, h)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseBackgroundColor(color.White))}
	}
	dc := draw.New(c)
	title := fmt.Sprintf("cloudservers bench, %s, topology %s — red: the system, blue: raw baseline on the same engines, same run", rep.Started.Format("2006-01-02 15:04"), rep.Config.Topology)
	font := plot.DefaultFont
	font.Size = vg.Points(16)
	dc.FillText(draw.TextStyle{Color: color.Black, Font: font, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter},
		vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - vg.Points(22)}, title)
	body := dc
	body.Max.Y -= vg.Points(34)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Points(30), PadY: vg.Points(30), PadTop: vg.Points(6), PadBottom: vg.Points(10), PadLeft: vg.Points(10), PadRight: vg.Points(10)}
	canvases := plot.Align(panels, tiles, body)
	for i := range panels {
		for j := range panels[i] {
			panels[i][j].Draw(canvases[i][j])
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Tick.Label.Font.Size = vg.Points(11)
	p.Y.Tick.Label.Font.Size = vg.Points(11)
	p.Add(plotter.NewGrid())
	return p
}

// boxes draws one box plot per series (quartiles, whiskers, outliers),
// system and raw alternating.
func (rep *Report) boxes(title string, logScale bool, scale float64, series, labels []string) (*plot.Plot, error) {
	p := newPlot(title)
	if logScale {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	for i, name := range series {
		vals := rep.Samples[name]
		if len(vals) == 0 {
			continue
		}
		vals = slices.Clone(vals)
		for k := range vals {
			vals[k] /= scale
		}
		v := make(plotter.Values, len(vals))
		for k, x := range vals {
			if logScale && x <= 0 {
				x = 1e-3
			}
			v[k] = x
		}
		b, err := plotter.NewBoxPlot(vg.Points(60), float64(i), v)
		if err != nil {
			return nil, err
		}
		b.FillColor = rawColor
		if strings.Contains(name, "/system") {
			b.FillColor = systemColor
		}
		p.Add(b)
		// The p99 beside each box: the figure the targets are about.
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(i) + 0.28, Y: Percentile(vals, 99)}}, Labels: []string{"p99 " + num(Percentile(vals, 99))}})
		if err == nil {
			p.Add(l)
		}
	}
	p.NominalX(labels...)
	return p, nil
}

// bars draws one bar per value, system and raw alternating.
func bars(title string, labels []string, vals []float64) (*plot.Plot, error) {
	p := newPlot(title)
	for i, v := range vals {
		b, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(50))
		if err != nil {
			return nil, err
		}
		b.XMin = float64(i)
		b.Color = rawColor
		if i%2 == 0 {
			b.Color = systemColor
		}
		b.LineStyle.Width = 0
		p.Add(b)
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(i) - 0.15, Y: v}}, Labels: []string{num(v)}})
		if err == nil {
			p.Add(l)
		}
	}
	p.NominalX(labels...)
	p.Y.Min = 0
	// Room above the tallest bar for its label.
	p.Y.Max = max(slices.Max(vals)*1.12, 1)
	return p, nil
}

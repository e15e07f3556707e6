package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
)

// Curve is one named line of a plot.
type Curve struct {
	Name   string
	Points plotter.XYs
}

// percentileX maps a percentile to the "nines" axis: 1/(1-p), so 50% is 2, 99% is 100
// and 99.9% is 1000; 100% has no place on it and is left out.
func percentileX(p float64) (float64, bool) {
	if p >= 100 {
		return 0, false
	}
	return 1 / (1 - p/100), true
}

// DistributionCurve turns a latency summary into a curve for PlotDistribution.
func DistributionCurve(name string, s harness.Summary) Curve {
	c := Curve{Name: name}
	for _, pt := range s.Distribution {
		x, ok := percentileX(pt.Percentile)
		if !ok || pt.Ms <= 0 {
			continue
		}
		c.Points = append(c.Points, plotter.XY{X: x, Y: pt.Ms})
	}
	return c
}

var nineTicks = plot.ConstantTicks([]plot.Tick{
	{Value: 1, Label: "0%"}, {Value: 2, Label: "50%"}, {Value: 10, Label: "90%"},
	{Value: 100, Label: "99%"}, {Value: 1000, Label: "99.9%"}, {Value: 10000, Label: "99.99%"},
})

// msTicks labels a log millisecond axis at 1-2-5 steps.
type msTicks struct{}

func (msTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < min || v > max {
				continue
			}
			ts = append(ts, plot.Tick{Value: v, Label: trimFloat(v)})
		}
	}
	return ts
}

func trimFloat(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

func addCurves(p *plot.Plot, curves []Curve) error {
	var args []any
	for _, c := range curves {
		if len(c.Points) == 0 {
			continue
		}
		args = append(args, c.Name, c.Points)
	}
	if len(args) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	return plotutil.AddLinePoints(p, args...)
}

func limitLine(p *plot.Plot, y, x0, x1 float64, label string) {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return
	}
	l.Color = color.RGBA{R: 200, A: 255}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(label, l)
}

// PlotDistribution draws latency against percentile ("nines" axis) for each curve.
func PlotDistribution(path, title string, curves []Curve) error {
	p := newPlot(title, "percentile", "latency (ms, log)")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = nineTicks
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = msTicks{}
	if err := addCurves(p, curves); err != nil {
		return err
	}
	limitLine(p, 50, 1, 10000, "50 ms goal")
	p.X.Min, p.X.Max = 1, 10000
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}

// PlotRate draws p99 latency against offered rate for each curve.
func PlotRate(path, title string, curves []Curve) error {
	p := newPlot(title, "offered rate (messages/s, log)", "p99 latency (ms, log)")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = msTicks{}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = msTicks{}
	if err := addCurves(p, curves); err != nil {
		return err
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range curves {
		for _, pt := range c.Points {
			lo, hi = math.Min(lo, pt.X), math.Max(hi, pt.X)
		}
	}
	limitLine(p, 50, lo, hi, "50 ms goal")
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}

// RateCurve is p99 against offered rate for a series.
func RateCurve(s Series) Curve {
	c := Curve{Name: s.Name}
	for _, st := range s.Steps {
		if st.Latency.Count == 0 || st.Latency.P99Ms <= 0 {
			continue
		}
		c.Points = append(c.Points, plotter.XY{X: st.Rate, Y: st.Latency.P99Ms})
	}
	return c
}

// Plots draws the two standard plots of a result into dir as <stamp>-latency.png and
// <stamp>-rate.png (and latest-*.png), returning the paths written.
func (r *Result) Plots(dir, stamp string) ([]string, error) {
	var dist, rates []Curve
	for _, sc := range r.Scenarios {
		for _, se := range sc.Series {
			if len(se.Steps) > 0 && !strings.Contains(se.Name, "one gateway") {
				rates = append(rates, RateCurve(se))
			}
			if sc.Name != "e2e" && sc.Name != "hop" || strings.Contains(se.Name, "one gateway") {
				continue
			}
			for _, st := range se.Steps {
				dist = append(dist, DistributionCurve(fmt.Sprintf("%s @ %.0f/s", se.Name, st.Rate), st.Latency))
			}
		}
	}
	var out []string
	for _, p := range []struct {
		suffix string
		draw   func(string) error
	}{
		{"latency", func(path string) error {
			return PlotDistribution(path, "Latency distribution: e2e (gateway A → B) vs raw Kafka hop, open loop", dist)
		}},
		{"rate", func(path string) error {
			return PlotRate(path, "p99 latency vs offered rate (open loop, from intended send time)", rates)
		}},
	} {
		if p.suffix == "latency" && len(dist) == 0 || p.suffix == "rate" && len(rates) == 0 {
			continue
		}
		for _, name := range []string{stamp + "-" + p.suffix + ".png", "latest-" + p.suffix + ".png"} {
			path := filepath.Join(dir, name)
			if err := p.draw(path); err != nil {
				return out, fmt.Errorf("plot %s: %w", name, err)
			}
			out = append(out, path)
		}
	}
	return out, nil
}

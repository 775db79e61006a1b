package report

import (
	"fmt"
	"html"
	"math"
	"strings"

	"github.com/nudge-engine/nudge/bench/loadgen"
)

// Plot geometry.
const (
	plotW, plotH             = 900, 420
	padL, padR, padT, padB   = 70, 330, 40, 50
	innerW, innerH           = plotW - padL - padR, plotH - padT - padB
	maxNines                 = 5.0 // the x axis ends at "max", placed at 99.999
	legendLine, legendStartY = 18, padT + 10
)

var (
	ceilingColors = []string{"#7f7f7f", "#b0b0b0", "#5a5a5a", "#cccccc"}
	nudgeColors   = []string{"#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2"}
	openColors    = []string{"#ff7f0e", "#d62728", "#bcbd22"}
)

// nines maps a percentile to the x axis: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3;
// 100 (the max) sits at maxNines.
func nines(p float64) float64 {
	if p >= 100 {
		return maxNines
	}
	return math.Min(-math.Log10(1-p/100), maxNines)
}

// Plot draws the latency-by-percentile curves of runs as an SVG: x is the
// percentile on a "nines" scale, y the latency on a log scale. Ceiling
// runs are grey, closed-loop nudge runs blue-green, open-loop runs orange.
func Plot(title string, runs []*loadgen.Result) []byte {
	var b strings.Builder
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range runs {
		for _, pt := range r.Curve {
			if pt.Micros > 0 {
				lo, hi = math.Min(lo, pt.Micros), math.Max(hi, pt.Micros)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 1000
	}
	yMin, yMax := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yMax <= yMin {
		yMax = yMin + 1
	}
	x := func(p float64) float64 { return padL + nines(p)/maxNines*innerW }
	y := func(us float64) float64 {
		v := math.Log10(math.Max(us, 1))
		return padT + innerH - (v-yMin)/(yMax-yMin)*innerH
	}

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	// Grid and axes.
	for e := yMin; e <= yMax; e++ {
		yy := y(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", padL, yy, padL+innerW, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, yy+4, loadgen.FormatMicros(math.Pow(10, e)))
	}
	for _, t := range []struct {
		p     float64
		label string
	}{{0, "0%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {100, "max"}} {
		xx := x(t.p)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>`+"\n", xx, padT, xx, padT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xx, padT+innerH+18, t.label)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", padL, padT, innerW, innerH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">percentile</text>`+"\n", padL+innerW/2, plotH-10)
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">latency (log)</text>`+"\n", padT+innerH/2)

	var nc, nn, no int
	for i, r := range runs {
		var color, dash string
		switch {
		case r.Role == RoleCeiling:
			color, dash = ceilingColors[nc%len(ceilingColors)], ` stroke-dasharray="5 3"`
			nc++
		case r.Config.Mode == loadgen.ModeOpen:
			color = openColors[no%len(openColors)]
			no++
		default:
			color = nudgeColors[nn%len(nudgeColors)]
			nn++
		}
		var pts []string
		for _, pt := range r.Curve {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(pt.Percentile), y(pt.Micros)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		ly := legendStartY + i*legendLine
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", plotW-padR+12, ly, plotW-padR+36, ly, color, dash)
		label := r.Name
		if r.Config.Mode == loadgen.ModeOpen {
			label += fmt.Sprintf(" @%.0f/s", r.Config.Rate)
		} else {
			label += fmt.Sprintf(" %.0f/s", r.Throughput)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", plotW-padR+42, ly+4, html.EscapeString(label))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

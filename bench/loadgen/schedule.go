package loadgen

import "time"

// Schedule is the fixed send plan of an open-loop run: request slot j of
// the whole run is due at Start + j/Rate. The slots are dealt round-robin
// to the connections (connection w sends slots w, w+Conns, w+2*Conns, ...),
// as wrk2 does, so each connection runs at Rate/Conns and the plan never
// depends on how fast the server answers. A request sent late is still
// timed from its slot: that is the correction for coordinated omission.
type Schedule struct {
	Start time.Time
	Rate  float64 // requests per second over all connections
	Conns int
}

// At returns when the k-th request of connection w is due.
func (s Schedule) At(w, k int) time.Time { return s.slot(k*s.Conns + w) }

// slot returns when slot j of the whole run is due.
func (s Schedule) slot(j int) time.Time {
	return s.Start.Add(time.Duration(float64(j) * 1e9 / s.Rate))
}

// Due returns how many requests of connection w, from its k-th on, are due
// before end: the requests still owed when the run stops at k.
func (s Schedule) Due(w, k int, end time.Time) int {
	n := 0
	for s.At(w, k+n).Before(end) {
		n++
	}
	return n
}

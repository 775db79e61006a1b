package loadgen

import (
	"context"
	"sync/atomic"
	"time"
)

// coarseSlack is how long before a due time the pacer stops sleeping on a
// Go timer, which can wake a millisecond late, and sleeps the rest
// precisely.
const coarseSlack = 2 * time.Millisecond

// pacer releases the slots of an open-loop schedule to their connections
// as they fall due.
//
// Each connection could sleep on a Go timer until its next slot (as it
// did before 2026-12-05), but on Linux an idle Go runtime waits for its
// timers in the network poller, whose timeout is whole milliseconds; a
// request the generator sends late counts that lateness in its latency,
// as it must, so the generator's own lateness was measured as the
// server's. On this project's 2-CPU machines an idle time.Sleep of 2.67
// ms (one connection's interval at 12,000 requests a second over 32
// connections) overslept by 527 µs at the median and 2.4 ms at the p99, a
// nanosleep system call by 92 and 138 µs. So one goroutine sleeps
// precisely (preciseSleep) and hands each slot to its connection, which
// never sleeps on a timer of its own. The price is that every wait ends
// about a nanosleep's overshoot late: at 28,000 requests a second, where
// a busy runtime checks its timers often, the ceiling's median from the
// due time was 370 to 790 µs where Go's timers gave 130 to 160 (README,
// "How the open loop keeps time").
type pacer struct {
	s        Schedule
	released []atomic.Int64  // per connection: how many of its slots are due
	wake     []chan struct{} // per connection, capacity 1: released grew
}

func newPacer(s Schedule) *pacer {
	p := &pacer{s: s, released: make([]atomic.Int64, s.Conns), wake: make([]chan struct{}, s.Conns)}
	for w := range p.wake {
		p.wake[w] = make(chan struct{}, 1)
	}
	return p
}

// run releases every slot due before end, each when it falls due, until
// ctx ends.
func (p *pacer) run(ctx context.Context, end time.Time) {
	for j := 0; ; j++ {
		due := p.s.slot(j)
		if !due.Before(end) || !preciseUntil(ctx, due) {
			return
		}
		w := j % p.s.Conns
		p.released[w].Add(1)
		select {
		case p.wake[w] <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// await waits until slot k of connection w is due; false if ctx ended
// first.
func (p *pacer) await(ctx context.Context, w, k int) bool {
	for p.released[w].Load() <= int64(k) {
		select {
		case <-p.wake[w]:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// preciseUntil waits until t; false if ctx ended first. It sleeps on a Go
// timer until shortly before t, then in a nanosleep.
func preciseUntil(ctx context.Context, t time.Time) bool {
	if time.Until(t) > coarseSlack && !sleepUntil(ctx, t.Add(-coarseSlack)) {
		return false
	}
	if time.Until(t) > 0 {
		// A goroutine woken by another runs next on the processor that
		// woke it, and a processor whose thread is in a system call runs
		// nothing until the runtime takes it back (20 µs or more). So
		// before its thread blocks, the pacer parks for an instant,
		// letting the connections it released run. (Yielding with
		// runtime.Gosched instead let the pacer fall 49 ms behind at p99
		// in one 10 s run at 20,000 requests a second.) Slots already due
		// are released without it.
		time.Sleep(time.Nanosecond)
		if d := time.Until(t); d > 0 {
			preciseSleep(d)
		}
	}
	return ctx.Err() == nil
}

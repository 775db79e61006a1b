package loadgen

import (
	"syscall"
	"time"
)

// preciseSleep sleeps for d in a nanosleep system call, which the kernel
// ends on a high-resolution timer. It blocks its thread; the Go runtime
// hands the thread's processor to other goroutines meanwhile.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

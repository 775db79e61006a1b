package rules

import (
	"errors"
	"time"
)

// MaxWindow is the longest window a rule may use.
const MaxWindow = 90 * 24 * time.Hour

// WindowAll is the window "all": every event or contact ever kept.
const WindowAll time.Duration = 1<<63 - 1

var errWindow = errors.New(`a window is a whole number with a unit s, m, h, d or w (like "30m", "24h", "7d"), at most 90d, or "all"`)

// ParseWindow parses a window such as "30m", "24h", "7d", "2w" or "all".
// It does not allocate.
func ParseWindow(s string) (time.Duration, error) {
	if s == "all" {
		return WindowAll, nil
	}
	if len(s) < 2 || len(s) > 12 {
		return 0, errWindow
	}
	var n int64
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errWindow
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 's':
		unit = time.Second
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	case 'w':
		unit = 7 * 24 * time.Hour
	default:
		return 0, errWindow
	}
	if n == 0 || n > int64(MaxWindow/unit) {
		return 0, errWindow
	}
	return time.Duration(n) * unit, nil
}

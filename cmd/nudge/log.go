package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// newLogger returns the process logger: JSON lines on w by default,
// human-friendly with format "console".
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("unknown log level %q (debug, info, warn, error)", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Logger{}, fmt.Errorf("unknown log format %q (json or console)", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// pebbleLogger routes pebble's own logs through zerolog.
type pebbleLogger struct{ log zerolog.Logger }

// Infof logs Pebble's chatter at debug level and the store's own notices
// (a layout conversion) at info.
func (p pebbleLogger) Infof(format string, args ...any) {
	if strings.HasPrefix(format, "pebblestore: ") {
		p.log.Info().Str("component", "store").Msgf(strings.TrimPrefix(format, "pebblestore: "), args...)
		return
	}
	p.log.Debug().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log.Error().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.log.Error().Str("component", "pebble").Msgf(format, args...)
	os.Exit(1)
}

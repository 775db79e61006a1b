package store

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen is the longest customer or action id, in bytes.
const MaxIDLen = 128

var (
	errIDEmpty     = errors.New("must not be empty")
	errIDLong      = errors.New("is longer than 128 bytes")
	errIDChars     = errors.New("must be printable UTF-8 without '/' or control characters")
	errTypeLength  = errors.New("must be 1 to 64 characters")
	errTypeCharset = errors.New("must match [a-z0-9_.-]{1,64}")
)

// ValidateID checks an id (customer, action, placement, channel): 1 to
// 128 bytes of printable UTF-8 without '/' (ids appear in paths) or
// control characters. It does not allocate.
func ValidateID(id string) error {
	if id == "" {
		return errIDEmpty
	}
	if len(id) > MaxIDLen {
		return errIDLong
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '/' {
				return errIDChars
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsPrint(r) {
			return errIDChars
		}
		i += size
	}
	return nil
}

// ValidateEventType checks an event type: [a-z0-9_.-]{1,64}.
func ValidateEventType(t string) error {
	if t == "" || len(t) > 64 {
		return errTypeLength
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return errTypeCharset
		}
	}
	return nil
}

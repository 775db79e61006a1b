package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const contentJSON = "application/json"

// checkJSON bounds the work of decoding b before encoding/json sees it:
// b must be valid UTF-8 (encoding/json would silently replace bad bytes),
// nest at most maxDepth deep and hold no string (key or value) longer than
// maxString bytes once unescaped. It is one linear pass that does not
// check the syntax; json.Unmarshal does that next.
func checkJSON(b []byte, maxDepth, maxString int) *apiError {
	if !utf8.Valid(b) {
		return badRequest(codeInvalidUTF8, "", "the body is not valid UTF-8")
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
			if depth > maxDepth {
				return badRequest(codeTooDeep, "", "JSON nesting is deeper than %d levels", maxDepth)
			}
		case '}', ']':
			depth--
		case '"':
			n := 0 // unescaped length in bytes
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] != '\\' {
					n++
					continue
				}
				if i+5 < len(b) && b[i+1] == 'u' {
					n += escapedLen(b[i+2 : i+6])
					i += 5
				} else {
					n++
					i++
				}
			}
			if n > maxString {
				return badRequest(codeStringTooLong, "", "a JSON string is longer than %d bytes", maxString)
			}
		}
	}
	return nil
}

// escapedLen is the UTF-8 length of the \uXXXX escape with hex digits h;
// each half of a surrogate pair counts 2 (the pair encodes in 4 bytes).
func escapedLen(h []byte) int {
	v := 0
	for _, c := range h {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | int(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | int(c-'A'+10)
		default:
			return 1 // invalid: json.Unmarshal rejects it
		}
	}
	switch {
	case v < 0x80:
		return 1
	case v < 0x800, v >= 0xd800 && v < 0xe000:
		return 2
	}
	return 3
}

// decodeJSON unmarshals b into v and maps failures to 400s; field paths
// are prefixed with prefix (like "events[3]").
func decodeJSON(b []byte, v any, prefix string) *apiError {
	if len(bytes.TrimSpace(b)) == 0 {
		if prefix == "" {
			return badRequest(codeInvalidJSON, "", "the body is empty; a JSON object is required")
		}
		return invalid(prefix, "%s must be a JSON object", prefix)
	}
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return badRequest(codeInvalidJSON, prefix, "invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := joinField(prefix, te.Field)
		if field == "" {
			return badRequest(codeInvalidJSON, "", "the body must be a JSON object")
		}
		if strings.HasPrefix(te.Value, "number") && te.Type.Kind() == reflect.Float64 {
			return invalid(field, "%s is out of range", field)
		}
		return invalid(field, "%s must be %s, not %s", field, describeType(te.Type), te.Value)
	}
	return badRequest(codeInvalidJSON, prefix, "invalid JSON: %s", err.Error())
}

func joinField(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64, reflect.Uint64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return "an object"
}

// objectField checks that a decoded value is a JSON object; null and
// absent are nil.
func objectField(v any, field string) (map[string]any, *apiError) {
	switch m := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return m, nil
	}
	return nil, invalid(field, "%s must be a JSON object", field)
}

// The appenders below write JSON without reflection for the hot path.
// Their output matches encoding/json: sorted map keys, HTML-safe strings,
// the same number formatting.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// appendFloat formats like encoding/json; NaN and infinities, which JSON
// cannot hold, become null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func appendTime(b []byte, ns int64) []byte {
	b = append(b, '"')
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendValue appends a JSON value decoded by encoding/json or produced by
// the rules (content); other types go through encoding/json.
func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case float64:
		return appendFloat(b, x)
	case int:
		return appendInt(b, int64(x))
	case int64:
		return appendInt(b, x)
	case map[string]any:
		return appendObject(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	case []string:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e)
		}
		return append(b, ']')
	}
	out, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, out...)
}

func appendObject(b []byte, m map[string]any) []byte {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
	}
	return append(b, '}')
}

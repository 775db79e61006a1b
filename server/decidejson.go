package server

import (
	"strconv"
)

// decodeDecideFast decodes the usual shape of a decide body in one pass,
// without reflection: an object of customer_id, placement, placements,
// channel and context, whose strings hold no escape and whose context is
// an object of strings, numbers, booleans and nulls. It reports false for
// anything else (an escape, a null, a nested context value, a key spelt
// otherwise or repeated, a syntax error), having maybe written part of b,
// and the caller decodes the body with encoding/json instead, which then
// decides and names any problem. What it accepts it decodes as
// json.Unmarshal would (FuzzDecodeDecideFast compares the two). data must
// be valid UTF-8 (checkJSON), as encoding/json would replace bad bytes.
func decodeDecideFast(data []byte, b *decideBody) bool {
	if b.words == nil {
		b.words = make(map[string]any)
	}
	s := scanner{b: data, words: b.words}
	ok := s.object(func(key []byte) (bit uint8, ok bool) {
		switch string(key) {
		case "customer_id":
			return 1, s.strValue(&b.CustomerID)
		case "placement":
			return 2, s.wordValue(&b.Placement)
		case "channel":
			return 4, s.wordValue(&b.Channel)
		case "placements":
			b.Placements, ok = s.strArray(b.Placements[:0])
			return 8, ok
		case "context":
			if b.ctx == nil {
				b.ctx = make(map[string]any)
			}
			b.Context, ok = s.flatObject(b.ctx)
			return 16, ok
		}
		return 0, false // unknown, or in another case, which encoding/json matches
	})
	s.ws()
	return ok && s.i == len(s.b)
}

// scanner reads JSON tokens from b at i. words, when not nil, holds the
// short strings it decoded before (see word).
type scanner struct {
	b     []byte
	i     int
	words map[string]any
}

// Requests repeat a few names (placements, the channel, the context's
// keys and many of its values) that decoding would allocate anew each
// time, twice for a value boxed in the context's any. A pooled decide
// body keeps, in words, up to maxWords strings of at most maxWordBytes
// that it decoded, each boxed in an any, and is emptied when full: a
// client sending ever new strings costs what it did without it.
const (
	maxWords     = 256
	maxWordBytes = 64
)

// word returns v as a string in an any, the one s.words holds if it holds
// v, adding it there if it is short.
func (s *scanner) word(v []byte) any {
	if w, ok := s.words[string(v)]; ok {
		return w
	}
	str := string(v)
	var w any = str
	if s.words != nil && len(v) <= maxWordBytes {
		if len(s.words) >= maxWords {
			clear(s.words)
		}
		s.words[str] = w
	}
	return w
}

// wordValue reads a string through word.
func (s *scanner) wordValue(dst *string) bool {
	v, ok := s.str()
	if ok {
		*dst = s.word(v).(string)
	}
	return ok
}

// object reads an object whose values field reads: field is called at
// each key, with the scanner after its colon, and answers the key's bit
// (so that a key is refused the second time) and whether it read the
// value. An unknown key is field's to refuse.
func (s *scanner) object(field func(key []byte) (bit uint8, ok bool)) bool {
	if !s.next('{') {
		return false
	}
	var seen uint8
	for !s.next('}') {
		if seen != 0 && !s.next(',') {
			return false
		}
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c after white space, if it is there.
func (s *scanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek is the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string without escapes and returns what is between its
// quotes.
func (s *scanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			out := s.b[s.i:j]
			s.i = j + 1
			return out, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) strValue(dst *string) bool {
	v, ok := s.str()
	if ok {
		*dst = string(v)
	}
	return ok
}

// strArray reads an array of strings, appending to dst.
func (s *scanner) strArray(dst []string) ([]string, bool) {
	if !s.next('[') {
		return dst, false
	}
	if s.next(']') {
		return dst, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return dst, false
		}
		dst = append(dst, s.word(v).(string))
		if s.next(']') {
			return dst, true
		}
		if !s.next(',') {
			return dst, false
		}
	}
}

// flatObject reads null or an object whose values are strings, numbers,
// booleans and nulls, into m (empty).
func (s *scanner) flatObject(m map[string]any) (any, bool) {
	if s.literal("null") {
		return nil, true
	}
	if !s.next('{') {
		return nil, false
	}
	if s.next('}') {
		return m, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		var v any
		switch c := s.peek(); {
		case c == '"':
			var str []byte
			if str, ok = s.str(); ok {
				v = s.word(str)
			}
		case c == 't':
			v, ok = true, s.literal("true")
		case c == 'f':
			v, ok = false, s.literal("false")
		case c == 'n':
			v, ok = nil, s.literal("null")
		case c == '-' || '0' <= c && c <= '9':
			var f float64
			f, ok = s.number()
			v = f
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
		m[s.word(k).(string)] = v
		if s.next('}') {
			return m, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// literal consumes word (true, false, null) after white space.
func (s *scanner) literal(word string) bool {
	s.ws()
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// number reads a JSON number as encoding/json decodes one into a float64
// (or an any). One out of float64's range reports false.
func (s *scanner) number() (float64, bool) {
	b, i := s.b, s.i
	digits := func() int {
		from := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i - from
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(b[s.i:i]), 64)
	if err != nil {
		return 0, false
	}
	s.i = i
	return f, true
}

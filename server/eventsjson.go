package server

// decodeEventsFast decodes the usual shape of an events body in one pass,
// without reflection: one event object, or an object whose only key is
// "events", an array of event objects. An event object has the keys
// customer_id, type and time (strings without escapes), value (a number)
// and properties (null, or an object of strings, numbers, booleans and
// nulls), each at most once. It reports false for anything else, and the
// caller decodes the body with encoding/json instead, which then decides
// and names any problem. What it accepts it decodes as json.Unmarshal into
// an eventsFast would (FuzzDecodeEventsFast compares the two). data must
// be valid UTF-8 (checkJSON), as encoding/json would replace bad bytes.
//
// A batch's strings and numbers are allocated in slabs, and its events
// share the pointer to each event type: a batch of 100 events costs a few
// dozen allocations, not the 500 of encoding/json.
func decodeEventsFast(data []byte) (eventIn, *[]eventIn, bool) {
	d := eventDecoder{scanner: scanner{b: data}}
	var top eventIn
	var batch *[]eventIn
	ok := d.object(func(key []byte) (bit uint8, ok bool) {
		if string(key) == "events" {
			batch, ok = d.events()
			return 1 << 5, ok
		}
		return d.field(&top, key)
	})
	d.ws()
	if !ok || d.i != len(d.b) {
		return top, nil, false
	}
	return top, batch, true
}

// eventDecoder is a scanner with the slabs decodeEventsFast allocates in.
type eventDecoder struct {
	scanner
	strs   []string
	floats []float64
	types  []*string // the event types read so far, to share
}

// events reads an array of event objects.
func (d *eventDecoder) events() (*[]eventIn, bool) {
	if !d.next('[') {
		return nil, false
	}
	batch := make([]eventIn, 0, 16)
	if d.next(']') {
		return &batch, true
	}
	for {
		batch = append(batch, eventIn{})
		if !d.event(&batch[len(batch)-1]) {
			return nil, false
		}
		if d.next(']') {
			return &batch, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// event reads an event object into in (zero).
func (d *eventDecoder) event(in *eventIn) bool {
	return d.object(func(key []byte) (uint8, bool) { return d.field(in, key) })
}

// field reads the value of an event's field key into in; bit names the
// field, for the caller to refuse it twice.
func (d *eventDecoder) field(in *eventIn, key []byte) (bit uint8, ok bool) {
	switch string(key) {
	case "customer_id":
		in.CustomerID, ok = d.string()
		return 1, ok
	case "type":
		in.Type, ok = d.eventType()
		return 1 << 1, ok
	case "time":
		in.Time, ok = d.string()
		return 1 << 2, ok
	case "value":
		in.Value, ok = d.float()
		return 1 << 3, ok
	case "properties":
		var m map[string]any
		if d.peek() == '{' {
			m = make(map[string]any)
		}
		in.Properties, ok = d.flatObject(m)
		return 1 << 4, ok
	}
	return 0, false // unknown, or in another case, which encoding/json matches
}

// string reads a string into the slab.
func (d *eventDecoder) string() (*string, bool) {
	v, ok := d.str()
	if !ok {
		return nil, false
	}
	if len(d.strs) == cap(d.strs) {
		d.strs = make([]string, 0, 64)
	}
	d.strs = append(d.strs, string(v))
	return &d.strs[len(d.strs)-1], true
}

// eventType reads a string, sharing the pointer of an equal type read
// before: a batch has few types.
func (d *eventDecoder) eventType() (*string, bool) {
	v, ok := d.str()
	if !ok {
		return nil, false
	}
	for _, t := range d.types {
		if *t == string(v) {
			return t, true
		}
	}
	t := new(string(v))
	if len(d.types) < 8 {
		d.types = append(d.types, t)
	}
	return t, true
}

// float reads a number into the slab.
func (d *eventDecoder) float() (*float64, bool) {
	d.ws() // number starts at the number itself
	f, ok := d.number()
	if !ok {
		return nil, false
	}
	if len(d.floats) == cap(d.floats) {
		d.floats = make([]float64, 0, 32)
	}
	d.floats = append(d.floats, f)
	return &d.floats[len(d.floats)-1], true
}

// Package ingest moves readings from MQTT into sanitel: the subscriber
// decodes and validates each message and acknowledges it only once it is
// durable in the spool; the writer drains the spool to InfluxDB; rejected
// messages are kept as dead letters.
package ingest

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sanitel/sanitel/internal/atomicfile"
)

// MaxDeadLetterPayload is how much of a rejected payload is kept.
const MaxDeadLetterPayload = 4 << 10

// DeadLetter is a rejected message: where it came from, why, and (the start
// of) what it said.
type DeadLetter struct {
	At      time.Time `json:"at"`
	Topic   string    `json:"topic"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail,omitempty"`
	Payload string    `json:"payload"`
}

// DeadLetters is a bounded in-memory store of the most recent rejections.
// The oldest entry is dropped when it is full. SaveFile and LoadFile keep
// it across restarts. Safe for concurrent use.
type DeadLetters struct {
	mu    sync.Mutex
	ring  []DeadLetter
	next  int
	full  bool
	total uint64
	saved uint64 // total at the last SaveFile
}

// NewDeadLetters returns a store keeping the last n dead letters (default 1000).
func NewDeadLetters(n int) *DeadLetters {
	if n <= 0 {
		n = 1000
	}
	return &DeadLetters{ring: make([]DeadLetter, n)}
}

// Add records a rejected message. The payload is copied and cut at 4 KiB
// (on a UTF-8 boundary); invalid UTF-8 is replaced so the JSON stays valid.
func (d *DeadLetters) Add(at time.Time, topic, reason, detail string, payload []byte) {
	if len(payload) > MaxDeadLetterPayload {
		n := MaxDeadLetterPayload
		for n > 0 && !utf8.RuneStart(payload[n]) {
			n--
		}
		payload = payload[:n]
	}
	p := string(payload)
	if !utf8.ValidString(p) {
		p = toValidUTF8(p)
	}
	if len(topic) > 512 {
		topic = topic[:512]
	}
	d.mu.Lock()
	d.put(DeadLetter{At: at.UTC(), Topic: toValidUTF8(topic), Reason: reason, Detail: detail, Payload: p})
	d.total++
	d.mu.Unlock()
}

// put stores dl as the newest entry. d.mu is held.
func (d *DeadLetters) put(dl DeadLetter) {
	d.ring[d.next] = dl
	d.next++
	if d.next == len(d.ring) {
		d.next, d.full = 0, true
	}
}

func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[:n]...)
		}
		s = s[n:]
	}
	return string(b)
}

// List returns the stored dead letters, newest first.
func (d *DeadLetters) List() []DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.list()
}

// list is List with d.mu held.
func (d *DeadLetters) list() []DeadLetter {
	n := d.next
	if d.full {
		n = len(d.ring)
	}
	out := make([]DeadLetter, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, d.ring[(d.next-i+len(d.ring))%len(d.ring)])
	}
	return out
}

// Total returns how many dead letters were ever added, including dropped ones.
func (d *DeadLetters) Total() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

const deadLettersVersion = 1

type savedDeadLetters struct {
	Version int          `json:"version"`
	Total   uint64       `json:"total"`
	Items   []DeadLetter `json:"items"` // newest first
}

// SaveFile writes the dead letters to path (atomically), unless nothing was
// added since the last save.
func (d *DeadLetters) SaveFile(path string) error {
	d.mu.Lock()
	if d.total == d.saved {
		d.mu.Unlock()
		return nil
	}
	out := savedDeadLetters{Version: deadLettersVersion, Total: d.total, Items: d.list()}
	d.mu.Unlock()
	if err := atomicfile.Write(path, func(w io.Writer) error { return json.NewEncoder(w).Encode(out) }); err != nil {
		return fmt.Errorf("save dead letters %s: %w", path, err)
	}
	d.mu.Lock()
	d.saved = max(d.saved, out.Total)
	d.mu.Unlock()
	return nil
}

// LoadFile restores what SaveFile wrote (see Load). A missing file is an
// error that matches os.ErrNotExist (a first start).
func (d *DeadLetters) LoadFile(path string) error {
	return atomicfile.Read(path, d.Load)
}

// Load restores what SaveFile wrote, before anything is added: the newest
// entries up to the store's size.
func (d *DeadLetters) Load(r io.Reader) error {
	var in savedDeadLetters
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if in.Version != deadLettersVersion {
		return fmt.Errorf("dead letters: version %d, want %d", in.Version, deadLettersVersion)
	}
	items := in.Items[:min(len(in.Items), len(d.ring))]
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(items) - 1; i >= 0; i-- {
		d.put(items[i])
	}
	d.total = max(in.Total, uint64(len(items)))
	d.saved = d.total
	return nil
}

package tickets

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type request struct {
	header http.Header
	body   []byte
}

// hookServer answers with the given status codes in turn (the last one
// repeating) and hands every request to the test.
func hookServer(t *testing.T, codes ...int) (*httptest.Server, <-chan request) {
	t.Helper()
	ch := make(chan request, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		code := codes[min(n, len(codes)-1)]
		n++
		mu.Unlock()
		ch <- request{header: r.Header.Clone(), body: body}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// instant is a back-off that does not wait, and remembers what it was asked.
type instant struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (i *instant) After(d time.Duration) <-chan time.Time {
	i.mu.Lock()
	i.delays = append(i.delays, d)
	i.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (i *instant) got() []time.Duration {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.delays)
}

func sampleEvent(event string) Event {
	fired := t0
	return Event{Event: event, At: t0, Ticket: Ticket{
		ID: 7, Number: "DB-20261128-0007", Source: SourceAlert, Rule: "bin_full", Severity: SeverityWarning,
		Status: StatusOpen, DeviceID: "bin-0001", Street: "城关街道", OrgUnit: "区环卫所", Title: "垃圾桶满溢",
		OpenedAt: t0, FiredAt: &fired, Deadline: t0.Add(2 * time.Hour), Occurrences: 1,
	}}
}

func TestWebhookPayloadSignatureAndRetry(t *testing.T) {
	srv, reqs := hookServer(t, http.StatusInternalServerError, http.StatusOK)
	reg := prometheus.NewRegistry()
	back := &instant{}
	n, err := NewWebhookNotifier(WebhookOptions{
		Webhooks:   []Webhook{{URL: srv.URL + "/hook", Secret: "s3cret"}},
		After:      back.After,
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(sampleEvent(EventOpen))
	first, second := <-reqs, <-reqs
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(first.body) != string(second.body) {
		t.Error("retry sent a different body")
	}
	var got struct {
		Event  string          `json:"event"`
		At     string          `json:"at"`
		Ticket json.RawMessage `json:"ticket"`
	}
	if err := json.Unmarshal(second.body, &got); err != nil {
		t.Fatal(err)
	}
	var tk map[string]any
	json.Unmarshal(got.Ticket, &tk)
	if got.Event != "open" || got.At != "2026-11-28T02:00:00Z" || tk["number"] != "DB-20261128-0007" ||
		tk["street"] != "城关街道" || tk["cleared_at"] != nil {
		t.Errorf("payload %s", second.body)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(second.body)
	if sig := second.header.Get("X-Sanitel-Signature"); sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q", sig)
	}
	if ct := second.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if d := back.got(); !slices.Equal(d, []time.Duration{time.Second}) {
		t.Errorf("back-off %v, want [1s]", d)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("open")); v != 1 {
		t.Errorf("sent %v", v)
	}
	if v := testutil.ToFloat64(n.failures.WithLabelValues("open")); v != 1 {
		t.Errorf("failures %v", v)
	}
	if c, err := testutil.GatherAndCount(reg, "sanitel_notify_sent_total", "sanitel_notify_failures_total", "sanitel_notify_dropped_total"); err != nil || c != 7 {
		t.Errorf("registered series %d, err %v", c, err)
	}
}

func TestWebhookGivesUpAndFilters(t *testing.T) {
	down, downReqs := hookServer(t, http.StatusServiceUnavailable)
	bad, badReqs := hookServer(t, http.StatusBadRequest)
	closeOnly, closeReqs := hookServer(t, http.StatusNoContent)
	back := &instant{}
	n, err := NewWebhookNotifier(WebhookOptions{
		Webhooks: []Webhook{
			{URL: down.URL, Events: []string{"escalate"}},
			{URL: bad.URL, Events: []string{"escalate"}},
			{URL: closeOnly.URL, Events: []string{"close"}},
		},
		MaxTries:   4,
		MinBackoff: time.Second,
		MaxBackoff: 3 * time.Second,
		After:      back.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(sampleEvent(EventEscalate))
	n.Notify(sampleEvent(EventClose))
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(downReqs) != 4 || len(badReqs) != 1 || len(closeReqs) != 1 {
		t.Errorf("requests: down %d (want 4 tries), bad %d (want 1, no retry on 400), close-only %d (want 1)",
			len(downReqs), len(badReqs), len(closeReqs))
	}
	if r := <-closeReqs; r.header.Get("X-Sanitel-Signature") != "" || r.header.Get("X-Sanitel-Event") != "close" {
		t.Errorf("headers %v", r.header)
	}
	if d := back.got(); !slices.Equal(d, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}) {
		t.Errorf("back-off %v, want doubling capped at 3s", d)
	}
	if v := testutil.ToFloat64(n.failures.WithLabelValues("escalate")); v != 5 {
		t.Errorf("escalate failures %v, want 5", v)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("close")); v != 1 {
		t.Errorf("close sent %v", v)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	n.Notify(sampleEvent(EventClose))
	if v := testutil.ToFloat64(n.dropped); v != 1 {
		t.Errorf("event after Close: dropped %v", v)
	}
}

func TestWebhookQueueFullDropsWithoutBlocking(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer srv.Close()
	n, err := NewWebhookNotifier(WebhookOptions{Webhooks: []Webhook{{URL: srv.URL}}, QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(sampleEvent(EventOpen)) // taken by the worker, which then hangs in the request
	<-entered
	n.Notify(sampleEvent(EventOpen)) // waits in the queue
	n.Notify(sampleEvent(EventOpen)) // no room: dropped
	if v := testutil.ToFloat64(n.dropped); v != 1 {
		t.Errorf("dropped %v, want 1", v)
	}
	close(release)
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("open")); v != 2 {
		t.Errorf("sent %v, want 2", v)
	}
}

func TestWebhookCloseGivesUpAtDeadline(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	n, err := NewWebhookNotifier(WebhookOptions{Webhooks: []Webhook{{URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(sampleEvent(EventOpen))
	n.Notify(sampleEvent(EventOpen))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Close(ctx); err == nil {
		t.Error("Close past its deadline returned nil")
	}
	// Close returned, so the worker has stopped: the queued event was abandoned.
	if v := testutil.ToFloat64(n.dropped); v != 1 {
		t.Errorf("dropped %v, want 1", v)
	}
}

func TestWebhookOptionsChecked(t *testing.T) {
	for _, w := range []Webhook{{URL: "ftp://x"}, {URL: "not a url"}, {URL: "http://x", Events: []string{"opened"}}} {
		if _, err := NewWebhookNotifier(WebhookOptions{Webhooks: []Webhook{w}}); err == nil {
			t.Errorf("%+v accepted", w)
		}
	}
}

func TestServiceNotifiesWebhook(t *testing.T) {
	srv, reqs := hookServer(t, http.StatusOK)
	n, err := NewWebhookNotifier(WebhookOptions{Webhooks: []Webhook{{URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.Notifier = n })
	tk := f.raise(t, binFull("bin-1", t0))
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := json.Unmarshal((<-reqs).body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Event != "open" || ev.Ticket.ID != tk.ID || ev.Ticket.Number != tk.Number || len(ev.Ticket.History) != 1 {
		t.Errorf("event %+v", ev)
	}
}

package tickets

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook is an HTTP endpoint told about ticket events.
type Webhook struct {
	URL string
	// Events it wants ("open", "escalate", "close"); empty means all.
	Events []string
	// Secret, when set, signs each body: X-Sanitel-Signature: sha256=<hex HMAC>.
	Secret string
	// Timeout of one delivery attempt; default 10s.
	Timeout time.Duration
}

// WebhookOptions configure a WebhookNotifier.
type WebhookOptions struct {
	Webhooks []Webhook
	// QueueSize is how many events wait per webhook; when full, new events
	// are dropped (and counted). Default 256.
	QueueSize int
	// MaxTries is the number of attempts per event; default 8.
	MaxTries int
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles each time; default 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Client sends the requests; default a plain http.Client.
	Client *http.Client
	// After waits out a back-off; default time.After.
	After      func(time.Duration) <-chan time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// WebhookNotifier posts ticket events to webhooks from a bounded queue per
// webhook, each worked by one goroutine, retrying with exponential
// back-off. Notify never blocks.
type WebhookNotifier struct {
	hooks      []*hook
	maxTries   int
	minBackoff time.Duration
	maxBackoff time.Duration
	client     *http.Client
	after      func(time.Duration) <-chan time.Time
	log        *slog.Logger

	sent     *prometheus.CounterVec
	failures *prometheus.CounterVec
	dropped  prometheus.Counter

	mu     sync.RWMutex // guards closed against sends on closed queues
	closed bool
	wg     sync.WaitGroup
	stop   context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
}

type hook struct {
	Webhook
	queue chan delivery
}

type delivery struct {
	event string
	body  []byte
}

var _ Notifier = (*WebhookNotifier)(nil)

var notifyEvents = []string{EventOpen, EventEscalate, EventClose}

// NewWebhookNotifier checks the webhooks and starts one worker per webhook.
// Close stops them.
func NewWebhookNotifier(opts WebhookOptions) (*WebhookNotifier, error) {
	n := &WebhookNotifier{
		maxTries:   opts.MaxTries,
		minBackoff: opts.MinBackoff,
		maxBackoff: opts.MaxBackoff,
		client:     opts.Client,
		after:      opts.After,
		log:        opts.Logger,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_notify_sent_total",
			Help: "Ticket events delivered to webhooks, by event.",
		}, []string{"event"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_notify_failures_total",
			Help: "Failed webhook delivery attempts, by event.",
		}, []string{"event"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_notify_dropped_total",
			Help: "Ticket events dropped because a webhook queue was full or closed.",
		}),
	}
	if n.maxTries <= 0 {
		n.maxTries = 8
	}
	if n.minBackoff <= 0 {
		n.minBackoff = time.Second
	}
	if n.maxBackoff <= 0 {
		n.maxBackoff = 5 * time.Minute
	}
	n.maxBackoff = max(n.maxBackoff, n.minBackoff)
	if n.client == nil {
		n.client = &http.Client{}
	}
	if n.after == nil {
		n.after = time.After
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	size := opts.QueueSize
	if size <= 0 {
		size = 256
	}
	for i, w := range opts.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhooks[%d].url: must be an http or https URL", i)
		}
		for _, e := range w.Events {
			if !slices.Contains(notifyEvents, e) {
				return nil, fmt.Errorf("webhooks[%d].events: unknown event %q (open, escalate, close)", i, e)
			}
		}
		if w.Timeout <= 0 {
			w.Timeout = 10 * time.Second
		}
		n.hooks = append(n.hooks, &hook{Webhook: w, queue: make(chan delivery, size)})
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{n.sent, n.failures, n.dropped} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("notifier metrics: %w", err)
			}
		}
	}
	for _, e := range notifyEvents {
		n.sent.WithLabelValues(e)
		n.failures.WithLabelValues(e)
	}
	n.stop, n.cancel = context.WithCancel(context.Background())
	for _, h := range n.hooks {
		n.wg.Add(1)
		go n.run(h)
	}
	return n, nil
}

// Notify queues ev for every webhook that wants it; a full queue drops it.
func (n *WebhookNotifier) Notify(ev Event) {
	body, err := json.Marshal(ev)
	if err != nil {
		n.log.Error("encode ticket event", "event", ev.Event, "err", err)
		return
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, h := range n.hooks {
		if len(h.Events) > 0 && !slices.Contains(h.Events, ev.Event) {
			continue
		}
		if n.closed {
			n.dropped.Inc()
			continue
		}
		select {
		case h.queue <- delivery{event: ev.Event, body: body}:
		default:
			n.dropped.Inc()
			n.log.Warn("webhook queue full, event dropped", "url", redactURL(h.URL), "event", ev.Event)
		}
	}
}

// Close stops taking events and waits until the queued ones are delivered
// (or given up) or ctx is done, when it abandons the rest. Safe to call twice.
func (n *WebhookNotifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		for _, h := range n.hooks {
			close(h.queue)
		}
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("close notifier: %w", ctx.Err())
	}
}

func (n *WebhookNotifier) run(h *hook) {
	defer n.wg.Done()
	for d := range h.queue {
		if n.stop.Err() != nil {
			n.dropped.Inc()
			continue
		}
		n.deliver(h, d)
	}
}

// permanentError is a delivery failure that retrying will not fix.
type permanentError struct {
	status int
	err    error
}

func (e *permanentError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("webhook answered %d", e.status)
}

func (n *WebhookNotifier) deliver(h *hook, d delivery) {
	wait := n.minBackoff
	for try := 1; ; try++ {
		err := n.post(h, d)
		if err == nil {
			n.sent.WithLabelValues(d.event).Inc()
			return
		}
		n.failures.WithLabelValues(d.event).Inc()
		var perm *permanentError
		if errors.As(err, &perm) || try >= n.maxTries || n.stop.Err() != nil {
			n.log.Error("webhook delivery failed", "url", redactURL(h.URL), "event", d.event, "tries", try, "err", err)
			return
		}
		n.log.Warn("webhook delivery failed, will retry", "url", redactURL(h.URL), "event", d.event,
			"try", try, "in", wait, "err", err)
		select {
		case <-n.after(wait):
		case <-n.stop.Done():
			return
		}
		wait = min(wait*2, n.maxBackoff)
	}
}

func (n *WebhookNotifier) post(h *hook, d delivery) error {
	ctx, cancel := context.WithTimeout(n.stop, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(d.body))
	if err != nil {
		return &permanentError{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sanitel")
	req.Header.Set("X-Sanitel-Event", d.event)
	if h.Secret != "" {
		req.Header.Set("X-Sanitel-Signature", Sign(h.Secret, d.body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// The client's error quotes the URL, whose query may hold a token
		// (DingTalk's access_token): keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode >= 500:
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return &permanentError{status: resp.StatusCode}
}

// Sign is the X-Sanitel-Signature value of body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// redactURL drops credentials and the query (which often holds a token).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

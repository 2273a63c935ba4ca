// Package api is sanitel's HTTP JSON API: supervision tickets, reports,
// devices, dead letters, health and the metrics endpoint, behind bearer
// tokens with roles.
package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sanitel/sanitel/tickets"
)

// Token is a bearer token and who holds it.
type Token struct {
	Name    string
	Role    string // viewer, unit, supervisor or admin
	OrgUnit string // required for role unit
	Token   string
}

// Check is one readiness condition (broker connected, spool writable,
// store reachable, …); Fn returns nil when it holds.
type Check struct {
	Name string
	Fn   func(context.Context) error
	// Degrades marks a check whose failure leaves sanitel ready but
	// degraded: /readyz still answers 200, with status "degraded" and the
	// error under checks. InfluxDB is such a check: while it is down the
	// spool keeps accepting and acknowledging readings.
	Degrades bool
}

// DeviceStatus is a registry device with what was last heard from it.
type DeviceStatus struct {
	ID             string             `json:"id"`
	Kind           string             `json:"kind"`
	Site           string             `json:"site"`
	Street         string             `json:"street"`
	Village        string             `json:"village"`
	OrgUnit        string             `json:"org_unit"`
	Lat            float64            `json:"lat"`
	Lon            float64            `json:"lon"`
	DevEUI         string             `json:"dev_eui,omitempty"`
	ToiletClass    int                `json:"toilet_class,omitempty"`
	Supply         string             `json:"supply,omitempty"`
	ReportInterval string             `json:"report_interval,omitempty"`
	LastReading    map[string]float64 `json:"last_reading"`
	LastSeen       *time.Time         `json:"last_seen"`
	Online         bool               `json:"online"`
	// Status is online/offline as the device last reported it.
	Status      string `json:"status,omitempty"`
	OpenTickets int    `json:"open_tickets"`
}

// DeviceSource is the registry with live state.
type DeviceSource interface {
	Devices() []DeviceStatus
	Device(id string) (DeviceStatus, bool)
}

// DeadLetter is a rejected MQTT message.
type DeadLetter struct {
	At      time.Time `json:"at"`
	Topic   string    `json:"topic"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail,omitempty"`
	Payload string    `json:"payload"`
}

// DeadLetterSource lists dead letters, newest first.
type DeadLetterSource interface {
	DeadLetters() []DeadLetter
}

// Options configure a Server.
type Options struct {
	// Tickets is the ticket service; required.
	Tickets *tickets.Service
	// Tokens are the accepted bearer tokens. With none the API is open and
	// every request acts as an admin named "anonymous" (for the demo).
	Tokens      []Token
	Devices     DeviceSource
	DeadLetters DeadLetterSource
	// Ready are the /readyz checks.
	Ready []Check
	// Gatherer is served at /metrics; default an empty registry.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// MaxBodyBytes bounds request bodies; default 1 MiB.
	MaxBodyBytes int64
	// Location reads dates and months; default the ticket service's.
	Location *time.Location
	// Now is the clock for the default month; default time.Now.
	Now func() time.Time
	// ReadyTimeout bounds each readiness check; default 2s.
	ReadyTimeout time.Duration
}

// Server serves the API.
type Server struct {
	svc      *tickets.Service
	tokens   []token
	open     bool
	devices  DeviceSource
	dead     DeadLetterSource
	ready    []Check
	gatherer prometheus.Gatherer
	log      *slog.Logger
	maxBody  int64
	loc      *time.Location
	now      func() time.Time
	readyTO  time.Duration
	mux      *http.ServeMux
}

type token struct {
	actor tickets.Actor
	hash  [sha256.Size]byte
}

// New checks opts and builds the routes.
func New(opts Options) (*Server, error) {
	if opts.Tickets == nil {
		return nil, errors.New("api: no ticket service")
	}
	s := &Server{
		svc:      opts.Tickets,
		devices:  opts.Devices,
		dead:     opts.DeadLetters,
		ready:    opts.Ready,
		gatherer: opts.Gatherer,
		log:      opts.Logger,
		maxBody:  opts.MaxBodyBytes,
		loc:      opts.Location,
		now:      opts.Now,
		readyTO:  opts.ReadyTimeout,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.gatherer == nil {
		s.gatherer = prometheus.NewRegistry()
	}
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	if s.loc == nil {
		s.loc = s.svc.Location()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.readyTO <= 0 {
		s.readyTO = 2 * time.Second
	}
	seen := map[[sha256.Size]byte]string{}
	for i, t := range opts.Tokens {
		role := tickets.Role(t.Role)
		switch {
		case strings.TrimSpace(t.Name) == "":
			return nil, fmt.Errorf("http.tokens[%d].name: required", i)
		case !role.Valid():
			return nil, fmt.Errorf("http.tokens[%d].role: must be viewer, unit, supervisor or admin, got %q", i, t.Role)
		case role == tickets.RoleUnit && strings.TrimSpace(t.OrgUnit) == "":
			return nil, fmt.Errorf("http.tokens[%d].org_unit: required for role unit", i)
		case t.Token == "":
			return nil, fmt.Errorf("http.tokens[%d].token: empty", i)
		}
		h := sha256.Sum256([]byte(t.Token))
		if other, dup := seen[h]; dup {
			return nil, fmt.Errorf("http.tokens[%d].token: same as the token of %q", i, other)
		}
		seen[h] = t.Name
		if len(t.Token) < 16 {
			s.log.Warn("API token is short; use at least 16 random characters", "name", t.Name)
		}
		s.tokens = append(s.tokens, token{
			actor: tickets.Actor{Name: t.Name, Role: role, OrgUnit: t.OrgUnit},
			hash:  h,
		})
	}
	if len(s.tokens) == 0 {
		s.open = true
		s.log.Warn("no API tokens configured: the HTTP API is open and every request acts as admin")
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("GET /api/v1/tickets", s.authed(s.listTickets))
	m.Handle("GET /api/v1/tickets.csv", s.authed(s.exportTickets))
	m.Handle("GET /api/v1/tickets/{id}", s.authed(s.getTicket))
	m.Handle("POST /api/v1/tickets", s.authed(s.createTicket))
	m.Handle("POST /api/v1/tickets/{id}/{action}", s.authed(s.transition))
	m.Handle("GET /api/v1/reports/ranking", s.authed(s.ranking))
	m.Handle("GET /api/v1/devices", s.authed(s.listDevices))
	m.Handle("GET /api/v1/devices/{id}", s.authed(s.getDevice))
	m.Handle("GET /api/v1/rejected", s.authed(s.rejected))
	m.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.readyz)
	s.mux = m
}

// Handler is the API with access logging; the mux's own 404 and 405
// answers are turned into JSON errors.
func (s *Server) Handler() http.Handler {
	return s.accessLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		// A query Go cannot parse whole (a ';', too many parameters) would
		// otherwise reach the handlers as no filters at all.
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad query string: " + err.Error()})
			return
		}
		if _, pattern := s.mux.Handler(r); pattern == "" {
			w = &jsonErrors{ResponseWriter: w}
		}
		s.mux.ServeHTTP(w, r)
	}))
}

// jsonErrors rewrites a plain-text error answer of the mux into {"error": …}.
type jsonErrors struct {
	http.ResponseWriter
	swallow bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if code < 400 {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.swallow = true
	h := j.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json; charset=utf-8")
	j.ResponseWriter.WriteHeader(code)
	json.NewEncoder(j.ResponseWriter).Encode(errorBody{Error: strings.ToLower(http.StatusText(code))})
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{}
	ok, degraded := true, false
	for _, c := range s.ready {
		ctx, cancel := context.WithTimeout(r.Context(), s.readyTO)
		err := c.Fn(ctx)
		cancel()
		if err != nil {
			if c.Degrades {
				degraded = true
			} else {
				ok = false
			}
			checks[c.Name] = err.Error()
			continue
		}
		checks[c.Name] = "ok"
	}
	switch {
	case !ok:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": checks})
	case degraded:
		writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "checks": checks})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
	}
}

// statusWriter remembers the status code for the access log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.code), slog.Duration("duration", time.Since(start)))
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// httpError is an error with the status code to answer it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fail answers err with a fitting status code.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var te *tickets.TransitionError
	var ve *tickets.ValidationError
	code, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.As(err, &te):
		code, msg = http.StatusConflict, te.Reason
	case errors.As(err, &ve):
		code, msg = http.StatusBadRequest, ve.Error()
	case errors.Is(err, tickets.ErrNotFound):
		code, msg = http.StatusNotFound, "ticket not found"
	case errors.Is(err, tickets.ErrForbidden):
		code, msg = http.StatusForbidden, err.Error()
	case errors.Is(err, tickets.ErrConflict):
		code, msg = http.StatusConflict, err.Error()
	case errors.Is(err, tickets.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		code, msg = 499, "request canceled"
	default:
		s.log.Error("http request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sanitel"`)
	}
	writeJSON(w, code, errorBody{Error: msg})
}

// Package desk is the supervision desk: server-rendered pages under /desk/
// where the office and the responsible units work the tickets (督办单),
// read the monthly ranking and see the devices. It signs people in with
// the HTTP API's tokens and acts through the same ticket service, so the
// roles and transitions are the API's.
package desk

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/tickets"
)

// Prefix is where the desk is mounted.
const Prefix = "/desk/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Authenticator tells who holds an API token; *api.Server is one.
type Authenticator interface {
	Authenticate(token string) (tickets.Actor, bool)
}

// Options configure a Desk.
type Options struct {
	// Tickets is the ticket service; required.
	Tickets *tickets.Service
	// Auth checks the tokens people sign in with; required.
	Auth Authenticator
	// Devices is the registry with live state; optional.
	Devices api.DeviceSource
	// Location is the office time zone of every date shown; default the
	// ticket service's.
	Location *time.Location
	// Now is the clock of countdowns and the default month; default time.Now.
	Now func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
	// PageSize is the number of tickets or devices on a page; default 50.
	PageSize int
	// SessionTTL is how long a sign-in lasts; default 12h.
	SessionTTL time.Duration
	// SecureCookies marks cookies Secure even on plain HTTP (behind a TLS
	// proxy); over TLS they always are.
	SecureCookies bool
}

// Desk serves the pages.
type Desk struct {
	svc      *tickets.Service
	auth     Authenticator
	devices  api.DeviceSource
	loc      *time.Location
	now      func() time.Time
	log      *slog.Logger
	pageSize int
	secure   bool
	sessions *sessions
	failures failures
	pages    map[string]*template.Template
	handler  http.Handler
}

// New checks opts, parses the templates and builds the routes.
func New(opts Options) (*Desk, error) {
	if opts.Tickets == nil {
		return nil, errors.New("desk: no ticket service")
	}
	if opts.Auth == nil {
		return nil, errors.New("desk: no authenticator")
	}
	d := &Desk{
		svc: opts.Tickets, auth: opts.Auth, devices: opts.Devices, loc: opts.Location,
		now: opts.Now, log: opts.Logger, pageSize: opts.PageSize, secure: opts.SecureCookies,
	}
	if d.loc == nil {
		d.loc = d.svc.Location()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.pageSize <= 0 {
		d.pageSize = 50
	}
	ttl := opts.SessionTTL
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	d.sessions = newSessions(ttl)
	if err := d.parse(); err != nil {
		return nil, err
	}
	d.routes()
	return d, nil
}

// pageNames are the templates that render a whole page with the layout.
var pageNames = []string{"login", "board", "ticket", "new", "ranking", "devices", "error"}

func (d *Desk) parse() error {
	d.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("desk: parse template %s: %w", name, err)
		}
		d.pages[name] = t
	}
	return nil
}

func (d *Desk) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /desk/static/", cacheFor(time.Hour, http.StripPrefix("/desk/static/", http.FileServerFS(static))))
	m.HandleFunc("GET /desk/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/desk/tickets", http.StatusSeeOther)
	})
	m.HandleFunc("GET /desk/login", d.loginPage)
	m.HandleFunc("POST /desk/login", d.login)
	m.Handle("POST /desk/logout", d.signedIn(d.logout))
	m.Handle("GET /desk/tickets", d.signedIn(d.board))
	m.Handle("GET /desk/tickets.csv", d.signedIn(d.ledgerCSV))
	m.Handle("GET /desk/tickets/new", d.signedIn(d.newTicketPage))
	m.Handle("POST /desk/tickets", d.signedIn(d.createTicket))
	m.Handle("GET /desk/tickets/{id}", d.signedIn(d.ticketPage))
	m.Handle("POST /desk/tickets/{id}/{action}", d.signedIn(d.transition))
	m.Handle("GET /desk/ranking", d.signedIn(d.ranking))
	m.Handle("GET /desk/ranking.csv", d.signedIn(d.rankingCSV))
	m.Handle("GET /desk/devices", d.signedIn(d.devicesPage))
	m.HandleFunc("/desk/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, nil, http.StatusNotFound, "error.notfound", "")
	})
	// A query Go cannot parse whole (a ';', too many parameters) would
	// otherwise reach the pages as no filters at all.
	checked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			d.fail(w, r, nil, http.StatusBadRequest, "error.invalid", err.Error())
			return
		}
		m.ServeHTTP(w, r)
	})
	// Cross-origin POSTs are refused before a handler runs; the session's
	// CSRF token then guards every form as a second line.
	d.handler = securityHeaders(d.rememberLanguage(http.NewCrossOriginProtection().Handler(checked)))
}

// Handler serves the desk; mount it at Prefix.
func (d *Desk) Handler() http.Handler { return d.handler }

// maxFormBytes bounds a form's body.
const maxFormBytes = 1 << 20

// securityHeaders keeps the pages out of frames and caches, lets them load
// only their own scripts and styles, and bounds request bodies.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

// render writes page name with status code.
func (d *Desk) render(w http.ResponseWriter, r *http.Request, code int, name string, v *view) {
	t := d.pages[name]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := t.ExecuteTemplate(w, "layout", v); err != nil {
		d.log.Error("render desk page", "page", name, "path", r.URL.Path, "err", err)
	}
}

// fail renders the error page with status code: the text of key, and
// detail after it when there is one.
func (d *Desk) fail(w http.ResponseWriter, r *http.Request, s *session, code int, key, detail string) {
	v := d.view(r, s, "error")
	v.Title = v.T(key)
	v.Error = v.T(key)
	if detail != "" {
		v.Error += ": " + detail
	}
	d.render(w, r, code, "error", v)
}

// failErr renders err from the ticket service with its fitting status;
// what went wrong inside is logged, not shown.
func (d *Desk) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code, key := errorStatus(err)
	detail := ""
	switch code {
	case http.StatusInternalServerError:
		d.log.Error("desk request", "path", r.URL.Path, "err", err)
	case http.StatusNotFound:
	default:
		detail = err.Error()
	}
	d.fail(w, r, s, code, key, detail)
}

// errorStatus maps a ticket service error to an HTTP status and a message key.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, tickets.ErrNotFound):
		return http.StatusNotFound, "error.notfound"
	case errors.Is(err, tickets.ErrForbidden):
		return http.StatusForbidden, "error.forbidden"
	case errors.Is(err, tickets.ErrConflict):
		return http.StatusConflict, "error.conflict"
	case errors.Is(err, tickets.ErrInvalid):
		return http.StatusBadRequest, "error.invalid"
	}
	return http.StatusInternalServerError, "error.internal"
}

// Mount serves d under Prefix and everything else with api, and sends the
// bare root to the desk.
func Mount(apiHandler http.Handler, d *Desk) http.Handler {
	m := http.NewServeMux()
	m.Handle(Prefix, d.Handler())
	m.Handle("GET /{$}", http.RedirectHandler(Prefix, http.StatusSeeOther))
	m.Handle("/", apiHandler)
	return m
}

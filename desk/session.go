package desk

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sanitel/sanitel/tickets"
)

// Cookie names.
const (
	sessionCookie = "sanitel_session"
	langCookie    = "sanitel_lang"
)

// session is one signed-in person: who the token says they are and the
// CSRF token every form of theirs must carry.
type session struct {
	id      string
	who     tickets.Actor
	csrf    string
	expires time.Time
}

// sessions are kept in memory: a restart signs everyone out, and
// signing out ends a session at once.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for who, dropping the expired ones.
func (ss *sessions) create(who tickets.Actor) *session {
	now := time.Now()
	s := &session{id: randomToken(), who: who, csrf: randomToken(), expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, old := range ss.m {
		if now.After(old.expires) {
			delete(ss.m, id)
		}
	}
	ss.m[s.id] = s
	return s
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[id]
	if s == nil {
		return nil
	}
	if time.Now().After(s.expires) {
		delete(ss.m, id)
		return nil
	}
	return s
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// Failed sign-ins are throttled per client address: after
// maxFailedSignIns wrong tokens within failedSignInWindow, that address is
// answered 429 until the window ends. Tokens are long random strings, so
// this is not what keeps them safe; it keeps a guessing script from
// filling the log and the CPU.
const (
	maxFailedSignIns   = 10
	failedSignInWindow = time.Minute
	maxThrottledHosts  = 10000 // beyond this the oldest windows are forgotten first
)

type failures struct {
	mu sync.Mutex
	m  map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blocked reports whether host has used up its failed sign-ins.
func (f *failures) blocked(host string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[host]
	return w != nil && now.Sub(w.start) < failedSignInWindow && w.n >= maxFailedSignIns
}

// fail counts a failed sign-in from host.
func (f *failures) fail(host string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*failWindow{}
	}
	w := f.m[host]
	if w == nil || now.Sub(w.start) >= failedSignInWindow {
		if w == nil && len(f.m) >= maxThrottledHosts {
			for h, old := range f.m {
				if now.Sub(old.start) >= failedSignInWindow {
					delete(f.m, h)
				}
			}
			if len(f.m) >= maxThrottledHosts {
				return // under a wide attack: count no more hosts, keep memory bounded
			}
		}
		w = &failWindow{start: now}
		f.m[host] = w
	}
	w.n++
}

// session returns the session of r's cookie, or nil.
func (d *Desk) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	return d.sessions.get(c.Value)
}

func (d *Desk) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: d.secure || r.TLS != nil,
	}
}

// deskHandler is a page handler for a signed-in person.
type deskHandler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn requires a session: a page without one sends the browser to
// sign in and back; a form without one, or without the session's CSRF
// token, is refused.
func (d *Desk) signedIn(h deskHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.session(r)
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead
		if s == nil {
			if safe {
				http.Redirect(w, r, "/desk/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			d.fail(w, r, nil, http.StatusUnauthorized, "error.signin", "")
			return
		}
		if !safe {
			given := r.PostFormValue("csrf")
			if given == "" {
				given = r.Header.Get("X-CSRF-Token")
			}
			if subtle.ConstantTimeCompare([]byte(given), []byte(s.csrf)) != 1 {
				d.fail(w, r, s, http.StatusForbidden, "error.csrf", "")
				return
			}
		}
		h(w, r, s)
	})
}

// safeNext keeps a redirect after sign-in on the desk.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/desk/tickets"
	}
	return next
}

type loginData struct {
	Next string
}

func (d *Desk) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if d.session(r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	v := d.view(r, nil, "login")
	v.Title = v.T("login.title")
	v.Data = loginData{Next: next}
	d.render(w, r, http.StatusOK, "login", v)
}

// login signs in with an API token. A new session (and CSRF token) is
// made on every sign-in, so a session id set before cannot be reused.
func (d *Desk) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	host, now := clientHost(r), time.Now()
	if d.failures.blocked(host, now) {
		v := d.view(r, nil, "login")
		v.Title = v.T("login.title")
		v.Error = v.T("login.throttled")
		v.Data = loginData{Next: next}
		d.render(w, r, http.StatusTooManyRequests, "login", v)
		return
	}
	who, ok := d.auth.Authenticate(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		d.failures.fail(host, now)
		d.log.Info("desk sign-in refused", "remote", r.RemoteAddr)
		v := d.view(r, nil, "login")
		v.Title = v.T("login.title")
		v.Error = v.T("login.bad")
		v.Data = loginData{Next: next}
		d.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	if old := d.session(r); old != nil {
		d.sessions.end(old.id)
	}
	s := d.sessions.create(who)
	http.SetCookie(w, d.cookie(r, sessionCookie, s.id, 0))
	d.log.Info("desk sign-in", "name", who.Name, "role", who.Role)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Desk) logout(w http.ResponseWriter, r *http.Request, s *session) {
	d.sessions.end(s.id)
	http.SetCookie(w, d.cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/desk/login", http.StatusSeeOther)
}

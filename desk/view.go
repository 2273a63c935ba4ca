package desk

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sanitel/sanitel/tickets"
)

// view is what every page template gets: the language, who is signed in,
// the CSRF token for forms, and the page's own Data.
type view struct {
	Lang   string
	Page   string
	Title  string
	Who    *tickets.Actor
	CSRF   string
	Flash  string
	Error  string
	Data   any
	path   string
	query  url.Values
	msgs   map[string]string
	loc    *time.Location
	now    time.Time
	Signed bool
}

// view starts the page data of r for s (nil when not signed in).
func (d *Desk) view(r *http.Request, s *session, page string) *view {
	lang := language(r)
	v := &view{
		Lang: lang, Page: page, msgs: messages[lang], loc: d.loc, now: d.now(),
		path: r.URL.Path, query: r.URL.Query(),
	}
	if s != nil {
		who := s.who
		v.Who, v.CSRF, v.Signed = &who, s.csrf, true
	}
	return v
}

// language is the page language: ?lang= when given, else the cookie it
// set, else Chinese.
func language(r *http.Request) string {
	l := r.URL.Query().Get("lang")
	if l == "" {
		if c, err := r.Cookie(langCookie); err == nil {
			l = c.Value
		}
	}
	if _, ok := messages[l]; ok {
		return l
	}
	return "zh"
}

// rememberLanguage keeps a ?lang= choice in a cookie for the next pages.
func (d *Desk) rememberLanguage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l := r.URL.Query().Get("lang"); l != "" {
			if _, ok := messages[l]; ok {
				c := d.cookie(r, langCookie, l, 365*24*3600)
				c.SameSite = http.SameSiteLaxMode
				http.SetCookie(w, c)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// T is the text of key in the page language (the key itself when missing,
// so a gap shows rather than breaks the page).
func (v *view) T(key string) string {
	if s, ok := v.msgs[key]; ok {
		return s
	}
	if s, ok := messages["zh"][key]; ok {
		return s
	}
	return key
}

// Label is the text of prefix.value, or value itself when there is none
// (a rule or field without a translation shows its name).
func (v *view) Label(prefix string, value any) string {
	s := fmt.Sprint(value)
	if t, ok := v.msgs[prefix+"."+s]; ok {
		return t
	}
	return s
}

// Time formats t (a time.Time or *time.Time) in the office time zone; a
// missing time is a dash.
func (v *view) Time(t any) string {
	switch t := t.(type) {
	case time.Time:
		if t.IsZero() {
			return "—"
		}
		return t.In(v.loc).Format("2006-01-02 15:04")
	case *time.Time:
		if t == nil {
			return "—"
		}
		return v.Time(*t)
	}
	return "—"
}

// Zone names the office time zone.
func (v *view) Zone() string { return v.loc.String() }

// Countdown is the time left until a pending ticket's deadline, or how
// long it is overdue; empty once it is rectified or closed.
func (v *view) Countdown(t tickets.Ticket) string {
	if t.Status != tickets.StatusOpen && t.Status != tickets.StatusAcknowledged {
		return ""
	}
	left := t.Deadline.Sub(v.now)
	if left > 0 {
		return fmt.Sprintf(v.T("countdown.left"), v.Duration(left))
	}
	return fmt.Sprintf(v.T("countdown.over"), v.Duration(-left))
}

// Ago is how long before now t was.
func (v *view) Ago(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf(v.T("ago"), v.Duration(v.now.Sub(*t)))
}

// Duration is d in days, hours and minutes, the two largest units.
func (v *view) Duration(d time.Duration) string {
	d = d.Round(time.Minute)
	if d < time.Minute {
		d = time.Minute
	}
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	var parts []string
	add := func(n int, unit string) {
		if n > 0 && len(parts) < 2 {
			parts = append(parts, fmt.Sprintf(v.T(unit), n))
		}
	}
	add(days, "unit.day")
	if days > 0 && hours == 0 {
		return strings.Join(parts, "")
	}
	add(hours, "unit.hour")
	add(mins, "unit.minute")
	return strings.Join(parts, v.T("unit.sep"))
}

// LangURL is this page in lang.
func (v *view) LangURL(lang string) string {
	q := url.Values{}
	for k, vals := range v.query {
		q[k] = slices.Clone(vals)
	}
	q.Set("lang", lang)
	return v.path + "?" + q.Encode()
}

// Can reports whether the signed-in person's role is one of roles.
func (v *view) Can(roles ...string) bool {
	return v.Who != nil && slices.Contains(roles, string(v.Who.Role))
}

// funcs are the template functions besides the view's methods.
var funcs = template.FuncMap{
	"percent": func(x float64) string { return fmt.Sprintf("%.1f%%", x*100) },
	"hours": func(x *float64) string {
		if x == nil {
			return "—"
		}
		return fmt.Sprintf("%.1f", *x)
	},
	"reading": func(x float64) string { return fmt.Sprintf("%g", x) },
	"list":    func(s ...string) []string { return s },
}

package desk

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/tickets"
)

// boardFilters are the board's query parameters that select tickets.
var boardFilters = []string{"status", "street", "village", "org_unit", "rule", "overdue", "device_id"}

// scope reads the ticket selection of q for who. A unit sees only its own
// org_unit, whatever it asks for.
func scope(q url.Values, who tickets.Actor) tickets.Filter {
	one := func(name string) []string {
		if v := strings.TrimSpace(q.Get(name)); v != "" {
			return []string{v}
		}
		return nil
	}
	f := tickets.Filter{
		Status: one("status"), Street: one("street"), Village: one("village"),
		OrgUnit: one("org_unit"), Rule: one("rule"), DeviceID: one("device_id"),
	}
	if b, err := strconv.ParseBool(q.Get("overdue")); err == nil {
		f.Overdue = &b
	}
	if who.Role == tickets.RoleUnit {
		f.OrgUnit = []string{who.OrgUnit}
	}
	return f
}

// statusCount is one chip of the board: a status (or "overdue") and how
// many selected tickets have it.
type statusCount struct {
	Key    string
	Count  int
	Active bool
	URL    string
}

type boardData struct {
	Query   url.Values
	Counts  []statusCount
	Total   int
	Items   []tickets.Ticket
	Next    string
	First   string
	Self    string
	CSV     string
	Choices choices
}

// choices fill the filter inputs' suggestions from the registry.
type choices struct {
	Streets, Villages, OrgUnits, Kinds []string
}

func (d *Desk) choices() choices {
	var c choices
	if d.devices == nil {
		return c
	}
	for _, dev := range d.devices.Devices() {
		c.Streets = append(c.Streets, dev.Street)
		c.Villages = append(c.Villages, dev.Village)
		c.OrgUnits = append(c.OrgUnits, dev.OrgUnit)
		c.Kinds = append(c.Kinds, dev.Kind)
	}
	for _, l := range []*[]string{&c.Streets, &c.Villages, &c.OrgUnits, &c.Kinds} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
		if len(*l) > 0 && (*l)[0] == "" {
			*l = (*l)[1:]
		}
	}
	return c
}

// withQuery is path with q, and set applied on top of it ("" deletes).
func withQuery(path string, q url.Values, set ...string) string {
	out := url.Values{}
	for _, k := range boardFilters {
		if v := q.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	for i := 0; i+1 < len(set); i += 2 {
		if set[i+1] == "" {
			out.Del(set[i])
		} else {
			out.Set(set[i], set[i+1])
		}
	}
	if len(out) == 0 {
		return path
	}
	return path + "?" + out.Encode()
}

// board is the ticket list: counts per status, then the overdue tickets
// (when the filter does not choose), then the rest, newest first.
func (d *Desk) board(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := scope(q, s.who)
	if err := f.Validate(); err != nil {
		d.failErr(w, r, s, err)
		return
	}
	counts, err := d.counts(r.Context(), f, q)
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	items, total, next, err := d.page(r.Context(), f, q.Get("cursor"))
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	v := d.view(r, s, "board")
	v.Title = v.T("board.title")
	data := boardData{
		Query: q, Counts: counts, Total: total, Items: items,
		First: withQuery("/desk/tickets", q), CSV: withQuery("/desk/tickets.csv", q),
		Self: withQuery("/desk/tickets", q, "cursor", q.Get("cursor")), Choices: d.choices(),
	}
	if next != "" {
		data.Next = withQuery("/desk/tickets", q, "cursor", next)
	}
	v.Data = data
	d.render(w, r, http.StatusOK, "board", v)
}

// counts counts the selected tickets in each status and the overdue ones,
// whatever status and overdue the filter asks for.
func (d *Desk) counts(ctx context.Context, f tickets.Filter, q url.Values) ([]statusCount, error) {
	f.Limit, f.Cursor = 1, ""
	var out []statusCount
	for _, st := range tickets.Statuses {
		g := f
		g.Status, g.Overdue = []string{string(st)}, nil
		_, n, _, err := d.svc.List(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, statusCount{Key: "status." + string(st), Count: n, Active: q.Get("status") == string(st),
			URL: withQuery("/desk/tickets", q, "status", string(st), "overdue", "")})
	}
	g := f
	g.Status, g.Overdue = nil, new(true)
	_, n, _, err := d.svc.List(ctx, g)
	if err != nil {
		return nil, err
	}
	out = append(out, statusCount{Key: "overdue", Count: n, Active: q.Get("overdue") == "true",
		URL: withQuery("/desk/tickets", q, "overdue", "true", "status", "")})
	return out, nil
}

// Cursor phases of the board: its pages run through the overdue tickets
// first, then the others.
const (
	phaseOverdue = "o:"
	phaseRest    = "n:"
)

// page returns one board page. Without an overdue filter it pages through
// the overdue tickets first and the others after, the cursor saying which
// list it is in.
func (d *Desk) page(ctx context.Context, f tickets.Filter, cursor string) ([]tickets.Ticket, int, string, error) {
	f.Limit = d.pageSize
	if f.Overdue != nil {
		f.Cursor = cursor
		return d.svc.List(ctx, f)
	}
	over, rest := f, f
	over.Overdue, rest.Overdue = new(true), new(false)
	var items []tickets.Ticket
	total := 0
	phase, inner, _ := strings.Cut(cursor, ":")
	phase += ":"
	if cursor == "" {
		phase = phaseOverdue
	}
	if phase == phaseOverdue {
		over.Cursor = inner
		its, n, next, err := d.svc.List(ctx, over)
		if err != nil {
			return nil, 0, "", err
		}
		items, total = its, n
		if next != "" {
			rest.Limit = 1
			_, m, _, err := d.svc.List(ctx, rest)
			return items, total + m, phaseOverdue + next, err
		}
		inner = ""
	} else {
		over.Limit = 1
		_, n, _, err := d.svc.List(ctx, over)
		if err != nil {
			return nil, 0, "", err
		}
		total = n
	}
	rest.Cursor = inner
	if room := d.pageSize - len(items); room > 0 {
		rest.Limit = room
	} else {
		rest.Limit = 1
	}
	its, m, next, err := d.svc.List(ctx, rest)
	if err != nil {
		return nil, 0, "", err
	}
	total += m
	if len(items) >= d.pageSize {
		// The overdue list ended exactly on this page; the others start
		// on the next one.
		if m > 0 {
			return items, total, phaseRest, nil
		}
		return items, total, "", nil
	}
	items = append(items, its...)
	if next != "" {
		next = phaseRest + next
	}
	return items, total, next, nil
}

type ticketData struct {
	T       tickets.Ticket
	Allowed []string
	Device  *api.DeviceStatus
	Note    string
	By      string
}

func (d *Desk) ticketFor(r *http.Request, s *session) (tickets.Ticket, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return tickets.Ticket{}, tickets.ErrNotFound
	}
	t, err := d.svc.Get(r.Context(), id)
	if err != nil {
		return tickets.Ticket{}, err
	}
	// A unit does not learn that another unit's ticket exists.
	if s.who.Role == tickets.RoleUnit && t.OrgUnit != s.who.OrgUnit {
		return tickets.Ticket{}, tickets.ErrNotFound
	}
	return t, nil
}

func (d *Desk) ticketPage(w http.ResponseWriter, r *http.Request, s *session) {
	t, err := d.ticketFor(r, s)
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	v := d.view(r, s, "ticket")
	if done := r.URL.Query().Get("done"); done != "" {
		v.Flash = v.msgs["flash."+done]
	}
	d.showTicket(w, r, v, t, http.StatusOK, "")
}

func (d *Desk) showTicket(w http.ResponseWriter, r *http.Request, v *view, t tickets.Ticket, code int, note string) {
	v.Title = t.Number + " " + t.Title
	data := ticketData{T: t, Allowed: tickets.Allowed(t, *v.Who, d.now()), Note: note, By: v.Who.Name}
	if d.devices != nil && t.DeviceID != "" {
		if dev, ok := d.devices.Device(t.DeviceID); ok {
			data.Device = &dev
		}
	}
	v.Data = data
	d.render(w, r, code, "ticket", v)
}

// transition takes an action on a ticket. The ticket service decides
// whether the role may (403) and the status allows it (409, shown on the
// ticket page with the note kept).
func (d *Desk) transition(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PathValue("action")
	if !slices.Contains(tickets.Actions, action) {
		d.fail(w, r, s, http.StatusNotFound, "error.notfound", "")
		return
	}
	t, err := d.ticketFor(r, s)
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	note := r.PostFormValue("note")
	t, err = d.svc.Transition(r.Context(), t.ID, action, strings.TrimSpace(r.PostFormValue("by")), note, s.who)
	if err != nil {
		code, key := errorStatus(err)
		if code != http.StatusConflict && code != http.StatusBadRequest {
			d.failErr(w, r, s, err)
			return
		}
		t, gerr := d.ticketFor(r, s)
		if gerr != nil {
			d.failErr(w, r, s, gerr)
			return
		}
		v := d.view(r, s, "ticket")
		v.Error = v.T(key) + ": " + err.Error()
		d.showTicket(w, r, v, t, code, note)
		return
	}
	d.log.Info("desk ticket "+action, "ticket", t.Number, "by", s.who.Name)
	http.Redirect(w, r, "/desk/tickets/"+strconv.FormatInt(t.ID, 10)+"?done="+action, http.StatusSeeOther)
}

type newData struct {
	M        tickets.Manual
	Deadline string
	Choices  choices
}

// datetimeLocal is the format of an <input type="datetime-local">.
const datetimeLocal = "2006-01-02T15:04"

func (d *Desk) mayCreate(s *session) bool {
	return s.who.Role == tickets.RoleSupervisor || s.who.Role == tickets.RoleAdmin
}

func (d *Desk) newTicketPage(w http.ResponseWriter, r *http.Request, s *session) {
	if !d.mayCreate(s) {
		d.fail(w, r, s, http.StatusForbidden, "error.forbidden", "")
		return
	}
	m := tickets.Manual{Severity: string(tickets.SeverityWarning), DeviceID: r.URL.Query().Get("device_id")}
	d.showNew(w, r, s, http.StatusOK, m, d.now().Add(tickets.DefaultDeadline).In(d.loc).Format(datetimeLocal), "", "")
}

// showNew renders the new ticket form with m's values; a non-empty errKey
// says (with detail) what was wrong with them.
func (d *Desk) showNew(w http.ResponseWriter, r *http.Request, s *session, code int, m tickets.Manual, deadline, errKey, detail string) {
	v := d.view(r, s, "new")
	v.Title = v.T("new.title")
	if errKey != "" {
		v.Error = v.T(errKey) + ": " + detail
	}
	v.Data = newData{M: m, Deadline: deadline, Choices: d.choices()}
	d.render(w, r, code, "new", v)
}

// createTicket opens a ticket from an inspection (交办); the deadline is
// read in the office time zone.
func (d *Desk) createTicket(w http.ResponseWriter, r *http.Request, s *session) {
	if !d.mayCreate(s) {
		d.fail(w, r, s, http.StatusForbidden, "error.forbidden", "")
		return
	}
	form := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	m := tickets.Manual{
		DeviceID: form("device_id"), Site: form("site"), Street: form("street"), Village: form("village"),
		OrgUnit: form("org_unit"), Title: form("title"), Detail: r.PostFormValue("detail"),
		Requirement: r.PostFormValue("requirement"), Severity: form("severity"),
	}
	deadline := form("deadline")
	if deadline != "" {
		t, err := time.ParseInLocation(datetimeLocal, deadline, d.loc)
		if err != nil {
			d.showNew(w, r, s, http.StatusBadRequest, m, deadline, "error.invalid", "deadline: must be a date and time")
			return
		}
		m.Deadline = t
	}
	t, err := d.svc.Create(r.Context(), m, s.who)
	if err != nil {
		code, key := errorStatus(err)
		if code != http.StatusBadRequest {
			d.failErr(w, r, s, err)
			return
		}
		d.showNew(w, r, s, code, m, deadline, key, err.Error())
		return
	}
	http.Redirect(w, r, "/desk/tickets/"+strconv.FormatInt(t.ID, 10)+"?done=created", http.StatusSeeOther)
}

// ledgerCSV exports the selected tickets as the ledger (台帐); month=YYYY-MM
// limits it to the tickets opened in that month.
func (d *Desk) ledgerCSV(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := scope(q, s.who)
	name := "sanitel-tickets"
	if month := q.Get("month"); month != "" {
		from, to, err := tickets.MonthRange(month, d.loc)
		if err != nil {
			d.failErr(w, r, s, err)
			return
		}
		f.From, f.To = from, to
		name += "-" + month
	}
	if err := f.Validate(); err != nil {
		d.failErr(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	if err := d.svc.WriteCSV(r.Context(), w, f); err != nil {
		d.log.Error("desk ledger export", "err", err)
	}
}

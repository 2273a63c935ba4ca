package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sanitel/sanitel/tickets"
)

// list is the answer of every list endpoint.
type list[T any] struct {
	Items []T    `json:"items"`
	Total int    `json:"total"`
	Next  string `json:"next"`
}

// multi reads a query parameter that may repeat or hold comma-separated values.
func multi(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func parseBool(q url.Values, name string) (*bool, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%s: must be true or false, got %q", name, v)
	}
	return &b, nil
}

func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return tickets.DefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > tickets.MaxLimit {
		return 0, errorf(http.StatusBadRequest, "limit: must be 1..%d, got %q", tickets.MaxLimit, v)
	}
	return n, nil
}

// parseTime reads RFC 3339, or a date YYYY-MM-DD in the office time zone.
// A date as the upper bound includes the whole day.
func (s *Server) parseTime(q url.Values, name string, upper bool) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation(time.DateOnly, v, s.loc)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "%s: must be RFC 3339 or YYYY-MM-DD, got %q", name, v)
	}
	if upper {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// noOrgUnit is an org_unit no ticket has (control characters are refused
// in ticket text), to select nothing.
const noOrgUnit = "\x00"

// ticketFilter reads the list query. A unit only ever sees its own
// org_unit: asking for others' selects nothing.
func (s *Server) ticketFilter(r *http.Request, who tickets.Actor) (f tickets.Filter, err error) {
	q := r.URL.Query()
	f = tickets.Filter{
		Status:   multi(q, "status"),
		Street:   multi(q, "street"),
		Village:  multi(q, "village"),
		OrgUnit:  multi(q, "org_unit"),
		Rule:     multi(q, "rule"),
		Severity: multi(q, "severity"),
		DeviceID: multi(q, "device_id"),
		Source:   multi(q, "source"),
		Cursor:   q.Get("cursor"),
	}
	if f.Overdue, err = parseBool(q, "overdue"); err != nil {
		return f, err
	}
	if f.From, err = s.parseTime(q, "from", false); err != nil {
		return f, err
	}
	if f.To, err = s.parseTime(q, "to", true); err != nil {
		return f, err
	}
	if f.Limit, err = parseLimit(q); err != nil {
		return f, err
	}
	if who.Role == tickets.RoleUnit {
		if len(f.OrgUnit) == 0 || slices.Contains(f.OrgUnit, who.OrgUnit) {
			f.OrgUnit = []string{who.OrgUnit}
		} else {
			f.OrgUnit = []string{noOrgUnit}
		}
	}
	return f, nil
}

func (s *Server) listTickets(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	f, err := s.ticketFilter(r, who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	items, total, next, err := s.svc.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list[tickets.Ticket]{Items: items, Total: total, Next: next})
}

func ticketID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, errorf(http.StatusBadRequest, "id: must be a positive integer, got %q", r.PathValue("id"))
	}
	return id, nil
}

// visible reports whether who may see t: a unit sees only its org_unit's.
func visible(t tickets.Ticket, who tickets.Actor) bool {
	return who.Role != tickets.RoleUnit || t.OrgUnit == who.OrgUnit
}

func (s *Server) getTicket(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	id, err := ticketID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.svc.Get(r.Context(), id)
	if err == nil && !visible(t, who) {
		err = tickets.ErrNotFound
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// manualRequest is the body of POST /api/v1/tickets.
type manualRequest struct {
	DeviceID    string `json:"device_id"`
	Site        string `json:"site"`
	Street      string `json:"street"`
	Village     string `json:"village"`
	OrgUnit     string `json:"org_unit"`
	Title       string `json:"title"`
	Detail      string `json:"detail"`
	Requirement string `json:"requirement"`
	Severity    string `json:"severity"`
	Deadline    string `json:"deadline"`
}

func (s *Server) createTicket(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	if who.Role != tickets.RoleSupervisor && who.Role != tickets.RoleAdmin {
		s.fail(w, r, fmt.Errorf("%w: only a supervisor or admin may create tickets", tickets.ErrForbidden))
		return
	}
	var req manualRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	m := tickets.Manual{
		DeviceID: req.DeviceID, Site: req.Site, Street: req.Street, Village: req.Village,
		OrgUnit: req.OrgUnit, Title: req.Title, Detail: req.Detail, Requirement: req.Requirement,
		Severity: req.Severity,
	}
	if req.Deadline != "" {
		d, err := time.Parse(time.RFC3339, req.Deadline)
		if err != nil {
			s.fail(w, r, errorf(http.StatusBadRequest, "deadline: must be RFC 3339, got %q", req.Deadline))
			return
		}
		m.Deadline = d
	}
	t, err := s.svc.Create(r.Context(), m, who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/tickets/%d", t.ID))
	writeJSON(w, http.StatusCreated, t)
}

// transitionRequest is the body of POST /api/v1/tickets/{id}/{action}.
type transitionRequest struct {
	By   string `json:"by"`
	Note string `json:"note"`
}

func (s *Server) transition(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	action := r.PathValue("action")
	if !slices.Contains(tickets.Actions, action) {
		s.fail(w, r, errorf(http.StatusNotFound, "unknown action %q (ack, rectify, verify, reopen)", action))
		return
	}
	id, err := ticketID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req transitionRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.svc.Transition(r.Context(), id, action, strings.TrimSpace(req.By), req.Note, who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) exportTickets(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	f, err := s.ticketFilter(r, who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The filter is checked before the header goes out, so a bad one is a 400.
	if err := f.Validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition",
		fmt.Sprintf(`attachment; filename="sanitel-tickets-%s.csv"`, s.now().In(s.loc).Format("20060102")))
	// Once rows are streaming the status is sent; a failure later can
	// only cut the file short.
	if err := s.svc.WriteCSV(r.Context(), w, f); err != nil {
		s.log.Error("export tickets", "err", err)
	}
}

// rankingAnswer is the body of GET /api/v1/reports/ranking.
type rankingAnswer struct {
	Month string               `json:"month"`
	By    string               `json:"by"`
	Items []tickets.RankingRow `json:"items"`
	Total int                  `json:"total"`
}

func (s *Server) ranking(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	q := r.URL.Query()
	month := q.Get("month")
	if month == "" {
		month = s.now().In(s.loc).Format("2006-01")
	}
	by := q.Get("by")
	if by == "" {
		by = tickets.ByStreet
	}
	rows, err := s.svc.Ranking(r.Context(), month, by)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rankingAnswer{Month: month, By: by, Items: rows, Total: len(rows)})
}

// decode reads a JSON body into dst: 415 when it is not JSON, 413 when it
// is too large, 400 when it is not UTF-8, does not parse, has unknown fields
// or more than one value. With
// allowEmpty an empty body leaves dst as it is.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	ct := r.Header.Get("Content-Type")
	if allowEmpty && r.ContentLength == 0 && ct == "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return errorf(http.StatusUnsupportedMediaType, "body must be JSON (Content-Type: application/json)")
	}
	if r.ContentLength > s.maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", s.maxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err == nil && !utf8.Valid(body) {
		// encoding/json would turn each bad byte into U+FFFD and store that.
		return errorf(http.StatusBadRequest, "bad JSON: the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err == nil {
		err = dec.Decode(dst)
	}
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return nil
		} else if err == nil {
			return errorf(http.StatusBadRequest, "bad JSON: more than one value in the body")
		}
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", s.maxBody)
	case errors.Is(err, io.EOF):
		if allowEmpty {
			return nil
		}
		return errorf(http.StatusBadRequest, "bad JSON: empty body")
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return errorf(http.StatusBadRequest, "%s: must be a %s", typeErr.Field, typeErr.Type)
		}
		return errorf(http.StatusBadRequest, "bad JSON: body must be an object")
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "bad JSON: %v", err)
	}
	// Among these: an unknown field, named in the message.
	return errorf(http.StatusBadRequest, "bad JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

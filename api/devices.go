package api

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/tickets"
)

func encodeDeviceCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("dev:" + id))
}

func decodeDeviceCursor(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if id, ok := strings.CutPrefix(string(b), "dev:"); ok && id != "" {
			return id, nil
		}
	}
	return "", errorf(http.StatusBadRequest, "cursor: not a cursor from this API")
}

func matches(vals []string, v string) bool { return len(vals) == 0 || slices.Contains(vals, v) }

// listDevices answers the registry with live state, in id order, filtered
// by street, village, kind, org_unit and online, paged like tickets.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	q := r.URL.Query()
	streets, villages, kinds, orgs := multi(q, "street"), multi(q, "village"), multi(q, "kind"), multi(q, "org_unit")
	for _, k := range kinds {
		if _, ok := devices.ParseKind(k); !ok {
			s.fail(w, r, errorf(http.StatusBadRequest, "kind: unknown kind %q (bin, toilet, rural_toilet, water)", k))
			return
		}
	}
	online, err := parseBool(q, "online")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := parseLimit(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		if after, err = decodeDeviceCursor(c); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var all []DeviceStatus
	if s.devices != nil {
		all = s.devices.Devices()
	}
	var sel []DeviceStatus
	for _, d := range all {
		if matches(streets, d.Street) && matches(villages, d.Village) && matches(kinds, d.Kind) &&
			matches(orgs, d.OrgUnit) && (online == nil || d.Online == *online) {
			sel = append(sel, d)
		}
	}
	slices.SortFunc(sel, func(a, b DeviceStatus) int { return cmp.Compare(a.ID, b.ID) })
	total := len(sel)
	if after != "" {
		i, _ := slices.BinarySearchFunc(sel, after, func(d DeviceStatus, id string) int { return cmp.Compare(d.ID, id) })
		for i < len(sel) && sel[i].ID <= after {
			i++
		}
		sel = sel[i:]
	}
	next := ""
	if len(sel) > limit {
		sel = sel[:limit]
		next = encodeDeviceCursor(sel[limit-1].ID)
	}
	page := make([]DeviceStatus, len(sel))
	copy(page, sel)
	if err := s.fillOpenTickets(r, page); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list[DeviceStatus]{Items: page, Total: total, Next: next})
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	var d DeviceStatus
	ok := false
	if s.devices != nil {
		d, ok = s.devices.Device(r.PathValue("id"))
	}
	if !ok {
		s.fail(w, r, errorf(http.StatusNotFound, "device not found"))
		return
	}
	page := []DeviceStatus{d}
	if err := s.fillOpenTickets(r, page); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[0])
}

// fillOpenTickets sets each device's count of not-closed tickets from the
// ticket store, and makes a missing last reading an empty object.
func (s *Server) fillOpenTickets(r *http.Request, ds []DeviceStatus) error {
	if len(ds) == 0 {
		return nil
	}
	open, err := s.svc.OpenByDevice(r.Context())
	if err != nil {
		return err
	}
	for i := range ds {
		ds[i].OpenTickets = open[ds[i].ID]
		if ds[i].LastReading == nil {
			ds[i].LastReading = map[string]float64{}
		}
	}
	return nil
}

// A dead-letter cursor names the last dead letter of a page by its time and
// by how many dead letters before it on the page's list share that time.
func encodeDeadLetterCursor(at time.Time, same int) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "dl:%d:%d", at.UnixNano(), same))
}

func decodeDeadLetterCursor(s string) (at time.Time, same int, err error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var nanos int64
	if err == nil {
		if _, err = fmt.Sscanf(string(b), "dl:%d:%d", &nanos, &same); err == nil && same >= 0 {
			return time.Unix(0, nanos), same, nil
		}
	}
	return time.Time{}, 0, errorf(http.StatusBadRequest, "cursor: not a cursor from this API")
}

// rejected answers the dead letters, newest first, optionally only some
// reasons, paged like tickets.
func (s *Server) rejected(w http.ResponseWriter, r *http.Request, who tickets.Actor) {
	q := r.URL.Query()
	reasons := multi(q, "reason")
	limit, err := parseLimit(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var all []DeadLetter
	if s.dead != nil {
		all = s.dead.DeadLetters()
	}
	sel := []DeadLetter{}
	for _, d := range all {
		if matches(reasons, d.Reason) {
			sel = append(sel, d)
		}
	}
	total, start := len(sel), 0
	if c := q.Get("cursor"); c != "" {
		at, same, err := decodeDeadLetterCursor(c)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		start = deadLetterResume(sel, at, same)
	}
	page, next := sel[start:], ""
	if len(page) > limit {
		page = page[:limit]
		last := start + limit - 1
		next = encodeDeadLetterCursor(sel[last].At, countAt(sel[:last], sel[last].At))
	}
	writeJSON(w, http.StatusOK, list[DeadLetter]{Items: page, Total: total, Next: next})
}

// countAt counts the dead letters of ds at exactly at.
func countAt(ds []DeadLetter, at time.Time) int {
	n := 0
	for _, d := range ds {
		if d.At.Equal(at) {
			n++
		}
	}
	return n
}

// deadLetterResume is the index in ds (newest first) after the dead letter a
// cursor names: the one at at with same others at that time before it, or,
// once it has been dropped from the bounded store, the first older one.
func deadLetterResume(ds []DeadLetter, at time.Time, same int) int {
	seen := 0
	for i, d := range ds {
		if d.At.Equal(at) {
			if seen == same {
				return i + 1
			}
			seen++
		}
	}
	for i, d := range ds {
		if d.At.Before(at) {
			return i
		}
	}
	return len(ds)
}

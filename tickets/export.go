package tickets

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// LedgerColumns are the header row of the CSV ledger.
var LedgerColumns = []string{
	"id", "number", "source", "rule", "severity", "status", "device_id", "kind", "site", "street",
	"village", "org_unit", "title", "detail", "requirement", "opened_at", "fired_at", "deadline",
	"acknowledged_at", "rectified_at", "closed_at", "cleared_at", "occurrences", "escalation_level",
	"overdue", "auto_close", "history_entries", "last_action", "last_action_at",
}

// WriteCSV writes the tickets matching f (all of them: Limit and Cursor
// are ignored), newest first, as the ledger (台帐): UTF-8 with a byte order
// mark so spreadsheet programs read the Chinese text right, a header row,
// times in RFC 3339 in the office time zone.
func (s *Service) WriteCSV(ctx context.Context, w io.Writer, f Filter) error {
	f.Limit, f.Cursor = 0, ""
	if err := f.Validate(); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	if _, err := bw.WriteString("\uFEFF"); err != nil {
		return err
	}
	cw := csv.NewWriter(bw)
	if err := cw.Write(LedgerColumns); err != nil {
		return err
	}
	now := s.clock()
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(s.loc).Format(time.RFC3339)
	}
	pts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return ts(*t)
	}
	err := s.store.Each(ctx, f, now, func(t Ticket, sum Summary) error {
		return cw.Write([]string{
			strconv.FormatInt(t.ID, 10), t.Number, string(t.Source), t.Rule, string(t.Severity),
			string(t.Status), t.DeviceID, t.Kind, cell(t.Site), cell(t.Street), cell(t.Village),
			cell(t.OrgUnit), cell(t.Title), cell(t.Detail), cell(t.Requirement), ts(t.OpenedAt),
			pts(t.FiredAt), ts(t.Deadline), pts(t.AcknowledgedAt), pts(t.RectifiedAt),
			pts(t.ClosedAt), pts(t.ClearedAt), strconv.Itoa(t.Occurrences),
			strconv.Itoa(t.EscalationLevel), strconv.FormatBool(t.overdue(now)),
			strconv.FormatBool(t.AutoClose), strconv.Itoa(sum.Entries), sum.LastAction, ts(sum.LastAt),
		})
	})
	if err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	return bw.Flush()
}

// cell defuses free text that a spreadsheet would run as a formula.
func cell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

package desk

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/tickets"
)

type rankingData struct {
	Month, By string
	Rows      []tickets.RankingRow
	CSV       string
	Ledger    string
}

// rankingQuery reads month (default this month in the office time zone)
// and by (default street).
func (d *Desk) rankingQuery(r *http.Request) (month, by string) {
	q := r.URL.Query()
	month, by = q.Get("month"), q.Get("by")
	if month == "" {
		month = d.now().In(d.loc).Format("2006-01")
	}
	if by == "" {
		by = tickets.ByStreet
	}
	return month, by
}

// ranking shows the month's ranking to everyone signed in.
func (d *Desk) ranking(w http.ResponseWriter, r *http.Request, s *session) {
	month, by := d.rankingQuery(r)
	rows, err := d.svc.Ranking(r.Context(), month, by)
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	v := d.view(r, s, "ranking")
	v.Title = v.T("ranking.title")
	q := url.Values{"month": {month}, "by": {by}}
	v.Data = rankingData{
		Month: month, By: by, Rows: rows,
		CSV:    "/desk/ranking.csv?" + q.Encode(),
		Ledger: "/desk/tickets.csv?" + url.Values{"month": {month}}.Encode(),
	}
	d.render(w, r, http.StatusOK, "ranking", v)
}

// rankingColumns are the header of the ranking CSV: the API's row fields.
var rankingColumns = []string{"rank", "name", "opened", "rectified", "rectified_on_time", "overdue", "on_time_rate", "median_hours_to_rectify"}

// rankingCSV writes the ranking as CSV, UTF-8 with a byte order mark like
// the ledger.
func (d *Desk) rankingCSV(w http.ResponseWriter, r *http.Request, s *session) {
	month, by := d.rankingQuery(r)
	rows, err := d.svc.Ranking(r.Context(), month, by)
	if err != nil {
		d.failErr(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="sanitel-ranking-`+month+`-`+by+`.csv"`)
	bw := bufio.NewWriter(w)
	bw.WriteString("\uFEFF")
	cw := csv.NewWriter(bw)
	cw.Write(rankingColumns)
	for _, row := range rows {
		med := ""
		if row.MedianHoursToRectify != nil {
			med = strconv.FormatFloat(*row.MedianHoursToRectify, 'f', -1, 64)
		}
		cw.Write([]string{
			strconv.Itoa(row.Rank), tickets.CSVCell(row.Name), strconv.Itoa(row.Opened), strconv.Itoa(row.Rectified),
			strconv.Itoa(row.RectifiedOnTime), strconv.Itoa(row.Overdue),
			strconv.FormatFloat(row.OnTimeRate, 'f', -1, 64), med,
		})
	}
	cw.Flush()
	if err := cw.Error(); err == nil {
		err = bw.Flush()
	}
	if err != nil {
		d.log.Error("desk ranking export", "err", err)
	}
}

type devicesData struct {
	Items   []api.DeviceStatus
	Total   int
	Online  int
	Page    int
	Prev    string
	Next    string
	Query   url.Values
	Choices choices
}

// devicesPage lists the registry with what was last heard from each
// device; a unit sees its own org_unit's devices.
func (d *Desk) devicesPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	var all []api.DeviceStatus
	if d.devices != nil {
		all = d.devices.Devices()
	}
	orgUnit := q.Get("org_unit")
	if s.who.Role == tickets.RoleUnit {
		orgUnit = s.who.OrgUnit
	}
	keep := func(field, want string) bool { return want == "" || field == want }
	var sel []api.DeviceStatus
	online := 0
	for _, dev := range all {
		if keep(dev.OrgUnit, orgUnit) && keep(dev.Street, q.Get("street")) && keep(dev.Village, q.Get("village")) &&
			keep(dev.Kind, q.Get("kind")) && keep(strconv.FormatBool(dev.Online), q.Get("online")) {
			sel = append(sel, dev)
			if dev.Online {
				online++
			}
		}
	}
	// Devices with open tickets first, then offline ones, then by id.
	slices.SortFunc(sel, func(a, b api.DeviceStatus) int {
		if c := cmp.Compare(b.OpenTickets, a.OpenTickets); c != 0 {
			return c
		}
		if a.Online != b.Online {
			if !a.Online {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	from := min((page-1)*d.pageSize, len(sel))
	to := min(from+d.pageSize, len(sel))
	data := devicesData{Items: sel[from:to], Total: len(sel), Online: online, Page: page, Query: q, Choices: d.choices()}
	link := func(p int) string {
		u := url.Values{}
		for _, k := range []string{"org_unit", "street", "village", "kind", "online"} {
			if v := q.Get(k); v != "" {
				u.Set(k, v)
			}
		}
		u.Set("page", strconv.Itoa(p))
		return "/desk/devices?" + u.Encode()
	}
	if page > 1 {
		data.Prev = link(page - 1)
	}
	if to < len(sel) {
		data.Next = link(page + 1)
	}
	v := d.view(r, s, "devices")
	v.Title = v.T("devices.title")
	v.Data = data
	d.render(w, r, http.StatusOK, "devices", v)
}

package tickets

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// RankingRow is one street's or org_unit's line of the monthly ranking.
type RankingRow struct {
	Rank            int     `json:"rank"`
	Name            string  `json:"name"`
	Opened          int     `json:"opened"`
	Rectified       int     `json:"rectified"`
	RectifiedOnTime int     `json:"rectified_on_time"`
	Overdue         int     `json:"overdue"`
	OnTimeRate      float64 `json:"on_time_rate"`
	// MedianHoursToRectify is nil when nothing was rectified.
	MedianHoursToRectify *float64 `json:"median_hours_to_rectify"`
}

// Ranking groupings.
const (
	ByStreet  = "street"
	ByOrgUnit = "org_unit"
)

// NoName is the ranking name of tickets without a street or org_unit.
const NoName = "(none)"

// MonthRange is the month "YYYY-MM" in loc as [from, to).
func MonthRange(month string, loc *time.Location) (from, to time.Time, err error) {
	m, err := time.ParseInLocation("2006-01", month, loc)
	if err != nil {
		return time.Time{}, time.Time{}, invalid("month", "must be YYYY-MM, got %q", month)
	}
	return m, m.AddDate(0, 1, 0), nil
}

// Ranking ranks the streets or org_units (by) on the tickets opened in
// month ("YYYY-MM" in the office time zone): on-time rate first (higher is
// better), then median time to rectify (shorter is better, none last), then
// tickets opened (more first), then name.
//
// A ticket counts as rectified when it has a rectified_at (a closed ticket
// keeps the one its verification accepted), and so does a ticket that
// closed itself because its condition cleared (auto-close: the bin was
// emptied, the device came back), as of its closed_at; on time when that is
// not after its deadline. Overdue counts the late ones and those still
// pending past their deadline (as of now).
func (s *Service) Ranking(ctx context.Context, month, by string) ([]RankingRow, error) {
	if by != ByStreet && by != ByOrgUnit {
		return nil, invalid("by", "must be street or org_unit, got %q", by)
	}
	from, to, err := MonthRange(month, s.loc)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	type acc struct {
		row   RankingRow
		hours []float64
	}
	groups := map[string]*acc{}
	err = s.store.Each(ctx, Filter{From: from, To: to}, now, func(t Ticket, _ Summary) error {
		name := t.Street
		if by == ByOrgUnit {
			name = t.OrgUnit
		}
		if strings.TrimSpace(name) == "" {
			name = NoName
		}
		g := groups[name]
		if g == nil {
			g = &acc{row: RankingRow{Name: name}}
			groups[name] = g
		}
		g.row.Opened++
		if done := rectifiedAt(t); done != nil {
			g.row.Rectified++
			if done.After(t.Deadline) {
				g.row.Overdue++
			} else {
				g.row.RectifiedOnTime++
			}
			g.hours = append(g.hours, done.Sub(t.OpenedAt).Hours())
		} else if now.After(t.Deadline) {
			g.row.Overdue++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rows := make([]RankingRow, 0, len(groups))
	for _, g := range groups {
		r := g.row
		if r.Opened > 0 {
			r.OnTimeRate = round(float64(r.RectifiedOnTime)/float64(r.Opened), 4)
		}
		if len(g.hours) > 0 {
			m := round(median(g.hours), 2)
			r.MedianHoursToRectify = &m
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b RankingRow) int {
		if c := cmp.Compare(b.OnTimeRate, a.OnTimeRate); c != 0 {
			return c
		}
		switch {
		case a.MedianHoursToRectify != nil && b.MedianHoursToRectify == nil:
			return -1
		case a.MedianHoursToRectify == nil && b.MedianHoursToRectify != nil:
			return 1
		case a.MedianHoursToRectify != nil:
			if c := cmp.Compare(*a.MedianHoursToRectify, *b.MedianHoursToRectify); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(b.Opened, a.Opened); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i := range rows {
		rows[i].Rank = i + 1
	}
	return rows, nil
}

// rectifiedAt is when t's problem was dealt with, for the ranking: its
// rectified_at, or for a ticket that closed itself because its condition
// cleared (the bin was emptied) its closed_at; nil while it is pending.
func rectifiedAt(t Ticket) *time.Time {
	if t.RectifiedAt != nil {
		return t.RectifiedAt
	}
	if t.Status == StatusClosed {
		return t.ClosedAt
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func round(x float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(x*p) / p
}

// WriteRankingTable writes rows as an aligned text table (for `sanitel
// report`), counting East Asian wide characters as two columns.
func WriteRankingTable(w io.Writer, rows []RankingRow, month, by string) error {
	head := []string{"rank", "name", "opened", "rectified", "on_time", "overdue", "on_time_rate", "median_h"}
	table := [][]string{head}
	for _, r := range rows {
		med := "-"
		if r.MedianHoursToRectify != nil {
			med = strconv.FormatFloat(*r.MedianHoursToRectify, 'f', 2, 64)
		}
		table = append(table, []string{
			strconv.Itoa(r.Rank), r.Name, strconv.Itoa(r.Opened), strconv.Itoa(r.Rectified),
			strconv.Itoa(r.RectifiedOnTime), strconv.Itoa(r.Overdue),
			strconv.FormatFloat(r.OnTimeRate*100, 'f', 2, 64) + "%", med,
		})
	}
	widths := make([]int, len(head))
	for _, row := range table {
		for i, c := range row {
			widths[i] = max(widths[i], DisplayWidth(c))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Ranking %s by %s\n", month, by)
	for ri, row := range table {
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-DisplayWidth(c))
			if i > 0 {
				b.WriteString("  ")
			}
			switch {
			case i == 1: // names left-aligned, no trailing blanks on the last column
				b.WriteString(c)
				b.WriteString(pad)
			default:
				b.WriteString(pad)
				b.WriteString(c)
			}
		}
		b.WriteByte('\n')
		if ri == 0 {
			total := 2 * (len(widths) - 1)
			for _, wd := range widths {
				total += wd
			}
			b.WriteString(strings.Repeat("-", total))
			b.WriteByte('\n')
		}
	}
	if len(rows) == 0 {
		b.WriteString("(no tickets opened)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DisplayWidth is how many terminal columns s takes: East Asian wide and
// fullwidth characters take two, combining marks and control characters none.
func DisplayWidth(s string) int {
	n := 0
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		n += runeWidth(r)
	}
	return n
}

func runeWidth(r rune) int {
	switch {
	case r == 0 || r < 0x20 || (r >= 0x7f && r < 0xa0):
		return 0
	case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || r == 0x200b:
		return 0
	case wide(r):
		return 2
	}
	return 1
}

// wideRanges are the East Asian Wide (W) and Fullwidth (F) blocks.
var wideRanges = [][2]rune{
	{0x1100, 0x115f}, // Hangul Jamo initials
	{0x231a, 0x231b}, // watch, hourglass
	{0x2329, 0x232a}, // angle brackets
	{0x23e9, 0x23ec},
	{0x23f0, 0x23f0},
	{0x23f3, 0x23f3},
	{0x25fd, 0x25fe},
	{0x2614, 0x2615},
	{0x2648, 0x2653},
	{0x267f, 0x267f},
	{0x2693, 0x2693},
	{0x26a1, 0x26a1},
	{0x26aa, 0x26ab},
	{0x26bd, 0x26be},
	{0x26c4, 0x26c5},
	{0x26ce, 0x26ce},
	{0x26d4, 0x26d4},
	{0x26ea, 0x26ea},
	{0x26f2, 0x26f3},
	{0x26f5, 0x26f5},
	{0x26fa, 0x26fa},
	{0x26fd, 0x26fd},
	{0x2705, 0x2705},
	{0x270a, 0x270b},
	{0x2728, 0x2728},
	{0x274c, 0x274c},
	{0x274e, 0x274e},
	{0x2753, 0x2755},
	{0x2757, 0x2757},
	{0x2795, 0x2797},
	{0x27b0, 0x27b0},
	{0x27bf, 0x27bf},
	{0x2b1b, 0x2b1c},
	{0x2b50, 0x2b50},
	{0x2b55, 0x2b55},
	{0x2e80, 0x303e}, // CJK radicals, Kangxi, CJK symbols and punctuation
	{0x3041, 0x33ff}, // Hiragana … CJK compatibility
	{0x3400, 0x4dbf}, // CJK extension A
	{0x4e00, 0x9fff}, // CJK unified ideographs
	{0xa000, 0xa4cf}, // Yi
	{0xa960, 0xa97f}, // Hangul Jamo extended A
	{0xac00, 0xd7a3}, // Hangul syllables
	{0xf900, 0xfaff}, // CJK compatibility ideographs
	{0xfe10, 0xfe19}, // vertical forms
	{0xfe30, 0xfe6f}, // CJK compatibility forms, small forms
	{0xff00, 0xff60}, // fullwidth forms
	{0xffe0, 0xffe6}, // fullwidth signs
	{0x16fe0, 0x16fe4},
	{0x17000, 0x18cff}, // Tangut
	{0x1b000, 0x1b2ff}, // Kana supplement
	{0x1f004, 0x1f004},
	{0x1f0cf, 0x1f0cf},
	{0x1f18e, 0x1f18e},
	{0x1f191, 0x1f19a},
	{0x1f200, 0x1f251}, // enclosed ideographic supplement
	{0x1f300, 0x1f64f}, // pictographs, emoticons
	{0x1f680, 0x1f6ff}, // transport and map symbols
	{0x1f900, 0x1f9ff}, // supplemental symbols and pictographs
	{0x1fa70, 0x1faff},
	{0x20000, 0x2fffd}, // CJK extensions B…
	{0x30000, 0x3fffd}, // CJK extension G…
}

func wide(r rune) bool {
	if r < 0x1100 {
		return false
	}
	_, found := slices.BinarySearchFunc(wideRanges, r, func(rg [2]rune, r rune) int {
		switch {
		case rg[1] < r:
			return -1
		case rg[0] > r:
			return 1
		}
		return 0
	})
	return found
}

package alerting

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/internal/testenv"

	"github.com/sanitel/sanitel/internal/duration"
)

// TestShippedRulesFile: configs/rules.yaml, the copy users read and start
// from, parses to exactly the embedded defaults.
func TestShippedRulesFile(t *testing.T) {
	defs, err := LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := LoadRules(filepath.Join("..", "configs", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shipped, defs) {
		t.Fatal("configs/rules.yaml and alerting/rules.yaml differ: copy one over the other")
	}
	// Read on its own (no defaults underneath), it is the defaults too.
	data, err := os.ReadFile(filepath.Join("..", "configs", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	alone, _, err := parseFile(data, "configs/rules.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := merge(nil, alone, true); !reflect.DeepEqual(got, defs) {
		t.Fatal("configs/rules.yaml alone is not the defaults")
	}
}

// summary renders a rule in one line, for comparing with contract §7.
func summary(r Rule) string {
	var b strings.Builder
	kinds := make([]string, len(r.Kinds))
	for i, k := range r.Kinds {
		kinds[i] = k.String()
	}
	fmt.Fprintf(&b, "%s %s:", r.Name, strings.Join(kinds, ","))
	if r.Type == TypeNoData {
		fmt.Fprintf(&b, " no_data %d×interval default %s %s", r.Intervals, duration.Format(r.DefaultAfter), r.Severity)
	} else {
		fmt.Fprintf(&b, " %s %s", r.Field, r.Op)
		keys := make([]string, 0, len(r.Thresholds))
		for k := range r.Thresholds {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if r.By != AttrNone {
			fmt.Fprintf(&b, " by %s (fallback %s)", r.By, r.Fallback)
		}
		for _, k := range keys {
			lv := r.Thresholds[k]
			if k != "" {
				fmt.Fprintf(&b, " [%s]", k)
			}
			for _, l := range []struct {
				n string
				b *Bound
			}{{"warning", lv.Warning}, {"critical", lv.Critical}} {
				if l.b != nil {
					fmt.Fprintf(&b, " %s %s", l.n, describeBound(r.Op, *l.b))
				}
			}
			if lv.Clear != nil {
				fmt.Fprintf(&b, " clear %s", lv.Clear.describe())
			}
		}
		if len(r.Events) > 0 {
			fmt.Fprintf(&b, " events %v", r.Events)
		}
		if r.For > 0 {
			fmt.Fprintf(&b, " for %s", duration.Format(r.For))
		}
		if r.ClearFor > 0 {
			fmt.Fprintf(&b, " clear_for %s", duration.Format(r.ClearFor))
		}
	}
	w, c := r.severities()
	if w {
		fmt.Fprintf(&b, " deadline warning %s", duration.Format(r.Deadline.Warning))
	}
	if c {
		fmt.Fprintf(&b, " deadline critical %s", duration.Format(r.Deadline.Critical))
	}
	if r.AutoClose {
		b.WriteString(" auto_close")
	}
	return b.String()
}

// TestDefaultsAreTheContract pins the shipped rules to contract §7.
func TestDefaultsAreTheContract(t *testing.T) {
	rules, err := LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin_full bin: fill_pct >= warning ≥ 80 critical ≥ 90 clear < 60 deadline warning 4h deadline critical 2h auto_close",
		"bin_fire bin: temp_c >= critical ≥ 60 clear < 45 events [fire] deadline critical 1h",
		"bin_tipped bin: tilt_deg >= warning ≥ 45 clear < 20 for 5m deadline warning 4h auto_close",
		"toilet_ammonia toilet: nh3_mgm3 > by toilet_class (fallback 2) [1] warning > 0.3 [2] warning > 1 [3] warning > 3 for 10m clear_for 10m deadline warning 1d",
		"toilet_h2s toilet: h2s_mgm3 > warning > 0.01 for 10m clear_for 10m deadline warning 1d",
		"toilet_leak toilet: flow_lpm > warning > 0.5 for 2h deadline warning 1d",
		"rural_tank_full rural_toilet: tank_level_pct >= warning ≥ 85 clear < 30 deadline warning 3d",
		"water_ph water: ph outside warning outside 6.5–8.5 for 15m clear_for 15m deadline warning 1d",
		"water_turbidity water: turbidity_ntu > by supply (fallback centralized) [centralized] warning > 1 [small] warning > 3 for 15m deadline warning 1d",
		"water_chlorine_low water: chlorine_mgl < warning < 0.05 for 30m deadline warning 1d",
		"water_chlorine_high water: chlorine_mgl > warning > 2 for 30m deadline warning 1d",
		"device_offline bin,toilet,rural_toilet,water: no_data 3×interval default 30m warning deadline warning 2d auto_close",
		"battery_low bin,rural_toilet: battery_pct <= warning ≤ 20 clear >= 30 deadline warning 7d auto_close",
	}
	var got []string
	for _, r := range rules {
		got = append(got, summary(r))
		if r.Title == "" || r.Requirement == "" {
			t.Errorf("%s: no title or requirement", r.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("defaults:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOverrideByName(t *testing.T) {
	rules, err := ParseRules([]byte(`
rules:
  - name: bin_smoke          # new: added after the shipped rules
    kind: bin
    field: temp_c
    op: ">="
    warning: 50
    events: [smoke]
    title: 垃圾桶冒烟
    requirement: 到场查看
    deadline: 2h
  - name: bin_full           # replaces the shipped one, in place
    kind: bin
    field: fill_pct
    op: ">="
    warning: 75
    title: 垃圾桶满
    requirement: 清运
    deadline: 3h
  - name: battery_low        # disabled
    enabled: false
  - name: toilet_leak        # disabled, but given whole: still checked
    enabled: false
    kind: toilet
    field: flow_lpm
    op: ">"
    warning: 0.5
    title: 漏水
    requirement: 维修
    deadline: 1d
`), "local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
	}
	want := []string{"bin_full", "bin_fire", "bin_tipped", "toilet_ammonia", "toilet_h2s", "rural_tank_full",
		"water_ph", "water_turbidity", "water_chlorine_low", "water_chlorine_high", "device_offline", "bin_smoke"}
	if !slices.Equal(names, want) {
		t.Fatalf("rules %v\nwant %v", names, want)
	}
	if got := summary(rules[0]); got != "bin_full bin: fill_pct >= warning ≥ 75 deadline warning 3h" {
		t.Errorf("replaced rule: %s (a replacement takes nothing from the shipped rule)", got)
	}

	only, err := ParseRules([]byte(`
include_defaults: false
rules:
  - name: silent
    type: no_data
    intervals: 2
    severity: critical
    title: 离线
    requirement: 检查
    deadline: 1h
`), "only.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(only) != 1 || summary(only[0]) != "silent bin,toilet,rural_toilet,water: no_data 2×interval default 0s critical deadline critical 1h" {
		t.Fatalf("include_defaults: false: %v", only)
	}

	// The kind defaults to every kind that has the field.
	any, err := ParseRules([]byte(`
include_defaults: false
rules:
  - name: hot
    field: temp_c
    op: ">"
    warning: 50
    title: t
    requirement: r
    deadline: 1h
`), "x")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(any[0].Kinds, []devices.Kind{devices.KindBin, devices.KindToilet, devices.KindWater}) {
		t.Errorf("kinds %v", any[0].Kinds)
	}
}

func TestLoadRulesMissingFile(t *testing.T) {
	_, err := LoadRules(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestBadRules loads every testdata/*.bad.yaml; its "# want:" lines are
// substrings the error must contain, its "# not:" lines ones it must not.
func TestBadRules(t *testing.T) {
	testenv.BadFiles(t, "testdata/*.bad.yaml", ".bad.yaml", 30, func(file string) error {
		_, err := LoadRules(file)
		return err
	})
}

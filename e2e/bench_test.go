package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sanitel/sanitel/internal/testenv"
)

// TestBenchScript runs scripts/bench.sh at a small size, as the README tells
// a user to, with the servers the test script provides, and checks its table:
// every run present, every message accepted, nothing lost, the ratio lines
// printed. It asserts nothing about speed: figures come from the script
// itself, never from a test.
func TestBenchScript(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := os.Environ()
	for _, name := range []string{"mosquitto", "influxd"} {
		p, err := testenv.Binary(name)
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, "SANITEL_TEST_"+strings.ToUpper(name)+"="+p)
	}
	const messages, live = 20000, 2000 * 3
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "bench.sh"))
	cmd.Dir = root
	cmd.Env = append(env, "BENCH_DEVICES=1000", "BENCH_MESSAGES="+strconv.Itoa(messages),
		"BENCH_RATE=2000", "BENCH_SECONDS=3", "BENCH_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/bench.sh: %v\n%s", err, tail(string(out), 4000))
	}

	rows := map[string][]string{}
	var ratios []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 11 && (f[0] == "ceiling" || f[0] == "sanitel"):
			rows[f[0]+" "+f[1]] = f[2:]
		case strings.Contains(line, "sanitel/ceiling") || strings.Contains(line, "(sanitel sink)/ceiling"):
			ratios = append(ratios, line)
		}
	}
	// Columns after the name: msg/s cpu/100k rss_MB lag_p50 lag_p99 tail_s influx_s accepted lost.
	want := map[string]int{"ceiling drain": messages, "sanitel drain": messages, "sanitel sink": messages,
		"ceiling live": live, "sanitel live": live}
	for name, n := range want {
		r, ok := rows[name]
		if !ok {
			t.Errorf("no %q row in the table:\n%s", name, tail(string(out), 4000))
			continue
		}
		if rate, err := strconv.ParseFloat(r[0], 64); err != nil || rate <= 0 {
			t.Errorf("%s: msg/s %q", name, r[0])
		}
		if r[7] != strconv.Itoa(n) {
			t.Errorf("%s: accepted %s, want %d", name, r[7], n)
		}
		if strings.HasPrefix(name, "sanitel") {
			if r[8] != "0" {
				t.Errorf("%s: lost %s, want 0", name, r[8])
			}
			if cpu, err := strconv.ParseFloat(r[1], 64); err != nil || cpu <= 0 {
				t.Errorf("%s: cpu/100k %q", name, r[1])
			}
		}
	}
	if len(ratios) != 4 {
		t.Errorf("want 4 ratio lines, got %d: %q", len(ratios), ratios)
	}
}

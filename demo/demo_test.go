package demo

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClearPrevious removes what a run leaves and nothing else.
func TestClearPrevious(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"tickets.db", "tickets.db-wal", "devices.csv", "sanitel.yaml", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"spool", "alerting", "mine"} {
		if err := os.MkdirAll(filepath.Join(dir, d, "inner"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	found, err := clearPrevious(dir)
	if err != nil || !found {
		t.Fatalf("clearPrevious = %v, %v; want true, nil", found, err)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "mine" || names[1] != "notes.txt" {
		t.Errorf("left in the directory: %v, want [mine notes.txt]", names)
	}
	if found, err := clearPrevious(dir); err != nil || found {
		t.Errorf("second clearPrevious = %v, %v; want false, nil", found, err)
	}
}

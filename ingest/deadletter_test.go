package ingest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDeadLettersSaveLoad: what a restart reads back is what was listed,
// in order, and a store smaller than the file keeps the newest.
func TestDeadLettersSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejected.json")
	d := NewDeadLetters(10)
	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	for i := range 4 {
		d.Add(at.Add(time.Duration(i)*time.Second), fmt.Sprintf("t/%d", i), "unknown_device", "no such device", []byte(`{"fill_pct":1}`))
	}
	if err := d.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	back := NewDeadLetters(10)
	if err := back.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back.List()) != fmt.Sprint(d.List()) || back.Total() != 4 {
		t.Fatalf("loaded %+v (total %d), saved %+v", back.List(), back.Total(), d.List())
	}
	back.Add(at.Add(time.Minute), "t/new", "bad_json", "", nil)
	if l := back.List(); len(l) != 5 || l[0].Topic != "t/new" || l[1].Topic != "t/3" {
		t.Errorf("after a new one: %+v", l)
	}

	small := NewDeadLetters(2)
	if err := small.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if l := small.List(); len(l) != 2 || l[0].Topic != "t/3" || l[1].Topic != "t/2" || small.Total() != 4 {
		t.Errorf("a store of 2 loaded %+v (total %d), want t/3, t/2 of 4", l, small.Total())
	}

	// Nothing new: no write (the file's time does not move).
	fi, _ := os.Stat(path)
	time.Sleep(10 * time.Millisecond)
	if err := d.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("SaveFile rewrote an unchanged store")
	}
	if err := NewDeadLetters(1).LoadFile(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

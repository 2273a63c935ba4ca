package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanitel/sanitel/config"
)

// TestNewFailsCleanly checks that a start-up step failing after the spool is
// open (here: a ticket database that is not one) is returned as an error
// naming it, with what was opened closed again, not a panic.
func TestNewFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	registry := filepath.Join(dir, "devices.yaml")
	if err := os.WriteFile(registry, []byte("devices:\n  - {id: bin-1, kind: bin}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(dir, "tickets.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Devices.Registry = registry
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Alerting.StateDir = filepath.Join(dir, "alerting")
	cfg.Tickets.DSN = notDB
	cfg.HTTP.Listen = "127.0.0.1:0"

	s, err := New(cfg, Options{})
	if err == nil {
		s.close()
		t.Fatal("New with a file that is not a database as the ticket store: no error")
	}
	if !strings.Contains(err.Error(), "tickets.dsn") {
		t.Errorf("error %q does not name tickets.dsn", err)
	}
	// The spool was closed: it opens again.
	cfg.Tickets.DSN = filepath.Join(dir, "tickets-ok.db")
	s, err = New(cfg, Options{})
	if err != nil {
		t.Fatalf("New after a failed start: %v", err)
	}
	s.close()
}

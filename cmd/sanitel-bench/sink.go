package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// sink answers InfluxDB's write API and keeps nothing but a tally: the lines
// received and the distinct points among them (series key and timestamp).
// scripts/bench.sh points sanitel at it to measure sanitel's drain when
// InfluxDB runs on another machine: on the benchmark's two cores a real
// InfluxDB 1.8 needs about as much CPU for the points as sanitel does for
// the messages, and the three processes share the cores.
type sink struct {
	seed maphash.Seed
	only map[string]bool // measurements tallied; nil: all

	mu       sync.Mutex
	lines    int64
	requests int64
	seen     map[uint64]struct{}
}

func newSink(measurements []string) *sink {
	k := &sink{seed: maphash.MakeSeed(), seen: make(map[uint64]struct{}, 1<<20)}
	for _, m := range measurements {
		if k.only == nil {
			k.only = make(map[string]bool)
		}
		k.only[m] = true
	}
	return k
}

func (k *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v2/write" && r.URL.Path != "/write" {
		// /ping, /health, /query (CREATE DATABASE): the answers a client
		// checking for a live InfluxDB expects.
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var keys []uint64
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' || k.only != nil && !k.only[string(measurement(line))] {
			continue
		}
		keys = append(keys, maphash.Bytes(k.seed, pointKey(line)))
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	k.requests++
	k.lines += int64(len(keys))
	for _, h := range keys {
		k.seen[h] = struct{}{}
	}
	k.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// measurement is a line's measurement name, escapes kept.
func measurement(line []byte) []byte {
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case ',', ' ':
			return line[:i]
		}
	}
	return line
}

// pointKey is a line's series key and timestamp: the fields cut out, so a
// rewrite of the same point is one point, as in InfluxDB.
func pointKey(line []byte) []byte {
	end := -1 // the series key ends at the first space not escaped
	for i := 0; i < len(line); i++ {
		if line[i] == '\\' {
			i++
			continue
		}
		if line[i] == ' ' {
			end = i
			break
		}
	}
	ts := bytes.LastIndexByte(line, ' ')
	if end < 0 || ts <= end {
		return line
	}
	key := make([]byte, 0, end+len(line)-ts)
	return append(append(key, line[:end]...), line[ts:]...)
}

// serveSink serves until ctx ends (SIGTERM, SIGINT) and then writes one line:
// requests, lines and distinct points (of the given measurements, or all), its CPU time in clock ticks and its peak
// RSS in MB.
func serveSink(ctx context.Context, stdout io.Writer, addr, out string, measurements []string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	k := newSink(measurements)
	srv := &http.Server{Handler: k, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("sink: %w", err)
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sink: %w", err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	ticks := (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())) / (10 * time.Millisecond)
	k.mu.Lock()
	tally := fmt.Sprintf("requests %d lines %d points %d cpu_ticks %d rss_mb %d\n",
		k.requests, k.lines, len(k.seen), ticks, ru.Maxrss/1024)
	k.mu.Unlock()
	if out != "" {
		return os.WriteFile(out, []byte(tally), 0o644)
	}
	_, err = io.WriteString(stdout, tally)
	return err
}

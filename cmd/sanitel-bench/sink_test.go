package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPointKey(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{`bin,device_id=b1,street=城南街道 fill_level=80,battery=3.6 1700000000000`, `bin,device_id=b1,street=城南街道 1700000000000`},
		{`event,device_id=t\ 1,type=door detail="a b c",count=1 1700000000000`, `event,device_id=t\ 1,type=door 1700000000000`},
		{`no-timestamp`, `no-timestamp`},
	} {
		if got := string(pointKey([]byte(c.line))); got != c.want {
			t.Errorf("pointKey(%q) = %q, want %q", c.line, got, c.want)
		}
	}
}

func TestSinkCountsDistinctPoints(t *testing.T) {
	k := newSink([]string{"bin"})
	srv := httptest.NewServer(k)
	defer srv.Close()
	body := "bin,device_id=b1 fill_level=1 1000\nbin,device_id=b1 fill_level=2 1000\nbin,device_id=b2 fill_level=1 1000\n\nbin,device_id=b1 fill_level=1 2000\ndevice_state,kind=bin online=1 2000\n"
	for range 2 {
		resp, err := http.Post(srv.URL+"/api/v2/write?bucket=x&precision=ms", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("write: %s", resp.Status)
		}
	}
	resp, err := http.Get(srv.URL + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("ping: %s", resp.Status)
	}
	if k.requests != 2 || k.lines != 8 || len(k.seen) != 3 {
		t.Fatalf("requests %d lines %d points %d, want 2, 8, 3", k.requests, k.lines, len(k.seen))
	}
}

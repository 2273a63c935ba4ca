package service

import "testing"

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:8086":         true,
		"http://127.1.2.3:8086":         true,
		"http://localhost:8086/":        true,
		"http://[::1]:8086":             true,
		"https://influx.example:8086":   false,
		"http://10.0.0.5:8086":          false,
		"http://localhost.example:8086": false,
		"::not a url":                   false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}

package config

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoad loads arbitrary bytes as a configuration file. Its seeds are the
// shipped example, the bad configs of testdata and a config full of
// secrets, so every `go test` runs them; inputs the fuzzer found are in
// testdata/fuzz/FuzzLoad.
//
// Whatever the input: no panic; errors are valid UTF-8 text; a config that
// loads without error validates, and its effective (masked) form shows no
// secret and loads back as the same config when it holds none.
func FuzzLoad(f *testing.F) {
	clearEnv(f)
	seeds, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(seeds, exampleConfig) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(secretConfig))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("mqtt: &m {qos: 1}\ninflux: {<<: *m}\n"))
	f.Add([]byte("http: {tokens: [1, {name: [x]}, null]}\n"))
	// Relative paths of the example (devices.yaml, rules.yaml) resolve
	// against configs/, so the example loads cleanly.
	dir, err := filepath.Abs(filepath.Dir(exampleConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &loader{failed: make(map[string]bool)}
		cfg, err := l.load(data, dir)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error is not UTF-8: %q", err.Error())
			}
			return
		}
		for _, e := range l.errs {
			if msg := e.Error(); !utf8.ValidString(msg) || msg == "" {
				t.Fatalf("error %q", msg)
			}
		}
		if len(l.errs) > 0 {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded without error, but Validate says: %v", err)
		}
		var out bytes.Buffer
		if err := cfg.WriteMasked(&out); err != nil {
			t.Fatalf("WriteMasked: %v", err)
		}
		// The masked output does not depend on the secrets' values.
		other := withSecrets(cfg, "another-secret-value")
		var otherOut bytes.Buffer
		if err := other.WriteMasked(&otherOut); err != nil {
			t.Fatalf("WriteMasked: %v", err)
		}
		if out.String() != otherOut.String() {
			t.Fatalf("masked output depends on the secrets:\n%s\nwith other secrets:\n%s", out.String(), otherOut.String())
		}
		checkMaskedURLs(t, cfg)
		if !reflect.DeepEqual(withSecrets(cfg, ""), cfg) {
			return // secrets print as ***, so the output is not the same config
		}
		// The effective config is a fixed point: loaded back, it prints
		// the same.
		l = &loader{failed: make(map[string]bool)}
		back, err := l.load(out.Bytes(), dir)
		var again bytes.Buffer
		if err == nil && len(l.errs) == 0 {
			err = back.WriteMasked(&again)
		} else if err == nil {
			err = errors.Join(l.errs...)
		}
		if err != nil || again.String() != out.String() {
			t.Fatalf("effective config does not load back (%v):\n%s\ngives:\n%s", err, out.String(), again.String())
		}
	})
}

// withSecrets returns a copy of c with every non-empty secret value set
// to s.
func withSecrets(c *Config, s string) *Config {
	m := *c
	set := func(p *string) {
		if *p != "" {
			*p = s
		}
	}
	set(&m.MQTT.Password)
	set(&m.Influx.Token)
	m.HTTP.Tokens = append([]HTTPToken(nil), c.HTTP.Tokens...)
	for i := range m.HTTP.Tokens {
		set(&m.HTTP.Tokens[i].Token)
	}
	m.Tickets.Notify.Webhooks = append([]Webhook(nil), c.Tickets.Notify.Webhooks...)
	for i := range m.Tickets.Notify.Webhooks {
		set(&m.Tickets.Notify.Webhooks[i].Secret)
	}
	if c.HTTP.Tokens == nil {
		m.HTTP.Tokens = nil
	}
	if c.Tickets.Notify.Webhooks == nil {
		m.Tickets.Notify.Webhooks = nil
	}
	return &m
}

// checkMaskedURLs checks that no URL of c keeps a password once masked,
// as net/url reads the URL.
func checkMaskedURLs(t *testing.T, c *Config) {
	t.Helper()
	m := c.Masked()
	pairs := [][2]string{{c.MQTT.Broker, m.MQTT.Broker}, {c.Influx.URL, m.Influx.URL}, {c.Tickets.DSN, m.Tickets.DSN}}
	for i, w := range c.Tickets.Notify.Webhooks {
		pairs = append(pairs, [2]string{w.URL, m.Tickets.Notify.Webhooks[i].URL})
	}
	for _, p := range pairs {
		u, err := url.Parse(p[0])
		if err != nil || u.User == nil {
			continue
		}
		if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(p[1], pw) && !strings.Contains(Mask, pw) {
			if mu, err := url.Parse(p[1]); err != nil || mu.User == nil || mu.User.String() != Mask {
				t.Fatalf("masked URL %q still holds the password of %q", p[1], p[0])
			}
		}
	}
}

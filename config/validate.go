package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sanitel/sanitel/internal/duration"
)

// Limits checked by Validate.
const (
	MinTokenLen    = 16     // characters of an HTTP bearer token
	MaxBatchSize   = 100000 // points in one InfluxDB write
	minSpoolBytes  = miB    // spool.max_bytes and spool.segment_bytes
	maxCommitDelay = time.Second
)

var (
	brokerSchemes   = []string{"tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss"}
	tlsSchemes      = []string{"ssl", "tls", "mqtts", "wss"}
	httpSchemes     = []string{"http", "https"}
	roles           = []string{RoleViewer, RoleUnit, RoleSupervisor, RoleAdmin}
	ticketEvents    = []string{EventOpen, EventEscalate, EventClose}
	logLevels       = []string{"debug", "info", "warn", "error"}
	logFormats      = []string{"text", "json"}
	unknownPolicies = []string{UnknownReject, UnknownAccept}
)

// Validate checks every value of c and reports every problem, joined with
// errors.Join, each as "key: reason". It checks that TLS files exist but
// reads no secret file: Load has read them into their secrets already.
func (c *Config) Validate() error {
	errs := c.validate()
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// ValidateServe reports what `sanitel serve` needs beyond Validate: a
// device registry.
func (c *Config) ValidateServe() error {
	if c.Devices.Registry == "" {
		return &fieldError{key: "devices.registry", msg: "required for serve"}
	}
	return nil
}

// checker gathers problems, never echoing a secret.
type checker struct{ errs []*fieldError }

func (v *checker) add(key, format string, args ...any) {
	v.errs = append(v.errs, &fieldError{key: key, msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() []*fieldError {
	var v checker
	c.MQTT.validate(&v)
	c.Influx.validate(&v)
	c.Spool.validate(&v)
	c.Devices.validate(&v)
	c.Alerting.validate(&v)
	c.Tickets.validate(&v)
	c.HTTP.validate(&v)
	v.oneOf("log.level", c.Log.Level, logLevels)
	v.oneOf("log.format", c.Log.Format, logFormats)
	return v.errs
}

func (m *MQTT) validate(v *checker) {
	scheme := v.url("mqtt.broker", m.Broker, brokerSchemes, "tcp://127.0.0.1:1883")
	// The broker URL is logged; credentials belong in their own keys,
	// which are masked.
	v.noUserinfo("mqtt.broker", m.Broker, "mqtt.username and mqtt.password (or mqtt.password_file)")
	if m.ClientID == "" {
		v.add("mqtt.client_id", "required")
	}
	if m.Password != "" && m.Username == "" {
		v.add("mqtt.password", "set without mqtt.username (MQTT sends no password without a user name)")
	}
	if m.QoS < 0 || m.QoS > 2 {
		v.add("mqtt.qos", "must be 0, 1 or 2, got %d", m.QoS)
	}
	if strings.ContainsAny(m.SharedGroup, "/+#") {
		v.add("mqtt.shared_group", "must not contain '/', '+' or '#', got %q", m.SharedGroup)
	}
	v.topicRoot("mqtt.topic_root", m.TopicRoot)
	if m.ChirpStackTopic != "" {
		v.topicFilter("mqtt.chirpstack_topic", m.ChirpStackTopic)
	}
	switch {
	case m.KeepAlive < 0 || m.KeepAlive > math.MaxUint16*time.Second:
		v.add("mqtt.keep_alive", "must be between 0 (off) and %s, got %s", duration.Format(math.MaxUint16*time.Second), duration.Format(m.KeepAlive))
	case m.KeepAlive%time.Second != 0:
		v.add("mqtt.keep_alive", "must be a whole number of seconds, got %s", duration.Format(m.KeepAlive))
	}
	v.positive("mqtt.connect_timeout", m.ConnectTimeout)
	if m.MaxInflight < 1 || m.MaxInflight > math.MaxUint16 {
		v.add("mqtt.max_inflight", "must be between 1 and %d, got %d", math.MaxUint16, m.MaxInflight)
	}

	t := m.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		v.add("mqtt.tls.key_file", "required when mqtt.tls.cert_file is set")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		v.add("mqtt.tls.cert_file", "required when mqtt.tls.key_file is set")
	}
	v.file("mqtt.tls.ca_file", t.CAFile)
	v.file("mqtt.tls.cert_file", t.CertFile)
	v.file("mqtt.tls.key_file", t.KeyFile)
	if t.Enabled() && scheme != "" && !slices.Contains(tlsSchemes, scheme) {
		v.add("mqtt.tls", "set, but broker scheme %q does not use TLS; use one of %s", scheme, strings.Join(tlsSchemes, ", "))
	}
}

func (in *Influx) validate(v *checker) {
	if in.URL != "" {
		v.url("influx.url", in.URL, httpSchemes, "http://127.0.0.1:8086")
		v.noUserinfo("influx.url", in.URL, "influx.token (user:password for InfluxDB 1.8)")
	}
	if in.Bucket == "" {
		v.add("influx.bucket", "required")
	}
	if in.BatchSize < 1 || in.BatchSize > MaxBatchSize {
		v.add("influx.batch_size", "must be between 1 and %d, got %d", MaxBatchSize, in.BatchSize)
	}
	v.positive("influx.flush_interval", in.FlushInterval)
	v.positive("influx.timeout", in.Timeout)
	v.positive("influx.max_retry_interval", in.MaxRetryInterval)
}

func (s *Spool) validate(v *checker) {
	if s.Dir == "" {
		v.add("spool.dir", "required")
	}
	if s.MaxBytes < minSpoolBytes {
		v.add("spool.max_bytes", "must be at least %s, got %s", FormatByteSize(minSpoolBytes), FormatByteSize(s.MaxBytes))
	}
	switch {
	case s.SegmentBytes < minSpoolBytes:
		v.add("spool.segment_bytes", "must be at least %s, got %s", FormatByteSize(minSpoolBytes), FormatByteSize(s.SegmentBytes))
	case s.SegmentBytes > s.MaxBytes && s.MaxBytes >= minSpoolBytes:
		v.add("spool.segment_bytes", "must be at most spool.max_bytes (%s), got %s", FormatByteSize(s.MaxBytes), FormatByteSize(s.SegmentBytes))
	}
	if s.CommitInterval < 0 || s.CommitInterval > maxCommitDelay {
		v.add("spool.commit_interval", "must be between 0 and %s, got %s", duration.Format(maxCommitDelay), duration.Format(s.CommitInterval))
	}
}

func (d *Devices) validate(v *checker) {
	v.extension("devices.registry", d.Registry, ".yaml", ".yml", ".csv")
	v.oneOf("devices.unknown", d.Unknown, unknownPolicies)
	if d.MaxPayloadBytes < kiB || d.MaxPayloadBytes > 16*miB {
		v.add("devices.max_payload_bytes", "must be between 1KiB and 16MiB, got %s", FormatByteSize(d.MaxPayloadBytes))
	}
	v.positive("devices.accept_window", d.AcceptWindow)
	if d.MaxFuture < 0 {
		v.add("devices.max_future", "must not be negative, got %s", duration.Format(d.MaxFuture))
	}
	if t := d.ReferenceTempC; math.IsNaN(t) || t < -50 || t > 100 {
		v.add("devices.reference_temp_c", "must be between -50 and 100 (°C), got %v", t)
	}
}

func (a *Alerting) validate(v *checker) {
	v.extension("alerting.rules", a.Rules, ".yaml", ".yml")
	if a.StateDir == "" {
		v.add("alerting.state_dir", "required")
	}
}

func (t *Tickets) validate(v *checker) {
	switch dsn := t.DSN; {
	case dsn == "":
		v.add("tickets.dsn", "required: a SQLite file path, a file: URI or a postgres:// URL")
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		if _, err := url.Parse(dsn); err != nil {
			v.add("tickets.dsn", "not a valid URL: %v", urlErr(err))
		}
	case strings.Contains(dsn, "://") && !strings.HasPrefix(dsn, "file:"):
		scheme, _, _ := strings.Cut(dsn, "://")
		v.add("tickets.dsn", "unsupported scheme %q: use a SQLite file path, a file: URI or a postgres:// URL", truncate(scheme, 20))
	}
	if t.Timezone == "" {
		v.add("tickets.timezone", "required, e.g. \"Asia/Shanghai\"")
	} else if _, err := time.LoadLocation(t.Timezone); err != nil {
		v.add("tickets.timezone", "unknown time zone %q", truncate(t.Timezone, 60))
	}
	v.positive("tickets.escalation_check", t.EscalationCheck)
	for i, w := range t.Notify.Webhooks {
		key := fmt.Sprintf("tickets.notify.webhooks[%d]", i)
		if w.URL == "" {
			v.add(key+".url", "required")
		} else {
			v.url(key+".url", w.URL, httpSchemes, "https://example.org/hook")
		}
		seen := map[string]bool{}
		for j, e := range w.Events {
			switch {
			case !slices.Contains(ticketEvents, e):
				v.add(fmt.Sprintf("%s.events[%d]", key, j), "must be one of %s, got %q", strings.Join(ticketEvents, ", "), truncate(e, 40))
			case seen[e]:
				v.add(fmt.Sprintf("%s.events[%d]", key, j), "%q listed twice", e)
			}
			seen[e] = true
		}
		v.positive(key+".timeout", w.Timeout)
	}
}

func (h *HTTP) validate(v *checker) {
	v.listen("http.listen", h.Listen)
	if h.MaxBodyBytes < kiB || h.MaxBodyBytes > giB {
		v.add("http.max_body_bytes", "must be between 1KiB and 1GiB, got %s", FormatByteSize(h.MaxBodyBytes))
	}
	names := map[string]int{}
	tokens := map[string]int{}
	for i, t := range h.Tokens {
		key := fmt.Sprintf("http.tokens[%d]", i)
		if t.Name == "" {
			v.add(key+".name", "required")
		} else if j, dup := names[t.Name]; dup {
			v.add(key+".name", "%q already names http.tokens[%d]", t.Name, j)
		} else {
			names[t.Name] = i
		}
		v.oneOf(key+".role", t.Role, roles)
		switch {
		case t.Role == RoleUnit && t.OrgUnit == "":
			v.add(key+".org_unit", "required for role %q", RoleUnit)
		case t.Role != RoleUnit && t.OrgUnit != "":
			v.add(key+".org_unit", "only for role %q, not %q", RoleUnit, t.Role)
		}
		switch n := utf8.RuneCountInString(t.Token); {
		case t.Token == "":
			v.add(key+".token", "required: set token or token_file")
		case n < MinTokenLen:
			v.add(key+".token", "must be at least %d characters, got %d", MinTokenLen, n)
		case strings.IndexFunc(t.Token, unicode.IsSpace) >= 0:
			v.add(key+".token", "must not contain white space")
		default:
			if j, dup := tokens[t.Token]; dup {
				v.add(key+".token", "same token as http.tokens[%d]; each holder needs their own", j)
			} else {
				tokens[t.Token] = i
			}
		}
	}
}

func (v *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be positive, got %s", duration.Format(d))
	}
}

func (v *checker) oneOf(key, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), truncate(val, 40))
	}
}

func (v *checker) extension(key, path string, exts ...string) {
	if path == "" {
		return
	}
	if ext := strings.ToLower(filepath.Ext(path)); !slices.Contains(exts, ext) {
		v.add(key, "must be a %s file, got %q", strings.Join(exts, " or "), truncate(filepath.Base(path), 60))
	}
}

// file checks that a file the service will open exists.
func (v *checker) file(key, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		v.add(key, "%v", err)
	case !fi.Mode().IsRegular():
		v.add(key, "%s: not a regular file", path)
	}
}

// url checks a URL against the allowed schemes and returns its scheme.
// Messages show the URL with any user info masked.
func (v *checker) url(key, raw string, schemes []string, example string) string {
	if !strings.Contains(raw, "://") {
		v.add(key, "must be a URL such as %q, got %q", example, truncate(maskURL(raw), 80))
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		v.add(key, "not a valid URL: %v", urlErr(err))
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	if !slices.Contains(schemes, scheme) {
		v.add(key, "scheme must be one of %s, got %q", strings.Join(schemes, ", "), truncate(u.Scheme, 20))
		return ""
	}
	if u.Hostname() == "" {
		v.add(key, "has no host: %q", truncate(maskURL(raw), 80))
		return scheme
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.add(key, "port must be between 1 and 65535, got %q", truncate(p, 10))
		}
	}
	return scheme
}

// noUserinfo reports a URL that carries a user name or password; use
// names the keys to put them in instead.
func (v *checker) noUserinfo(key, raw, use string) {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		v.add(key, "must not carry credentials (%s); use %s", truncate(maskURL(raw), 80), use)
	}
}

// urlErr is the reason of a URL parse error without the URL, which may
// carry a password.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (v *checker) listen(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "must be host:port such as \"127.0.0.1:8080\" or \":8080\", got %q", truncate(addr, 60))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(key, "port must be between 0 and 65535, got %q", truncate(port, 10))
	}
	if strings.ContainsAny(host, " /") {
		v.add(key, "bad host %q", truncate(host, 60))
	}
}

// topicRoot checks the topic root: literal levels only.
func (v *checker) topicRoot(key, root string) {
	switch {
	case root == "":
		v.add(key, "required")
	case strings.ContainsAny(root, "+#"):
		v.add(key, "must not contain the wildcards '+' or '#', got %q", truncate(root, 60))
	case strings.HasPrefix(root, "$"):
		v.add(key, "must not start with '$' (reserved for the broker), got %q", truncate(root, 60))
	case slices.Contains(strings.Split(root, "/"), ""):
		v.add(key, "must not have empty levels (a leading, trailing or double '/'), got %q", truncate(root, 60))
	case strings.ContainsRune(root, 0) || !utf8.ValidString(root):
		v.add(key, "must be valid UTF-8 without NUL")
	}
}

// topicFilter checks an MQTT subscription filter.
func (v *checker) topicFilter(key, filter string) {
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			v.add(key, "'#' must be the last level, got %q", truncate(filter, 80))
			return
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			v.add(key, "a wildcard must be a whole level, got %q", truncate(filter, 80))
			return
		}
	}
	if strings.HasPrefix(filter, "$share/") {
		v.add(key, "must not be a shared subscription; set mqtt.shared_group instead")
	}
	if strings.ContainsRune(filter, 0) || !utf8.ValidString(filter) {
		v.add(key, "must be valid UTF-8 without NUL")
	}
}

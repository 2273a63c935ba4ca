package config

import (
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sanitel/sanitel/internal/duration"
)

// Masked returns a deep copy of c with every secret replaced by Mask:
// passwords, tokens, webhook secrets, the user info of URLs and DSNs, and
// URL query parameters that look like credentials (token, key, sign, …).
// Empty secrets stay empty, so the output still shows what is unset.
func (c *Config) Masked() *Config {
	m := *c
	m.MQTT = c.MQTT.masked()
	m.Influx = c.Influx.masked()
	m.Tickets = c.Tickets.masked()
	m.HTTP = c.HTTP.masked()
	return &m
}

// WriteMasked writes the configuration as YAML, with secrets masked as by
// Masked; the output loads back as the same configuration bar the secrets.
// `sanitel check-config` prints it.
func (c *Config) WriteMasked(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(yamlNode(reflect.ValueOf(c.Masked()).Elem())); err != nil {
		return err
	}
	return enc.Close()
}

// LogValue implements slog.LogValuer: the configuration as nested groups,
// secrets masked.
func (c Config) LogValue() slog.Value { return logValue(reflect.ValueOf(*c.Masked())) }

// LogValue implements slog.LogValuer with secrets masked.
func (m MQTT) LogValue() slog.Value { return logValue(reflect.ValueOf(m.masked())) }

// String renders m with secrets masked.
func (m MQTT) String() string { return m.LogValue().String() }

// LogValue implements slog.LogValuer with secrets masked.
func (in Influx) LogValue() slog.Value { return logValue(reflect.ValueOf(in.masked())) }

// String renders in with secrets masked.
func (in Influx) String() string { return in.LogValue().String() }

// LogValue implements slog.LogValuer with secrets masked.
func (t Tickets) LogValue() slog.Value { return logValue(reflect.ValueOf(t.masked())) }

// String renders t with secrets masked.
func (t Tickets) String() string { return t.LogValue().String() }

// LogValue implements slog.LogValuer with secrets masked.
func (n Notify) LogValue() slog.Value { return logValue(reflect.ValueOf(n.masked())) }

// LogValue implements slog.LogValuer with secrets masked.
func (w Webhook) LogValue() slog.Value { return logValue(reflect.ValueOf(w.masked())) }

// String renders w with secrets masked.
func (w Webhook) String() string { return w.LogValue().String() }

// LogValue implements slog.LogValuer with secrets masked.
func (h HTTP) LogValue() slog.Value { return logValue(reflect.ValueOf(h.masked())) }

// LogValue implements slog.LogValuer with secrets masked.
func (t HTTPToken) LogValue() slog.Value { return logValue(reflect.ValueOf(t.masked())) }

// String renders t with its token masked.
func (t HTTPToken) String() string { return t.LogValue().String() }

func (m MQTT) masked() MQTT {
	m.Broker = maskURL(m.Broker)
	m.Password = maskSecret(m.Password)
	return m
}

func (in Influx) masked() Influx {
	in.URL = maskURL(in.URL)
	in.Token = maskSecret(in.Token)
	return in
}

func (t Tickets) masked() Tickets {
	t.DSN = maskDSN(t.DSN)
	t.Notify = t.Notify.masked()
	return t
}

func (n Notify) masked() Notify {
	hooks := make([]Webhook, len(n.Webhooks))
	for i, w := range n.Webhooks {
		hooks[i] = w.masked()
	}
	if n.Webhooks == nil {
		hooks = nil
	}
	n.Webhooks = hooks
	return n
}

func (w Webhook) masked() Webhook {
	w.URL = maskURL(w.URL)
	w.Secret = maskSecret(w.Secret)
	w.Events = slices.Clone(w.Events)
	return w
}

func (h HTTP) masked() HTTP {
	tokens := make([]HTTPToken, len(h.Tokens))
	for i, t := range h.Tokens {
		tokens[i] = t.masked()
	}
	if h.Tokens == nil {
		tokens = nil
	}
	h.Tokens = tokens
	return h
}

func (t HTTPToken) masked() HTTPToken {
	t.Token = maskSecret(t.Token)
	return t
}

func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return Mask
}

// maskURL masks the user info of a URL and the values of query parameters
// that look like credentials. It works on the text, so that even a URL
// that does not parse is masked.
func maskURL(raw string) string {
	head, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		head, rest = raw[:i+3], raw[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		rest = Mask + rest[at:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		return head + rest
	}
	query, frag, hasFrag := strings.Cut(rest[q+1:], "#")
	params := strings.Split(query, "&")
	for j, p := range params {
		if k, _, ok := strings.Cut(p, "="); ok && sensitiveParam(k) {
			params[j] = k + "=" + Mask
		}
	}
	rest = rest[:q+1] + strings.Join(params, "&")
	if hasFrag {
		rest += "#" + frag
	}
	return head + rest
}

func sensitiveParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"token", "secret", "pass", "pwd", "key", "sign", "sig", "auth", "credential"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// keyValuePassword finds the password of a key=value DSN
// ("host=db user=sanitel password=…").
var keyValuePassword = regexp.MustCompile(`(?i)\b(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

func maskDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		return maskURL(dsn)
	}
	return keyValuePassword.ReplaceAllString(dsn, "${1}="+Mask)
}

// yamlNode renders a configuration value in declaration order, durations
// and byte sizes spelt as a config file would spell them.
func yamlNode(v reflect.Value) *yaml.Node {
	scalar := func(tag, value string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
	}
	t := v.Type()
	switch {
	case t == durationType:
		return scalar("!!str", duration.Format(durationOf(v)))
	case t.Kind() == reflect.Int64:
		s := FormatByteSize(v.Int())
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return scalar("!!int", s)
		}
		return scalar("!!str", s)
	case t.Kind() == reflect.Int:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10))
	case t.Kind() == reflect.Float64:
		return scalar("", strconv.FormatFloat(v.Float(), 'g', -1, 64))
	case t.Kind() == reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool()))
	case t.Kind() == reflect.String:
		return scalar("!!str", v.String())
	case t.Kind() == reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v.Len() == 0 || t.Elem().Kind() != reflect.Struct {
			n.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			n.Content = append(n.Content, yamlNode(v.Index(i)))
		}
		return n
	case t.Kind() == reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for i := 0; i < t.NumField(); i++ {
			n.Content = append(n.Content, scalar("!!str", tagName(t.Field(i))), yamlNode(v.Field(i)))
		}
		return n
	}
	return scalar("!!null", "")
}

func durationOf(v reflect.Value) time.Duration { return time.Duration(v.Int()) }

// logValue renders a configuration value for slog: sections and list
// items as groups.
func logValue(v reflect.Value) slog.Value {
	t := v.Type()
	switch {
	case t == durationType:
		// As the config spells it ("30s", "7d"): JSON handlers would write nanoseconds.
		return slog.StringValue(duration.Format(durationOf(v)))
	case t.Kind() == reflect.Int64:
		return slog.Int64Value(v.Int())
	case t.Kind() == reflect.Int:
		return slog.IntValue(int(v.Int()))
	case t.Kind() == reflect.Float64:
		return slog.Float64Value(v.Float())
	case t.Kind() == reflect.Bool:
		return slog.BoolValue(v.Bool())
	case t.Kind() == reflect.String:
		return slog.StringValue(v.String())
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return slog.AnyValue(slices.Clone(v.Interface().([]string)))
	case t.Kind() == reflect.Slice:
		attrs := make([]slog.Attr, v.Len())
		for i := range attrs {
			attrs[i] = slog.Attr{Key: strconv.Itoa(i), Value: logValue(v.Index(i))}
		}
		return slog.GroupValue(attrs...)
	case t.Kind() == reflect.Struct:
		attrs := make([]slog.Attr, t.NumField())
		for i := range attrs {
			attrs[i] = slog.Attr{Key: tagName(t.Field(i)), Value: logValue(v.Field(i))}
		}
		return slog.GroupValue(attrs...)
	}
	return slog.Value{}
}

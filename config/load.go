package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/sanitel/sanitel/internal/duration"
)

// maxSecretFile bounds a secret file; a secret is a line, not a document.
const maxSecretFile = 64 << 10

var durationType = reflect.TypeOf(time.Duration(0))

// Load reads the YAML configuration at path, applies the defaults, lets
// SANITEL_<SECTION>_<KEY> environment variables override any key, reads the
// *_file secrets, resolves relative paths against the file's directory and
// validates the result.
//
// Every problem is reported, joined with errors.Join, each as
// "key: reason" (for example "mqtt.qos: must be 0, 1 or 2, got 3") or
// `unknown key "mqtt.brokr"`. Secret values never appear in errors.
//
// An empty path loads the defaults and the environment alone; relative paths
// then stay relative to the working directory.
func Load(path string) (*Config, error) {
	var data []byte
	dir := ""
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		data, err = os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dir = filepath.Dir(abs)
	}
	l := &loader{failed: make(map[string]bool)}
	cfg, err := l.load(data, dir)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return cfg, nil
}

// fieldError is one bad value, reported by its key.
type fieldError struct {
	key, msg string
}

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

// loader gathers every problem of one Load.
type loader struct {
	errs []error
	// failed marks keys already reported while loading, so that validation
	// does not report the same key again (a missing token file must not also
	// be reported as a missing token).
	failed map[string]bool
}

func (l *loader) fail(key, format string, args ...any) {
	l.failed[key] = true
	l.errs = append(l.errs, &fieldError{key: key, msg: fmt.Sprintf(format, args...)})
}

// load does the work of Load. It returns an error only when the file cannot
// be parsed at all; problems with keys and values are gathered in l.errs.
func (l *loader) load(data []byte, dir string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) > 0 {
		root := resolveAlias(doc.Content[0])
		if root != nil && !isNull(root) && root.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: the top level must be a mapping of sections (mqtt, influx, …), got %s", root.Line, nodeDesc(root))
		}
		l.checkKeys(doc.Content[0], reflect.TypeOf(Config{}), "", true, 0)
	}

	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) {
			err = pe.Unwrap()
		}
		return nil, err
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))

	cfg := Default()
	// Binding every known key, not just those in the file, is what lets the
	// environment set a key the file leaves out.
	leaves := leafKeys(cfg)
	for _, lf := range leaves {
		if lf.value.Kind() != reflect.Slice {
			v.SetDefault(lf.key, lf.value.Interface())
		}
		if err := v.BindEnv(lf.key); err != nil {
			return nil, err
		}
	}
	for _, lf := range leaves {
		l.decode(v.Get(lf.key), lf.value, lf.key)
	}

	cfg.normalize()
	if dir != "" {
		cfg.resolvePaths(dir)
	}
	l.readSecrets(cfg)

	for _, err := range cfg.validate() {
		if !l.reported(err.key) {
			l.errs = append(l.errs, err)
		}
	}
	l.annotateEnv(leaves)
	return cfg, nil
}

// reported tells whether key, or a list item or key containing it, already
// has a problem from loading.
func (l *loader) reported(key string) bool {
	for k := range l.failed {
		if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
			return true
		}
	}
	return false
}

// annotateEnv names the environment variable behind a bad value, since the
// file then shows a different one.
func (l *loader) annotateEnv(leaves []leaf) {
	for _, err := range l.errs {
		fe, ok := err.(*fieldError)
		if !ok {
			continue
		}
		for _, lf := range leaves {
			if fe.key != lf.key && !strings.HasPrefix(fe.key, lf.key+"[") {
				continue
			}
			if name := envName(lf.key); os.Getenv(name) != "" {
				fe.msg += " (from " + name + ")"
			}
			break
		}
	}
}

// isSecretKey reports whether the value of key must never be shown.
func isSecretKey(key string) bool {
	for _, s := range []string{"password", "token", "secret"} {
		if key == s || strings.HasSuffix(key, "."+s) {
			return true
		}
	}
	return false
}

// envName is the environment variable that overrides key.
func envName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// leaf is a key that viper resolves as a whole: a scalar, or a list.
type leaf struct {
	key   string
	value reflect.Value // settable field of the Config
}

// leafKeys walks the sections of cfg in declaration order.
func leafKeys(cfg *Config) []leaf {
	var out []leaf
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			key := joinKey(prefix, tagName(t.Field(i)))
			if f := v.Field(i); f.Kind() == reflect.Struct {
				walk(f, key)
			} else {
				out = append(out, leaf{key: key, value: f})
			}
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	return out
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return name
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// fieldByKey finds the field of struct type t with the given key.
func fieldByKey(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// ---- unknown keys ----------------------------------------------------------

// checkKeys reports keys in n that the schema of t does not have, and
// sections that are not mappings. Scalar values are checked by decode.
func (l *loader) checkKeys(n *yaml.Node, t reflect.Type, key string, lines bool, depth int) {
	n = resolveAlias(n)
	if n == nil || isNull(n) || depth > 16 {
		return
	}
	switch {
	case t.Kind() == reflect.String:
		// YAML reads a plain 0123 or 1_000 as a number, so the text would
		// change on its way into a string (a token, an org unit code).
		if n.Kind != yaml.ScalarNode || n.Style != 0 {
			break
		}
		shown := truncate(n.Value, 40) + " "
		if isSecretKey(key) {
			shown = ""
		}
		var num any
		switch n.ShortTag() {
		case "!!float":
			l.fail(key, "must be a string, got the number %s(YAML reads it as a float); quote it", shown)
		case "!!int":
			if err := n.Decode(&num); err != nil || fmt.Sprint(num) != n.Value {
				l.fail(key, "must be a string, got the number %s(YAML would change its text); quote it", shown)
			}
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			l.fail(key, "must be a mapping of keys, got %s", nodeDesc(n))
			return
		}
		l.checkMapping(n, t, key, lines, map[string]bool{}, depth)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			if item = resolveAlias(item); item != nil && item.Kind == yaml.MappingNode {
				l.checkMapping(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i), lines, map[string]bool{}, depth+1)
			}
		}
	}
}

// checkMapping checks the keys of one mapping against struct type t. seen is
// nil inside a merged mapping ("<<: *anchor"), whose keys may be overridden.
func (l *loader) checkMapping(n *yaml.Node, t reflect.Type, key string, lines bool, seen map[string]bool, depth int) {
	if depth > 16 {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && (k.Tag == "!!merge" || k.Value == "<<") {
			m := resolveAlias(val)
			if m == nil {
				continue
			}
			merged := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				merged = m.Content
			}
			for _, mm := range merged {
				if mm = resolveAlias(mm); mm != nil && mm.Kind == yaml.MappingNode {
					l.checkMapping(mm, t, key, lines, nil, depth+1)
				}
			}
			continue
		}
		// viper folds key case, so the check does too.
		name := strings.ToLower(k.Value)
		full := joinKey(key, name)
		f, ok := fieldByKey(t, name)
		if !ok {
			l.errs = append(l.errs, errors.New(unknownKey(full, k, t, name, key, lines)))
			continue
		}
		if seen != nil {
			if seen[name] {
				at := ""
				if lines {
					at = fmt.Sprintf(" (line %d)", k.Line)
				}
				l.errs = append(l.errs, fmt.Errorf("duplicate key %q%s", full, at))
				continue
			}
			seen[name] = true
		}
		l.checkKeys(val, f.Type, full, lines, depth+1)
	}
}

func unknownKey(full string, k *yaml.Node, t reflect.Type, name, prefix string, lines bool) string {
	var notes []string
	if k.Kind != yaml.ScalarNode {
		full = joinKey(prefix, "<"+nodeDesc(k)+">")
	}
	if lines {
		notes = append(notes, fmt.Sprintf("line %d", k.Line))
	}
	if s := suggest(t, name); s != "" {
		notes = append(notes, fmt.Sprintf("did you mean %q?", joinKey(prefix, s)))
	}
	msg := fmt.Sprintf("unknown key %q", full)
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	return msg
}

// suggest returns the key of t closest to a misspelt name, if one is close.
func suggest(t reflect.Type, name string) string {
	best, bestDist := "", 3
	for i := 0; i < t.NumField(); i++ {
		cand := tagName(t.Field(i))
		if d := editDistance(name, cand); d < bestDist && d < len(cand) {
			best, bestDist = cand, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func nodeDesc(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", truncate(n.Value, 40))
	}
	return "something else"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ---- decoding --------------------------------------------------------------

// decode sets dst from raw, a value viper found in the file, the
// environment (a string) or the defaults. nil leaves dst unchanged.
func (l *loader) decode(raw any, dst reflect.Value, key string) {
	if raw == nil || l.failed[key] {
		return
	}
	t := dst.Type()
	var err error
	switch {
	case t == durationType:
		var d time.Duration
		if d, err = toDuration(raw); err == nil {
			dst.SetInt(int64(d))
		}
	case t.Kind() == reflect.Int64: // every int64 field is a byte size
		var n int64
		if n, err = toBytes(raw); err == nil {
			dst.SetInt(n)
		}
	case t.Kind() == reflect.Int:
		var n int64
		if n, err = toInt(raw); err == nil {
			dst.SetInt(n)
		}
	case t.Kind() == reflect.Float64:
		var f float64
		if f, err = toFloat(raw); err == nil {
			dst.SetFloat(f)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if b, err = toBool(raw); err == nil {
			dst.SetBool(b)
		}
	case t.Kind() == reflect.String:
		var s string
		if s, err = toString(raw); err == nil {
			dst.SetString(strings.TrimSpace(s))
		} else if isSecretKey(key) {
			err = errors.New("must be a string; quote it")
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		l.decodeStrings(raw, dst, key)
		return
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		l.decodeList(raw, dst, key)
		return
	default:
		err = fmt.Errorf("cannot be decoded into %s", t)
	}
	if err != nil {
		l.fail(key, "%v", err)
	}
}

func (l *loader) decodeStrings(raw any, dst reflect.Value, key string) {
	var items []any
	switch x := raw.(type) {
	case []any:
		items = x
	case []string:
		for _, s := range x {
			items = append(items, s)
		}
	case string:
		// From the environment: a YAML list, or words separated by commas.
		if s := strings.TrimSpace(x); strings.HasPrefix(s, "[") {
			if err := yaml.Unmarshal([]byte(s), &items); err != nil {
				l.fail(key, "must be a list: %v", err)
				return
			}
		} else {
			for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
				items = append(items, f)
			}
		}
	default:
		l.fail(key, "must be a list of strings, got %s", describe(raw))
		return
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := toString(it)
		if err != nil {
			l.fail(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			continue
		}
		out = append(out, strings.TrimSpace(s))
	}
	dst.Set(reflect.ValueOf(out))
}

// defaulter is a list item with defaults of its own.
type defaulter interface{ setDefaults() }

func (l *loader) decodeList(raw any, dst reflect.Value, key string) {
	items, ok := raw.([]any)
	if s, isString := raw.(string); isString {
		var err error
		if items, err = l.parseEnvList(s, dst.Type(), key); err != nil {
			l.fail(key, "%v", err)
			return
		}
		ok = true
	}
	if !ok {
		l.fail(key, "must be a list, got %s", describe(raw))
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(items), len(items))
	for i, it := range items {
		ikey := fmt.Sprintf("%s[%d]", key, i)
		elem := out.Index(i)
		if d, ok := elem.Addr().Interface().(defaulter); ok {
			d.setDefaults()
		}
		m, ok := it.(map[string]any)
		if !ok {
			l.fail(ikey, "must be a mapping of keys, got %s", describe(it))
			continue
		}
		t := elem.Type()
		for j := 0; j < t.NumField(); j++ {
			name := tagName(t.Field(j))
			if v, ok := m[name]; ok {
				l.decode(v, elem.Field(j), ikey+"."+name)
			}
		}
	}
	dst.Set(out)
}

// parseEnvList parses a list given in the environment as YAML (or JSON)
// and checks its keys as the file's are checked.
func (l *loader) parseEnvList(s string, t reflect.Type, key string) ([]any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		return nil, fmt.Errorf("must be a YAML or JSON list: %w", err)
	}
	if len(n.Content) == 0 {
		return nil, nil
	}
	l.checkKeys(n.Content[0], t, key, false, 0)
	var v any
	if err := n.Content[0].Decode(&v); err != nil {
		return nil, fmt.Errorf("must be a YAML or JSON list: %w", err)
	}
	items, ok := lowerKeys(v).([]any)
	if !ok {
		return nil, fmt.Errorf("must be a list, got %s", describe(v))
	}
	return items, nil
}

// lowerKeys folds the case of mapping keys, as viper does for the file.
func lowerKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[strings.ToLower(k)] = lowerKeys(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[strings.ToLower(fmt.Sprint(k))] = lowerKeys(e)
		}
		return m
	case []any:
		for i := range x {
			x[i] = lowerKeys(x[i])
		}
	}
	return v
}

// describe renders a bad value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(truncate(x, 60))
	case []any, []string:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case time.Time:
		return "a timestamp"
	}
	return truncate(fmt.Sprint(v), 60)
}

func toString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, uint64, bool:
		return fmt.Sprint(x), nil
	case float64:
		// A float may already have lost digits (a long numeric token).
		return "", fmt.Errorf("must be a string, got the number %v; quote it", x)
	case time.Time:
		return "", errors.New("must be a string, got a timestamp; quote it")
	}
	return "", fmt.Errorf("must be a string, got %s", describe(v))
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("must be an integer, got %s", describe(v))
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("must be a number, got %s", describe(v))
}

func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int:
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
	}
	return false, fmt.Errorf("must be true or false, got %s", describe(v))
}

func toDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case time.Duration:
		return x, nil
	case string:
		d, err := duration.Parse(x)
		if err != nil {
			return 0, fmt.Errorf("must be a duration such as \"30s\", \"5m\" or \"7d\", got %s", describe(v))
		}
		return d, nil
	case int:
		if x == 0 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("must be a duration such as \"30s\", \"5m\" or \"7d\", got %s", describe(v))
}

func toBytes(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		n, err := ParseByteSize(x)
		if err != nil {
			return 0, fmt.Errorf("must be a byte size such as 65536, \"64KiB\", \"512MB\" or \"1GiB\", got %s", describe(v))
		}
		return n, nil
	case int, int64, uint64, float64:
		if n, err := toInt(x); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("must be a byte size such as 65536, \"64KiB\", \"512MB\" or \"1GiB\", got %s", describe(v))
}

// ---- after decoding ----------------------------------------------------------

// normalize folds the case of enumerated values and fills list defaults.
func (c *Config) normalize() {
	lower := func(s *string) { *s = strings.ToLower(strings.TrimSpace(*s)) }
	lower(&c.Log.Level)
	lower(&c.Log.Format)
	lower(&c.Devices.Unknown)
	for i := range c.HTTP.Tokens {
		lower(&c.HTTP.Tokens[i].Role)
	}
	for i := range c.Tickets.Notify.Webhooks {
		w := &c.Tickets.Notify.Webhooks[i]
		for j := range w.Events {
			lower(&w.Events[j])
		}
		if len(w.Events) == 0 {
			w.Events = allEvents()
		}
	}
}

// resolvePaths makes every relative path relative to dir.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.MQTT.PasswordFile)
	abs(&c.MQTT.TLS.CAFile)
	abs(&c.MQTT.TLS.CertFile)
	abs(&c.MQTT.TLS.KeyFile)
	abs(&c.Influx.TokenFile)
	abs(&c.Spool.Dir)
	abs(&c.Devices.Registry)
	abs(&c.Alerting.Rules)
	abs(&c.Alerting.StateDir)
	if dsnIsPath(c.Tickets.DSN) {
		abs(&c.Tickets.DSN)
	}
	for i := range c.Tickets.Notify.Webhooks {
		abs(&c.Tickets.Notify.Webhooks[i].SecretFile)
	}
	for i := range c.HTTP.Tokens {
		abs(&c.HTTP.Tokens[i].TokenFile)
	}
}

// dsnIsPath reports whether a tickets DSN is a plain SQLite file path.
func dsnIsPath(dsn string) bool {
	return dsn != "" && dsn != ":memory:" && !strings.HasPrefix(dsn, "file:") && !strings.Contains(dsn, "://")
}

// readSecrets fills each secret from its *_file.
func (l *loader) readSecrets(c *Config) {
	l.secret(&c.MQTT.Password, c.MQTT.PasswordFile, "mqtt.password", "password")
	l.secret(&c.Influx.Token, c.Influx.TokenFile, "influx.token", "token")
	for i := range c.HTTP.Tokens {
		t := &c.HTTP.Tokens[i]
		l.secret(&t.Token, t.TokenFile, fmt.Sprintf("http.tokens[%d].token", i), "token")
	}
	for i := range c.Tickets.Notify.Webhooks {
		w := &c.Tickets.Notify.Webhooks[i]
		l.secret(&w.Secret, w.SecretFile, fmt.Sprintf("tickets.notify.webhooks[%d].secret", i), "secret")
	}
}

// secret reads a secret from its file. Setting both the secret and its file
// is an error, unless one of them comes from the environment: that one wins,
// as the environment overrides the file everywhere else
// (SANITEL_INFLUX_TOKEN over influx.token_file in the YAML).
func (l *loader) secret(value *string, file, key, name string) {
	if file == "" {
		return
	}
	if *value != "" {
		valueEnv, fileEnv := os.Getenv(envName(key)) != "", os.Getenv(envName(key+"_file")) != ""
		switch {
		case valueEnv && !fileEnv:
			return
		case !fileEnv || valueEnv:
			l.fail(key, "set either %s or %s_file, not both", name, name)
			return
		}
	}
	s, err := readSecretFile(file)
	if err != nil {
		l.fail(key+"_file", "%v", err)
		l.failed[key] = true
		return
	}
	*value = s
}

func readSecretFile(path string) (string, error) {
	// Stat first: opening a FIFO or a device could block or never end.
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxSecretFile {
		return "", fmt.Errorf("%s: larger than %s", path, FormatByteSize(maxSecretFile))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: file is empty", path)
	}
	return s, nil
}

// UnknownVar is a SANITEL_ environment variable that overrides no setting.
type UnknownVar struct {
	Name       string
	DidYouMean string // the closest setting's variable, if one is close
}

func (u UnknownVar) String() string {
	if u.DidYouMean == "" {
		return u.Name + " is not a setting and is ignored"
	}
	return u.Name + " is not a setting and is ignored (did you mean " + u.DidYouMean + "?)"
}

// UnknownEnv lists the variables of environ ("NAME=value") that start with
// SANITEL_ but override no setting: a misspelt override is otherwise
// ignored without a word, while a misspelt key in the file stops start-up.
func UnknownEnv(environ []string) []UnknownVar {
	known := map[string]bool{EnvPrefix + "_CONFIG": true}
	for _, lf := range leafKeys(Default()) {
		known[envName(lf.key)] = true
	}
	var out []UnknownVar
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || known[name] {
			continue
		}
		u, bestDist := UnknownVar{Name: name}, 3
		for k := range known {
			if d := editDistance(name, k); d < bestDist || d == bestDist && u.DidYouMean != "" && k < u.DidYouMean {
				u.DidYouMean, bestDist = k, d
			}
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b UnknownVar) int { return strings.Compare(a.Name, b.Name) })
	return out
}

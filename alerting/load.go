package alerting

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sanitel/sanitel/devices"

	"github.com/sanitel/sanitel/internal/duration"
)

// defaultRules is the shipped rules file. configs/rules.yaml is a copy for
// users to read and start from; a test keeps the two equal.
//
//go:embed rules.yaml
var defaultRules []byte

// maxLoadErrors is how many problems one error from LoadRules lists.
const maxLoadErrors = 20

// LoadRules reads the rules file at path on top of the shipped defaults and
// returns the effective rules, every one valid. An empty path returns the
// defaults.
//
// A rule in the file whose name is a shipped rule's replaces that rule whole,
// in its place; with `enabled: false` it removes it; any other name is added
// after the shipped rules. `include_defaults: false` at the top of the file
// starts from no rules instead. Errors name the file, line, rule and key.
func LoadRules(path string) ([]Rule, error) {
	if path == "" {
		return ParseRules(nil, "")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	return ParseRules(data, path)
}

// ParseRules is LoadRules for a file's contents; name names it in errors.
// nil data returns the defaults.
func ParseRules(data []byte, name string) ([]Rule, error) {
	shipped, _, err := parseFile(defaultRules, "rules.yaml (shipped defaults)", nil)
	if err != nil {
		return nil, err // the shipped file is tested; this cannot happen in a release
	}
	defs := merge(nil, shipped, true)
	if data == nil {
		return defs, nil
	}
	rules, include, err := parseFile(data, name, defs)
	if err != nil {
		return nil, err
	}
	return merge(defs, rules, include), nil
}

// fileRule is a rule as one file gives it.
type fileRule struct {
	Rule
	enabled  bool
	nameOnly bool // the rule gives nothing but its name (and enabled)
}

// merge applies a user file's rules to the defaults.
func merge(defs []Rule, file []fileRule, includeDefaults bool) []Rule {
	var out []Rule
	if includeDefaults {
		out = slices.Clone(defs)
	}
	var added []Rule
	for _, fr := range file {
		i := slices.IndexFunc(out, func(r Rule) bool { return r.Name == fr.Name })
		switch {
		case i >= 0 && !fr.enabled:
			out[i].Name = "" // removed below, so later indices stay put
		case i >= 0:
			out[i] = fr.Rule
		case fr.enabled:
			added = append(added, fr.Rule)
		}
	}
	out = slices.DeleteFunc(out, func(r Rule) bool { return r.Name == "" })
	return append(out, added...)
}

// ruleKeys are the keys a rule may have, in the order errors list them.
var ruleKeys = []string{"name", "enabled", "type", "kind", "field", "op", "warning", "critical", "clear",
	"by", "thresholds", "fallback", "for", "clear_for", "events", "intervals", "default_after", "severity",
	"title", "requirement", "deadline", "auto_close"}

// parseFile parses one rules file. defs, when not nil, are the shipped
// rules the file is read on top of (for checking what it disables).
func parseFile(data []byte, file string, defs []Rule) (rules []fileRule, includeDefaults bool, err error) {
	var errs []error
	fail := func(line int, format string, args ...any) {
		if len(errs) < maxLoadErrors {
			errs = append(errs, fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
		} else if len(errs) == maxLoadErrors {
			errs = append(errs, errors.New("too many errors"))
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("%s: %w", file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, false, fmt.Errorf("%s: empty file: want a top-level rules: list", file)
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, false, fmt.Errorf("%s:%d: want a mapping with a rules: list", file, top.Line)
	}
	includeDefaults = true
	var list *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if seen[k.Value] {
			fail(k.Line, "%s: given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "rules":
			if v.Kind != yaml.SequenceNode && !isNull(v) {
				fail(v.Line, "rules: want a list of rules")
				continue
			}
			list = v
		case "include_defaults":
			if err := v.Decode(&includeDefaults); err != nil || v.Tag != "!!bool" {
				fail(v.Line, "include_defaults: want true or false, got %q", v.Value)
			}
		default:
			fail(k.Line, "unknown key %q (known: rules, include_defaults)", k.Value)
		}
	}
	if list == nil && len(errs) == 0 {
		fail(top.Line, "rules: required")
	}
	names := map[string]int{}
	if list != nil {
		for i, n := range list.Content {
			p := ruleParser{file: file, line: n.Line, index: i + 1, lines: map[string]int{}}
			fr := p.parse(n)
			if fr.Name != "" {
				if first, dup := names[fr.Name]; dup {
					p.keyErr("name", "%q already defined at line %d", fr.Name, first)
				} else {
					names[fr.Name] = n.Line
				}
			}
			if len(p.errs) == 0 {
				shipped := slices.ContainsFunc(defs, func(r Rule) bool { return r.Name == fr.Name })
				switch {
				case fr.nameOnly && fr.enabled:
					p.keyErr("", "a rule needs more than a name (to disable a shipped rule, write enabled: false)")
				case fr.nameOnly && !shipped:
					p.keyErr("enabled", "no shipped rule is named %q: nothing to disable", fr.Name)
				case !fr.nameOnly:
					for _, e := range fr.validate() {
						p.keyErr(e.key, "%s", e.msg)
					}
				}
			}
			for _, e := range p.errs {
				fail(e.line, "%s", e.msg)
			}
			rules = append(rules, fr)
		}
	}
	if len(errs) > 0 {
		return nil, false, errors.Join(errs...)
	}
	return rules, includeDefaults, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// ruleParser parses one rule's mapping and collects its problems.
type ruleParser struct {
	file  string
	line  int // the rule's
	index int // 1-based position in the list
	name  string
	lines map[string]int // line of each key, by key path
	errs  []lineError
}

type lineError struct {
	line int
	msg  string
}

// keyErr records a problem with key (a path such as "thresholds.2.clear").
func (p *ruleParser) keyErr(key, format string, args ...any) {
	line := p.line
	for k := key; k != ""; {
		if l, ok := p.lines[k]; ok {
			line = l
			break
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	who := fmt.Sprintf("rule %d", p.index)
	if p.name != "" {
		who = fmt.Sprintf("rule %q", p.name)
	}
	msg := fmt.Sprintf(format, args...)
	if key != "" && key[0] != '?' { // "?key": a key that is not one; the message says so
		msg = key + ": " + msg
	}
	p.errs = append(p.errs, lineError{line, who + ": " + msg})
}

func (p *ruleParser) parse(n *yaml.Node) fileRule {
	fr := fileRule{enabled: true}
	if n.Kind != yaml.MappingNode {
		p.keyErr("", "want a mapping of keys such as name, kind, field, op")
		return fr
	}
	// The name first, so every error can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "name" && v.Kind == yaml.ScalarNode && !isNull(v) {
			p.name = strings.TrimSpace(v.Value)
		}
	}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p.lines[k.Value] = k.Line
		if !slices.Contains(ruleKeys, k.Value) {
			p.lines["?"+k.Value] = k.Line
			p.keyErr("?"+k.Value, "unknown key %q (known: %s)", k.Value, strings.Join(ruleKeys, ", "))
			continue
		}
		if _, dup := keys[k.Value]; dup {
			p.keyErr(k.Value, "given twice")
			continue
		}
		keys[k.Value] = v
	}
	r := &fr.Rule
	if v := keys["name"]; v != nil {
		r.Name, _ = p.str("name", v)
		p.name = r.Name
	}
	if v := keys["enabled"]; v != nil {
		fr.enabled = p.boolean("enabled", v)
	}
	fr.nameOnly = len(keys) == 1 && keys["name"] != nil || len(keys) == 2 && keys["name"] != nil && keys["enabled"] != nil
	if fr.nameOnly {
		return fr
	}

	r.Type = TypeThreshold
	if v := keys["type"]; v != nil {
		switch s, _ := p.str("type", v); s {
		case "threshold":
		case "no_data":
			r.Type = TypeNoData
		default:
			p.keyErr("type", "must be threshold or no_data, got %q", s)
		}
	}
	if v := keys["field"]; v != nil {
		s, _ := p.str("field", v)
		f, ok := devices.ParseField(s)
		if !ok {
			p.keyErr("field", "unknown field %q", s)
			f = devices.NumFields
		}
		r.Field = f
	} else {
		r.Field = devices.NumFields
	}
	if v := keys["kind"]; v != nil {
		var list []*yaml.Node
		if v.Kind == yaml.SequenceNode {
			list = v.Content
			if len(list) == 0 {
				p.keyErr("kind", "empty list")
			}
		} else {
			list = []*yaml.Node{v}
		}
		for _, kn := range list {
			s, ok := p.str("kind", kn)
			if !ok {
				continue
			}
			k, ok := devices.ParseKind(s)
			if !ok {
				p.keyErr("kind", "unknown kind %q (want bin, toilet, rural_toilet or water)", s)
				continue
			}
			r.Kinds = append(r.Kinds, k)
		}
	} else {
		// Every kind that has the field; for no_data, every kind.
		for _, k := range devices.Kinds {
			if r.Type == TypeNoData || (r.Field < devices.NumFields && k.Accepts(r.Field)) {
				r.Kinds = append(r.Kinds, k)
			}
		}
		if len(r.Kinds) == 0 && r.Field < devices.NumFields {
			p.keyErr("field", "%s is not a field of any kind", r.Field)
		}
	}
	if v := keys["op"]; v != nil {
		s, _ := p.str("op", v)
		switch s {
		case ">":
			r.Op = OpGT
		case ">=":
			r.Op = OpGE
		case "<":
			r.Op = OpLT
		case "<=":
			r.Op = OpLE
		case "outside":
			r.Op = OpOutside
		default:
			p.keyErr("op", `must be one of ">", ">=", "<", "<=", outside (quote the symbols), got %q`, s)
		}
	}
	opKnown := r.Op != 0
	if v := keys["by"]; v != nil {
		switch s, _ := p.str("by", v); s {
		case "toilet_class":
			r.By = AttrToiletClass
		case "supply":
			r.By = AttrSupply
		default:
			p.keyErr("by", "unknown attribute %q (want toilet_class or supply)", s)
			r.By = 255
		}
	}
	top := keys["warning"] != nil || keys["critical"] != nil || keys["clear"] != nil
	switch {
	case r.Type == TypeNoData:
		for _, k := range []string{"field", "op", "warning", "critical", "clear", "by", "thresholds", "fallback", "events", "for", "clear_for"} {
			if keys[k] != nil {
				p.keyErr(k, "not for a no_data rule")
			}
		}
	case keys["by"] != nil:
		if top {
			p.keyErr("by", "with by:, put warning, critical and clear under thresholds: (one entry per %s value)", r.By)
		}
		v := keys["thresholds"]
		if v == nil {
			p.keyErr("thresholds", "required with by:")
			break
		}
		if v.Kind != yaml.MappingNode {
			p.keyErr("thresholds", "want a mapping of %s values to {warning, critical, clear}", r.By)
			break
		}
		r.Thresholds = map[string]Levels{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			kn, lvn := v.Content[i], v.Content[i+1]
			key := "thresholds." + kn.Value
			p.lines[key] = kn.Line
			if _, dup := r.Thresholds[kn.Value]; dup {
				p.keyErr(key, "given twice")
				continue
			}
			if lvn.Kind != yaml.MappingNode {
				p.keyErr(key, "want a mapping with warning, critical, clear")
				continue
			}
			sub := map[string]*yaml.Node{}
			for j := 0; j+1 < len(lvn.Content); j += 2 {
				sk, sv := lvn.Content[j], lvn.Content[j+1]
				p.lines[key+"."+sk.Value] = sk.Line
				switch sk.Value {
				case "warning", "critical", "clear":
					sub[sk.Value] = sv
				default:
					p.keyErr(key, "unknown key %q (known: warning, critical, clear)", sk.Value)
				}
			}
			r.Thresholds[kn.Value] = p.levels(key+".", sub, r.Op, opKnown)
		}
		if fv := keys["fallback"]; fv != nil {
			r.Fallback, _ = p.str("fallback", fv)
		}
	default:
		if keys["thresholds"] != nil {
			p.keyErr("thresholds", "only with by: toilet_class or by: supply")
		}
		if keys["fallback"] != nil {
			p.keyErr("fallback", "only with by: toilet_class or by: supply")
		}
		if keys["warning"] == nil && keys["critical"] == nil {
			p.keyErr("warning", "a threshold rule needs a warning or critical threshold")
			break
		}
		r.Thresholds = map[string]Levels{"": p.levels("", keys, r.Op, opKnown)}
	}
	if r.Type == TypeThreshold {
		if keys["field"] == nil {
			p.keyErr("field", "required")
		}
		if keys["op"] == nil {
			p.keyErr("op", "required")
		}
	}
	if v := keys["events"]; v != nil {
		list := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			list = v.Content
		}
		for _, en := range list {
			if s, ok := p.str("events", en); ok {
				r.Events = append(r.Events, s)
			}
		}
	}
	if v := keys["for"]; v != nil {
		r.For = p.duration("for", v)
	}
	if v := keys["clear_for"]; v != nil {
		r.ClearFor = p.duration("clear_for", v)
	}
	if v := keys["intervals"]; v != nil {
		if err := v.Decode(&r.Intervals); err != nil || v.Tag != "!!int" {
			p.keyErr("intervals", "want a whole number, got %q", v.Value)
		}
	}
	if v := keys["default_after"]; v != nil {
		r.DefaultAfter = p.duration("default_after", v)
	}
	if v := keys["severity"]; v != nil {
		switch s, _ := p.str("severity", v); s {
		case "warning":
			r.Severity = SeverityWarning
		case "critical":
			r.Severity = SeverityCritical
		default:
			p.keyErr("severity", "must be warning or critical, got %q", s)
		}
	}
	if r.Type == TypeThreshold && keys["severity"] != nil {
		p.keyErr("severity", "only for no_data rules: a threshold rule fires at the severity of the threshold crossed (warning:, critical:)")
		r.Severity = SeverityNone
	}
	if v := keys["title"]; v != nil {
		r.Title, _ = p.str("title", v)
	}
	if v := keys["requirement"]; v != nil {
		r.Requirement, _ = p.str("requirement", v)
	}
	if v := keys["deadline"]; v != nil {
		if v.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(v.Content); i += 2 {
				kn, dv := v.Content[i], v.Content[i+1]
				p.lines["deadline."+kn.Value] = kn.Line
				switch kn.Value {
				case "warning":
					r.Deadline.Warning = p.duration("deadline.warning", dv)
				case "critical":
					r.Deadline.Critical = p.duration("deadline.critical", dv)
				default:
					p.keyErr("deadline", "unknown key %q (known: warning, critical)", kn.Value)
				}
			}
		} else {
			d := p.duration("deadline", v)
			r.Deadline = Deadlines{Warning: d, Critical: d}
		}
	}
	if v := keys["auto_close"]; v != nil {
		r.AutoClose = p.boolean("auto_close", v)
	}
	if r.Type == TypeNoData {
		r.Field = 0
	}
	return fr
}

// levels parses warning, critical and clear from keys, for a rule with
// operator op (known says op parsed). prefix prefixes the keys in errors.
func (p *ruleParser) levels(prefix string, keys map[string]*yaml.Node, op Op, known bool) Levels {
	var lv Levels
	for _, name := range []string{"warning", "critical"} {
		v := keys[name]
		if v == nil {
			continue
		}
		b, isRange, ok := p.bound(prefix+name, v)
		if !ok {
			continue
		}
		if known && isRange != (op == OpOutside) {
			if isRange {
				p.keyErr(prefix+name, "a range [lo, hi] is only for op outside; want a number")
			} else {
				p.keyErr(prefix+name, "op outside needs a range [lo, hi]")
			}
			continue
		}
		if name == "warning" {
			lv.Warning = &b
		} else {
			lv.Critical = &b
		}
	}
	v := keys["clear"]
	if v == nil {
		return lv
	}
	key := prefix + "clear"
	if v.Kind == yaml.SequenceNode {
		b, _, ok := p.bound(key, v)
		if !ok {
			return lv
		}
		if known && op != OpOutside {
			p.keyErr(key, `a range [lo, hi] is only for op outside; want a condition such as "< 60"`)
			return lv
		}
		lv.Clear = &Condition{Op: OpInside, Bound: b}
		return lv
	}
	s, ok := p.str(key, v)
	if !ok {
		return lv
	}
	if known && op == OpOutside {
		p.keyErr(key, "a rule with op outside clears inside a range: want [lo, hi], got %q", s)
		return lv
	}
	c, err := parseCondition(s)
	if err != nil {
		p.keyErr(key, "%v", err)
		return lv
	}
	lv.Clear = &c
	return lv
}

// parseCondition parses a clear condition such as "< 60" or ">= 30".
func parseCondition(s string) (Condition, error) {
	t := strings.TrimSpace(s)
	var c Condition
	for _, o := range []struct {
		sym string
		op  Op
	}{{"<=", OpLE}, {">=", OpGE}, {"<", OpLT}, {">", OpGT}} {
		if rest, ok := strings.CutPrefix(t, o.sym); ok {
			c.Op, t = o.op, strings.TrimSpace(rest)
			break
		}
	}
	if c.Op == 0 {
		return c, fmt.Errorf(`want a comparison such as "< 60" or ">= 30" (quoted), got %q`, s)
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !finite(v) {
		return c, fmt.Errorf("%q: %q is not a number", s, t)
	}
	c.Bound.Lo = v
	return c, nil
}

// bound parses a number or a [lo, hi] list.
func (p *ruleParser) bound(key string, v *yaml.Node) (b Bound, isRange, ok bool) {
	if v.Kind == yaml.SequenceNode {
		if len(v.Content) != 2 {
			p.keyErr(key, "want a range [lo, hi] of two numbers, got %d items", len(v.Content))
			return b, true, false
		}
		lo, ok1 := p.number(key, v.Content[0])
		hi, ok2 := p.number(key, v.Content[1])
		return Bound{lo, hi}, true, ok1 && ok2
	}
	lo, ok := p.number(key, v)
	return Bound{Lo: lo}, false, ok
}

func (p *ruleParser) number(key string, v *yaml.Node) (float64, bool) {
	var f float64
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || v.Decode(&f) != nil {
		p.keyErr(key, "want a number, got %s", describeNode(v))
		return 0, false
	}
	if !finite(f) {
		p.keyErr(key, "must be a finite number, got %s", v.Value)
		return 0, false
	}
	return f, true
}

func (p *ruleParser) str(key string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) {
		p.keyErr(key, "want a text value, got %s", describeNode(v))
		return "", false
	}
	return strings.TrimSpace(v.Value), true
}

func (p *ruleParser) boolean(key string, v *yaml.Node) bool {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		p.keyErr(key, "want true or false, got %s", describeNode(v))
	}
	return b
}

func (p *ruleParser) duration(key string, v *yaml.Node) time.Duration {
	s, ok := p.str(key, v)
	if !ok {
		return 0
	}
	d, err := duration.Parse(s)
	if err != nil {
		p.keyErr(key, "%v (want e.g. 30s, 10m, 2h, 7d)", err)
	}
	return d
}

func describeNode(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if isNull(v) {
		return "nothing"
	}
	return strconv.Quote(v.Value)
}

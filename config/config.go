// Package config turns a YAML file and the environment into one validated
// Config. It is the only place sanitel uses viper: components take their own
// typed options, filled by main from the Config.
//
// Every key can be overridden by an environment variable named
// SANITEL_<SECTION>_<KEY>, dots replaced by underscores
// (SANITEL_MQTT_QOS, SANITEL_MQTT_TLS_CA_FILE, SANITEL_SPOOL_MAX_BYTES).
// List keys (http.tokens, tickets.notify.webhooks) take a YAML or JSON list
// from the environment; a string list (a webhook's events) also takes a
// comma-separated value. An empty variable counts as unset.
package config

import (
	"log/slog"
	"time"

	// The ticket timezone is checked with time.LoadLocation; embedding the
	// zone database keeps that working in minimal containers without one.
	_ "time/tzdata"

	"github.com/sanitel/sanitel/devices"
)

// EnvPrefix starts the name of every environment variable that overrides a
// key: SANITEL_<SECTION>_<KEY>.
const EnvPrefix = "SANITEL"

// Values of Devices.Unknown.
const (
	UnknownReject = "reject"
	UnknownAccept = "accept"
)

// Roles of an HTTP token.
const (
	RoleViewer     = "viewer"
	RoleUnit       = "unit"
	RoleSupervisor = "supervisor"
	RoleAdmin      = "admin"
)

// Ticket events a webhook can be notified of.
const (
	EventOpen     = "open"
	EventEscalate = "escalate"
	EventClose    = "close"
)

// Mask is what every secret is replaced by in masked output.
const Mask = "***"

// Config is sanitel's whole configuration. Load fills it from a file and the
// environment and validates it; Default returns the defaults.
//
// Byte sizes are int64 fields (the only int64 fields), durations are
// time.Duration; after Load every relative path is resolved against the
// config file's directory and every *_file secret has been read into its
// secret field.
type Config struct {
	MQTT     MQTT     `json:"mqtt" mapstructure:"mqtt"`
	Influx   Influx   `json:"influx" mapstructure:"influx"`
	Spool    Spool    `json:"spool" mapstructure:"spool"`
	Devices  Devices  `json:"devices" mapstructure:"devices"`
	Alerting Alerting `json:"alerting" mapstructure:"alerting"`
	Tickets  Tickets  `json:"tickets" mapstructure:"tickets"`
	HTTP     HTTP     `json:"http" mapstructure:"http"`
	Log      Log      `json:"log" mapstructure:"log"`
}

// MQTT is the broker connection and subscription.
type MQTT struct {
	// Broker is the broker URL; schemes tcp, ssl, tls, mqtt, mqtts, ws, wss.
	Broker string `json:"broker" mapstructure:"broker"`
	// ClientID identifies the session at the broker; instances sharing a
	// broker need distinct ids.
	ClientID string `json:"client_id" mapstructure:"client_id"`
	// Username and Password authenticate to the broker.
	Username string `json:"username" mapstructure:"username"`
	Password string `json:"password" mapstructure:"password"`
	// PasswordFile, when set, is read at load into Password.
	PasswordFile string `json:"password_file" mapstructure:"password_file"`
	// QoS is the subscription QoS: 0, 1 or 2.
	QoS int `json:"qos" mapstructure:"qos"`
	// SharedGroup, when set, subscribes through $share/<group>/… so that
	// several instances split the load.
	SharedGroup string `json:"shared_group" mapstructure:"shared_group"`
	// TopicRoot is the first topic level of device topics.
	TopicRoot string `json:"topic_root" mapstructure:"topic_root"`
	// ChirpStackTopic is the filter for ChirpStack v4 uplinks; empty disables.
	ChirpStackTopic string `json:"chirpstack_topic" mapstructure:"chirpstack_topic"`
	// CleanSession false keeps a persistent session across reconnects.
	CleanSession bool `json:"clean_session" mapstructure:"clean_session"`
	// KeepAlive is the MQTT keep-alive interval (whole seconds; 0 disables).
	KeepAlive time.Duration `json:"keep_alive" mapstructure:"keep_alive"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration `json:"connect_timeout" mapstructure:"connect_timeout"`
	// MaxInflight bounds the messages handed to the pipeline but not yet
	// acknowledged to the broker.
	MaxInflight int `json:"max_inflight" mapstructure:"max_inflight"`
	// TLS configures TLS for ssl, tls, mqtts and wss brokers.
	TLS TLS `json:"tls" mapstructure:"tls"`
}

// TLS is the client TLS configuration for the broker connection.
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `json:"ca_file" mapstructure:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key (both or neither).
	CertFile string `json:"cert_file" mapstructure:"cert_file"`
	KeyFile  string `json:"key_file" mapstructure:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"server_name" mapstructure:"server_name"`
	// InsecureSkipVerify disables server certificate checks (tests only).
	InsecureSkipVerify bool `json:"insecure_skip_verify" mapstructure:"insecure_skip_verify"`
}

// Enabled reports whether any TLS setting is made.
func (t TLS) Enabled() bool { return t != TLS{} }

// Influx is the InfluxDB v2 write API target.
type Influx struct {
	// URL of InfluxDB (http or https); empty disables writing to InfluxDB.
	URL string `json:"url" mapstructure:"url"`
	// Token is the API token ("user:password" for InfluxDB 1.8).
	Token string `json:"token" mapstructure:"token"`
	// TokenFile, when set, is read at load into Token.
	TokenFile string `json:"token_file" mapstructure:"token_file"`
	// Org is the organization (empty for InfluxDB 1.8 and 3.x).
	Org string `json:"org" mapstructure:"org"`
	// Bucket receives the points ("db/rp" for InfluxDB 1.8).
	Bucket string `json:"bucket" mapstructure:"bucket"`
	// BatchSize is the most points in one write, 1..100000.
	BatchSize int `json:"batch_size" mapstructure:"batch_size"`
	// FlushInterval is the longest a partial batch waits.
	FlushInterval time.Duration `json:"flush_interval" mapstructure:"flush_interval"`
	// Timeout bounds one write request.
	Timeout time.Duration `json:"timeout" mapstructure:"timeout"`
	// Gzip compresses write requests, except to a loopback address
	// (localhost, 127.0.0.0/8, ::1), where it would only cost CPU.
	Gzip bool `json:"gzip" mapstructure:"gzip"`
	// MaxRetryInterval caps the back-off between retries of a failed write.
	MaxRetryInterval time.Duration `json:"max_retry_interval" mapstructure:"max_retry_interval"`
}

// Spool is the local durable queue between MQTT and InfluxDB.
type Spool struct {
	// Dir holds the spool's segments.
	Dir string `json:"dir" mapstructure:"dir"`
	// MaxBytes bounds the spool on disk (at least 1 MiB).
	MaxBytes int64 `json:"max_bytes" mapstructure:"max_bytes"`
	// SegmentBytes is the size of one segment file (at most MaxBytes).
	SegmentBytes int64 `json:"segment_bytes" mapstructure:"segment_bytes"`
	// CommitInterval is how long a group commit gathers appends before it
	// syncs; 0 syncs at once.
	CommitInterval time.Duration `json:"commit_interval" mapstructure:"commit_interval"`
}

// Devices is the device registry and what is accepted from devices.
type Devices struct {
	// Registry is the registry file (.yaml, .yml or .csv); serve needs it.
	Registry string `json:"registry" mapstructure:"registry"`
	// Unknown is "reject" (default) or "accept": accept readings from
	// devices missing from the registry, without registry tags.
	Unknown string `json:"unknown" mapstructure:"unknown"`
	// MaxPayloadBytes rejects larger messages.
	MaxPayloadBytes int64 `json:"max_payload_bytes" mapstructure:"max_payload_bytes"`
	// AcceptWindow rejects readings older than this.
	AcceptWindow time.Duration `json:"accept_window" mapstructure:"accept_window"`
	// MaxFuture rejects readings further ahead of the server clock.
	MaxFuture time.Duration `json:"max_future" mapstructure:"max_future"`
	// ReferenceTempC is the temperature (°C) of the ppm → mg/m³ conversion.
	ReferenceTempC float64 `json:"reference_temp_c" mapstructure:"reference_temp_c"`
}

// AcceptUnknown reports whether devices missing from the registry are accepted.
func (d Devices) AcceptUnknown() bool { return d.Unknown == UnknownAccept }

// Alerting is the alert rule evaluation.
type Alerting struct {
	// Rules is a rules file; empty uses the shipped defaults.
	Rules string `json:"rules" mapstructure:"rules"`
	// StateDir keeps the alert state, the evaluator's spool checkpoint and
	// the devices' last readings and statuses (devices.json).
	StateDir string `json:"state_dir" mapstructure:"state_dir"`
	// Evaluate turns rule evaluation on.
	Evaluate bool `json:"evaluate" mapstructure:"evaluate"`
}

// Tickets is the supervision ticket store and its notifications.
type Tickets struct {
	// DSN is a SQLite file path, a SQLite "file:" URI, or a postgres:// URL.
	DSN string `json:"dsn" mapstructure:"dsn"`
	// Timezone is the IANA zone of ticket numbers, deadlines and reports.
	Timezone string `json:"timezone" mapstructure:"timezone"`
	// EscalationCheck is how often overdue tickets are looked for.
	EscalationCheck time.Duration `json:"escalation_check" mapstructure:"escalation_check"`
	// Notify lists who is told of ticket events.
	Notify Notify `json:"notify" mapstructure:"notify"`
}

// Notify configures ticket notifications.
type Notify struct {
	// Webhooks are POSTed a JSON body on each subscribed ticket event.
	Webhooks []Webhook `json:"webhooks" mapstructure:"webhooks"`
}

// Webhook is one notification endpoint.
type Webhook struct {
	// URL is the http or https endpoint.
	URL string `json:"url" mapstructure:"url"`
	// Events are the ticket events sent: open, escalate, close (default all).
	Events []string `json:"events" mapstructure:"events"`
	// Secret, when set, signs each request body.
	Secret string `json:"secret" mapstructure:"secret"`
	// SecretFile, when set, is read at load into Secret.
	SecretFile string `json:"secret_file" mapstructure:"secret_file"`
	// Timeout bounds one request.
	Timeout time.Duration `json:"timeout" mapstructure:"timeout"`
}

// Wants reports whether the webhook is subscribed to event.
func (w Webhook) Wants(event string) bool {
	for _, e := range w.Events {
		if e == event {
			return true
		}
	}
	return false
}

// HTTP is the API server.
type HTTP struct {
	// Listen is the host:port to listen on.
	Listen string `json:"listen" mapstructure:"listen"`
	// Tokens are the bearer tokens accepted, each with a role.
	Tokens []HTTPToken `json:"tokens" mapstructure:"tokens"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `json:"max_body_bytes" mapstructure:"max_body_bytes"`
	// Pprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on
	// this listener, without authentication: for profiling (scripts/bench.sh
	// BENCH_PPROF=1), never on an address others can reach. Off by default.
	Pprof bool `json:"pprof" mapstructure:"pprof"`
}

// HTTPToken is one bearer token of the HTTP API.
type HTTPToken struct {
	// Name identifies the token holder (unique); it appears in ticket history.
	Name string `json:"name" mapstructure:"name"`
	// Role is viewer, unit, supervisor or admin.
	Role string `json:"role" mapstructure:"role"`
	// OrgUnit is the responsible unit a "unit" token acts for (only for that role).
	OrgUnit string `json:"org_unit" mapstructure:"org_unit"`
	// Token is the bearer token: at least 16 characters, unique.
	Token string `json:"token" mapstructure:"token"`
	// TokenFile, when set, is read at load into Token.
	TokenFile string `json:"token_file" mapstructure:"token_file"`
}

// Log is the service log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `json:"level" mapstructure:"level"`
	// Format is text or json.
	Format string `json:"format" mapstructure:"format"`
}

// SlogLevel returns Level as a slog.Level (info when unset or unknown).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Byte size units.
const (
	kiB = int64(1) << 10
	miB = int64(1) << 20
	giB = int64(1) << 30
)

// Default returns the default configuration. It passes Validate; serve
// still needs Devices.Registry (see ValidateServe).
func Default() *Config {
	return &Config{
		MQTT: MQTT{
			Broker:          "tcp://127.0.0.1:1883",
			ClientID:        "sanitel",
			QoS:             1,
			TopicRoot:       "sanitation",
			ChirpStackTopic: "application/+/device/+/event/up",
			CleanSession:    false,
			KeepAlive:       30 * time.Second,
			ConnectTimeout:  10 * time.Second,
			MaxInflight:     1000,
		},
		Influx: Influx{
			Bucket:           "sanitation",
			BatchSize:        5000,
			FlushInterval:    time.Second,
			Timeout:          10 * time.Second,
			Gzip:             true,
			MaxRetryInterval: 30 * time.Second,
		},
		Spool: Spool{
			Dir:            "data/spool",
			MaxBytes:       giB,
			SegmentBytes:   64 * miB,
			CommitInterval: 2 * time.Millisecond,
		},
		Devices: Devices{
			Unknown:         UnknownReject,
			MaxPayloadBytes: 64 * kiB,
			AcceptWindow:    devices.DefaultAcceptWindow,
			MaxFuture:       devices.DefaultMaxFuture,
			ReferenceTempC:  devices.DefaultRefTempC,
		},
		Alerting: Alerting{
			StateDir: "data/alerting",
			Evaluate: true,
		},
		Tickets: Tickets{
			DSN:             "data/tickets.db",
			Timezone:        "Asia/Shanghai",
			EscalationCheck: time.Minute,
		},
		HTTP: HTTP{
			Listen:       "127.0.0.1:8080",
			MaxBodyBytes: miB,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// setDefaults fills the defaults of a webhook given in a list.
func (w *Webhook) setDefaults() {
	w.Timeout = 5 * time.Second
}

// allEvents is the default event list of a webhook.
func allEvents() []string { return []string{EventOpen, EventEscalate, EventClose} }

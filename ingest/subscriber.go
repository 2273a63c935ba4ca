package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// SubscriberOptions configure the MQTT subscriber.
type SubscriberOptions struct {
	Broker         string // tcp://host:1883, ssl://host:8883, ws://…
	ClientID       string
	Username       string
	Password       string
	TLS            *tls.Config // nil: the broker URL's scheme decides
	QoS            byte
	SharedGroup    string   // non-empty: subscribe as $share/<group>/<topic>
	Topics         []string // topic filters, without the $share prefix
	CleanSession   bool     // false (the default) keeps a persistent session
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	Pipeline       *Pipeline
	Metrics        *Metrics
	Logger         *slog.Logger
}

// Subscriber is sanitel's MQTT client: a persistent session with a fixed
// client id, QoS 1 by default, automatic acknowledgement disabled so that a
// message is acknowledged only once the pipeline made it durable. It
// resubscribes on every reconnect.
type Subscriber struct {
	opts   SubscriberOptions
	client mqtt.Client
	ctx    context.Context
	cancel context.CancelFunc
	ready  atomic.Bool
	// received counts deliveries handed to the pipeline.
	received atomic.Uint64
	mu       sync.Mutex
	err      error // last spool error, nil when healthy
	stop     sync.Once
}

// NewSubscriber returns a subscriber; Start connects it.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if opts.Pipeline == nil || opts.Metrics == nil {
		return nil, errors.New("ingest: subscriber needs a pipeline and metrics")
	}
	if len(opts.Topics) == 0 {
		return nil, errors.New("ingest: subscriber needs topics")
	}
	if opts.ClientID == "" {
		opts.ClientID = "sanitel"
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Subscriber{opts: opts}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	co := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetCleanSession(opts.CleanSession).
		SetKeepAlive(opts.KeepAlive).
		SetConnectTimeout(opts.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		// One router goroutine hands deliveries to the pipeline in order;
		// acknowledgements come later, from the spool's committer.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetResumeSubs(false).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(s.onLost).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			opts.Logger.Info("reconnecting to MQTT broker", "broker", opts.Broker)
		}).
		SetDefaultPublishHandler(s.handle).
		SetCustomOpenConnectionFn(openConn)
	if opts.TLS != nil {
		co.SetTLSConfig(opts.TLS)
	}
	s.client = mqtt.NewClient(co)
	return s, nil
}

// Start connects in the background; the client keeps retrying until Stop.
// Readiness (Ready) follows the broker acknowledging every subscription.
func (s *Subscriber) Start() {
	s.client.Connect() // with ConnectRetry the token completes only on success or Disconnect
}

func (s *Subscriber) filters() map[string]byte {
	f := make(map[string]byte, len(s.opts.Topics))
	for _, t := range s.opts.Topics {
		if s.opts.SharedGroup != "" {
			t = "$share/" + s.opts.SharedGroup + "/" + t
		}
		f[t] = s.opts.QoS
	}
	return f
}

func (s *Subscriber) onConnect(c mqtt.Client) {
	s.opts.Metrics.Reconnects.Inc()
	filters := s.filters()
	// No callback: paho would add a route per filter and match each
	// message against them with strings.Split of the topic and the filter
	// (a quarter of all allocations in a drain). Every delivery goes to the
	// default handler, s.handle, and the decoder parses the topic anyway.
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(s.opts.ConnectTimeout) {
		s.opts.Logger.Error("MQTT subscribe timed out; will retry on reconnect", "broker", s.opts.Broker)
		return
	}
	if err := tok.Error(); err != nil {
		s.opts.Logger.Error("MQTT subscribe failed", "broker", s.opts.Broker, "err", err)
		return
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code >= 0x80 {
				s.opts.Logger.Error("broker refused a subscription; check its ACL for sanitel's user", "topic", topic, "code", code)
				return
			}
		}
	}
	s.ready.Store(true)
	s.opts.Metrics.Connected.Set(1)
	topics := make([]string, 0, len(filters))
	for t := range filters {
		topics = append(topics, t)
	}
	s.opts.Logger.Info("subscribed", "broker", s.opts.Broker, "client_id", s.opts.ClientID, "topics", topics, "qos", s.opts.QoS)
}

func (s *Subscriber) onLost(_ mqtt.Client, err error) {
	s.ready.Store(false)
	s.opts.Metrics.Connected.Set(0)
	s.opts.Logger.Warn("MQTT connection lost", "broker", s.opts.Broker, "err", err)
}

func (s *Subscriber) handle(_ mqtt.Client, msg mqtt.Message) {
	s.received.Add(1)
	err := s.opts.Pipeline.Handle(s.ctx, msg.Topic(), msg.Payload(), msg.Retained(), msg.Ack)
	s.mu.Lock()
	changed := (err == nil) != (s.err == nil)
	s.err = err
	s.mu.Unlock()
	if changed && err != nil && !errors.Is(err, context.Canceled) {
		// Not acknowledged: the broker keeps the message and redelivers it
		// on the next session.
		s.opts.Logger.Error("cannot store readings in the spool; not acknowledging them", "err", err)
	} else if changed {
		s.opts.Logger.Info("spool accepts readings again")
	}
}

// Ready reports nil when connected with every subscription acknowledged
// and the last message was stored; otherwise why not.
func (s *Subscriber) Ready(context.Context) error {
	if !s.ready.Load() || !s.client.IsConnectionOpen() {
		return fmt.Errorf("not connected to %s with all subscriptions", s.opts.Broker)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("spool: %w", s.err)
	}
	return nil
}

// Stop disconnects without unsubscribing, so the persistent session keeps
// collecting messages for the next start. Deliveries not yet acknowledged
// are redelivered then. Safe to call twice.
func (s *Subscriber) Stop() {
	s.stop.Do(func() {
		s.cancel()
		s.ready.Store(false)
		s.opts.Metrics.Connected.Set(0)
		s.client.Disconnect(250)
	})
}

// Received returns how many messages the broker has delivered so far.
func (s *Subscriber) Received() uint64 { return s.received.Load() }

// Connected reports whether the subscriber holds a session with every
// subscription acknowledged.
func (s *Subscriber) Connected() bool { return s.ready.Load() && s.client.IsConnectionOpen() }

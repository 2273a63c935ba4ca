// Package demo runs a whole sanitel district on one machine with nothing
// installed: an embedded MQTT broker, the device simulator, and the service
// with SQLite tickets and a local spool.
package demo

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is an embedded MQTT broker (mochi-mqtt) listening on loopback.
type Broker struct {
	srv  *mqtt.Server
	addr string
}

// StartBroker starts a broker on addr ("127.0.0.1:1883"); if that port is
// taken it falls back to a free one. Anyone on loopback may connect.
func StartBroker(addr string, log *slog.Logger) (*Broker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		log.Warn("MQTT port taken; the embedded broker uses another", "wanted", addr, "using", ln.Addr().String())
	}
	addr = ln.Addr().String()
	ln.Close() // mochi listens itself; the port was free a moment ago

	srv := mqtt.New(&mqtt.Options{Logger: log.With("component", "broker"), InlineClient: false})
	// sanitel acknowledges after its spool commits, so allow many messages
	// in flight, as the shipped Mosquitto config does.
	srv.Options.Capabilities.ReceiveMaximum = 1000
	srv.Options.Capabilities.MaximumInflight = 60000
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case err := <-errc:
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	default:
	}
	return &Broker{srv: srv, addr: addr}, nil
}

// URL is the broker's address for MQTT clients, tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Addr is host:port.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker.
func (b *Broker) Close() error {
	if b == nil || b.srv == nil {
		return errors.New("broker not started")
	}
	return b.srv.Close()
}

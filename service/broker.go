package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sanitel/sanitel/config"
)

// CheckBroker connects to the broker once, as the configuration says
// (credentials, TLS), and disconnects, so that a configuration the broker
// will never accept stops start-up with the reason instead of leaving the
// subscriber retrying in silence. It returns an error naming the keys to
// fix when the broker refuses the login or its certificate does not
// verify. A broker that cannot be reached is only logged: it may be
// starting, and the subscriber keeps trying.
//
// The check uses its own client id (mqtt.client_id + "-check") with a clean
// session, so it never touches the persistent session of the subscriber.
func CheckBroker(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tlsConf, err := MQTTTLS(cfg)
	if err != nil {
		return err
	}
	o := mqtt.NewClientOptions().
		AddBroker(cfg.MQTT.Broker).
		SetClientID(cfg.MQTT.ClientID + "-check").
		SetUsername(cfg.MQTT.Username).
		SetPassword(cfg.MQTT.Password).
		SetCleanSession(true).
		SetProtocolVersion(4).
		SetConnectTimeout(cfg.MQTT.ConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false)
	if tlsConf != nil {
		o.SetTLSConfig(tlsConf)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		if refused := brokerRefusal(cfg, err); refused != nil {
			return refused
		}
		log.Warn("MQTT broker not reachable yet; will keep trying", "broker", cfg.Masked().MQTT.Broker, "err", err)
		return nil
	}
	c.Disconnect(100)
	return nil
}

// brokerRefusal turns a connection error that retrying cannot fix into one
// that says what to change; nil for any other error.
func brokerRefusal(cfg *config.Config, err error) error {
	broker := cfg.Masked().MQTT.Broker
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("mqtt: broker %s refused the login of user %q: %w; check mqtt.username and mqtt.password (or mqtt.password_file)",
			broker, cfg.MQTT.Username, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("mqtt: broker %s refused client id %q: %w; check mqtt.client_id", broker, cfg.MQTT.ClientID+"-check", err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("mqtt: broker %s: %w; check mqtt.tls.ca_file: it must hold the CA that signed the broker's certificate", broker, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("mqtt: broker %s: %w; check mqtt.tls.server_name or the host in mqtt.broker", broker, err)
	case errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("mqtt: broker %s: certificate: %w; check mqtt.tls.ca_file and the broker's certificate", broker, err)
	}
	return nil
}

package simulator

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mqttClient is a lean MQTT 3.1.1 publisher, one per connection.
//
// The simulator must cost little CPU next to the broker it loads. A
// general client such as paho spends several microseconds and a dozen
// allocations per publish (a token with a channel, a timer, a store key
// formatted with fmt, one write call per packet, three reads per PUBACK),
// more than Mosquitto spends on the message. This client only publishes:
// each PUBLISH is appended to a buffer that a writer goroutine sends in
// batches (the payload is copied there, so the generator may reuse its
// buffer at once); a reader goroutine takes the acknowledgements in
// batches; at most window QoS 1/2 publishes are unacknowledged. It
// reconnects with back-off when the connection drops; what was in flight
// then is counted as failed.
type mqttClient struct {
	id        string
	broker    *url.URL
	tlsCfg    *tls.Config
	user      string
	pass      string
	keepAlive time.Duration
	window    int
	counts    *counters
	log       *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a waiting publish or drain may go on
	conn    net.Conn
	session int  // incremented for every connection and at close
	up      bool // connected and not closing
	closing bool
	// disconnected: DISCONNECT is sent, the broker's closing the
	// connection is the end, not a loss to reconnect from.
	disconnected bool
	wbuf         []byte // bytes for the writer
	spare        []byte // the writer's other buffer
	qos0         int    // QoS 0 publishes in wbuf (done when written)
	writing      bool   // the writer is sending a batch
	idle         bool   // the writer waits for wake
	wake         chan struct{}
	inflight     int
	ids          [1 << 16]uint8 // packet id → kind of the unacknowledged publish
	nextID       uint16
	lastRead     atomic.Int64 // unix nanos of the last packet from the broker

	closed chan struct{} // closed by close
	wg     sync.WaitGroup
}

// counters are the acknowledgements of all connections of a Run.
type counters struct {
	acked, errors, statusAcked, statusErrors atomic.Int64
}

// What a publish is, for counting its outcome.
const (
	kindFree     uint8 = iota
	kindStream         // a message of the simulated stream
	kindStatus         // a device's retained status at start or end
	kindInternal       // the connection's own status
)

const (
	maxWriteBuf = 1 << 20 // a publish waits while this much is unsent
	maxPacket   = 268_435_455
)

// MQTT control packet types.
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktPubrec     = 5
	pktPubrel     = 6
	pktPubcomp    = 7
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// parseBroker parses tcp://host:port, ssl://host:port and their aliases;
// a bare host:port is tcp. Ports default to 1883 and 8883.
func parseBroker(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("simulator: broker %q: %w", s, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "tcp"
	case "ssl", "tls", "mqtts", "tcps", "mqtt+ssl":
		u.Scheme, port = "ssl", "8883"
	default:
		return nil, fmt.Errorf("simulator: broker %q: scheme %s is not supported (use tcp:// or ssl://)", s, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("simulator: broker %q: no host", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

func newMQTTClient(id string, broker *url.URL, o *Options, counts *counters, log *slog.Logger) *mqttClient {
	c := &mqttClient{
		id: id, broker: broker, tlsCfg: o.TLS, user: o.Username, pass: o.Password,
		keepAlive: 30 * time.Second, window: o.InFlight, counts: counts, log: log,
		wbuf: make([]byte, 0, 64<<10), spare: make([]byte, 0, 64<<10),
		closed: make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// connect dials the broker, performs the MQTT handshake and starts the
// session's reader and writer.
func (c *mqttClient) connect(ctx context.Context) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	var err error
	if c.broker.Scheme == "ssl" {
		cfg := c.tlsCfg
		if cfg == nil {
			cfg = &tls.Config{}
		}
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		conn, err = td.DialContext(ctx, "tcp", c.broker.Host)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.broker.Host)
	}
	if err != nil {
		return err
	}
	if err := c.handshake(conn); err != nil {
		conn.Close()
		return err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		conn.Close()
		return errors.New("closing")
	}
	c.session++
	c.conn, c.up, c.idle, c.writing = conn, true, false, false
	c.wake = make(chan struct{}, 1)
	c.lastRead.Store(time.Now().UnixNano())
	session, wake := c.session, c.wake
	c.mu.Unlock()
	c.wg.Go(func() { c.read(conn, session) })
	c.wg.Go(func() { c.write(conn, session, wake) })
	// Announce the connection; its will says offline when it drops.
	c.publish(context.Background(), ConnectionStatusTopic(c.id), 1, true, []byte("online"), kindInternal)
	return nil
}

// handshake sends CONNECT and waits for CONNACK.
func (c *mqttClient) handshake(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	will := ConnectionStatusTopic(c.id)
	flags := byte(0x02 | 0x04 | 1<<3 | 0x20) // clean session, will at QoS 1, retained
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 0}
	body = binary.BigEndian.AppendUint16(body[:8], uint16(c.keepAlive/time.Second))
	body = appendMQTTString(body, c.id)
	body = appendMQTTString(body, will)
	body = appendMQTTString(body, "offline")
	if c.user != "" {
		flags |= 0x80
		body = appendMQTTString(body, c.user)
		if c.pass != "" {
			flags |= 0x40
			body = appendMQTTString(body, c.pass)
		}
	}
	body[7] = flags
	pkt := appendLength([]byte{pktConnect << 4}, len(body))
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != pktConnack<<4 || ack[1] != 2 {
		return fmt.Errorf("expected CONNACK, got packet type %d", ack[0]>>4)
	}
	switch ack[3] {
	case 0:
		return nil
	case 1:
		return errors.New("connection refused: unacceptable protocol version")
	case 2:
		return errors.New("connection refused: client identifier rejected")
	case 3:
		return errors.New("connection refused: server unavailable")
	case 4:
		return errors.New("connection refused: bad user name or password")
	case 5:
		return errors.New("connection refused: not authorised")
	}
	return fmt.Errorf("connection refused: return code %d", ack[3])
}

func appendMQTTString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendLength appends an MQTT remaining length.
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// waitLocked waits on c.cond until it is signalled or ctx is done; it
// reports whether ctx is still live. c.mu must be held.
func (c *mqttClient) waitLocked(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	c.cond.Wait()
	stop()
	return ctx.Err() == nil
}

// publish queues one PUBLISH once the window and the buffer have room
// (waiting while reconnecting). It returns false, not counting the
// message, when ctx ends or the client is closing first.
func (c *mqttClient) publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte, kind uint8) bool {
	c.mu.Lock()
	for !c.up || qos > 0 && c.inflight >= c.window || len(c.wbuf) >= maxWriteBuf {
		// The connection's own status is not worth waiting for a
		// reconnection: the next connect publishes it anyway.
		if c.closing || !c.up && kind == kindInternal || !c.waitLocked(ctx) {
			c.mu.Unlock()
			return false
		}
	}
	h := byte(pktPublish<<4) | qos<<1
	if retained {
		h |= 1
	}
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	c.wbuf = append(c.wbuf, h)
	c.wbuf = appendLength(c.wbuf, n)
	c.wbuf = appendMQTTString(c.wbuf, topic)
	if qos > 0 {
		id := c.allocID()
		c.ids[id] = kind
		c.inflight++
		c.wbuf = binary.BigEndian.AppendUint16(c.wbuf, id)
	} else {
		c.qos0++
	}
	c.wbuf = append(c.wbuf, payload...)
	c.wakeWriterLocked()
	c.mu.Unlock()
	return true
}

// allocID returns a free packet id; the window keeps most of them free.
func (c *mqttClient) allocID() uint16 {
	for {
		c.nextID++
		if c.nextID != 0 && c.ids[c.nextID] == kindFree {
			return c.nextID
		}
	}
}

func (c *mqttClient) wakeWriterLocked() {
	if c.idle && c.wake != nil {
		c.idle = false
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// write sends the buffer in batches until the session ends. Between
// batches it pings the broker every keepAlive/2 and gives the session up
// when the broker has said nothing for two keep-alive periods.
func (c *mqttClient) write(conn net.Conn, session int, wake chan struct{}) {
	ping := time.NewTicker(c.keepAlive / 2)
	defer ping.Stop()
	c.mu.Lock()
	for {
		for len(c.wbuf) == 0 && c.session == session {
			c.idle = true
			c.mu.Unlock()
			select {
			case <-wake:
			case <-ping.C:
				if silent := time.Since(time.Unix(0, c.lastRead.Load())); silent > 2*c.keepAlive {
					c.lost(session, fmt.Errorf("broker silent for %s", silent.Round(time.Second)))
					return
				}
				c.mu.Lock()
				if c.session == session {
					c.wbuf = append(c.wbuf, pktPingreq<<4, 0)
				}
				c.mu.Unlock()
			}
			c.mu.Lock()
		}
		c.idle = false
		if c.session != session {
			c.mu.Unlock()
			return
		}
		buf, q0 := c.wbuf, c.qos0
		c.wbuf, c.spare, c.qos0, c.writing = c.spare[:0], nil, 0, true
		c.mu.Unlock()
		// A broker that stops reading must not block the writer forever.
		conn.SetWriteDeadline(time.Now().Add(c.keepAlive))
		_, err := conn.Write(buf)
		if err != nil {
			c.counts.errors.Add(int64(q0))
		} else {
			c.counts.acked.Add(int64(q0))
		}
		c.mu.Lock()
		if c.session != session {
			c.mu.Unlock()
			return
		}
		c.writing = false
		if cap(buf) <= 4*maxWriteBuf {
			c.spare = buf[:0]
		}
		if err != nil {
			c.mu.Unlock()
			c.lost(session, err)
			return
		}
		c.cond.Broadcast()
	}
}

// read takes the broker's acknowledgements until the session ends. Acks
// already buffered are completed together under one lock.
func (c *mqttClient) read(conn net.Conn, session int) {
	br := bufio.NewReaderSize(conn, 32<<10)
	var done []uint16
	var body [4]byte
	for {
		h, err := br.ReadByte()
		if err != nil {
			c.lost(session, err)
			return
		}
		n, err := readLength(br)
		if err != nil {
			c.lost(session, err)
			return
		}
		if n <= len(body) {
			_, err = io.ReadFull(br, body[:n])
		} else {
			_, err = br.Discard(n)
		}
		if err != nil {
			c.lost(session, err)
			return
		}
		switch h >> 4 {
		case pktPuback, pktPubcomp:
			if n >= 2 {
				done = append(done, binary.BigEndian.Uint16(body[:2]))
			}
		case pktPubrec:
			if n >= 2 {
				c.mu.Lock()
				if c.session == session {
					c.wbuf = append(c.wbuf, pktPubrel<<4|2, 2, body[0], body[1])
					c.wakeWriterLocked()
				}
				c.mu.Unlock()
			}
		}
		// Block for the next packet only after completing what we have.
		if br.Buffered() == 0 || len(done) >= 256 {
			c.lastRead.Store(time.Now().UnixNano())
			if len(done) > 0 {
				c.complete(session, done)
				done = done[:0]
			}
		}
	}
}

func readLength(br *bufio.Reader) (int, error) {
	n, shift := 0, 0
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return n, nil
		}
		if shift += 7; shift > 21 {
			return 0, errors.New("malformed remaining length")
		}
	}
}

func (c *mqttClient) complete(session int, ids []uint16) {
	var acked, status int64
	c.mu.Lock()
	if c.session != session {
		c.mu.Unlock()
		return
	}
	for _, id := range ids {
		switch c.ids[id] {
		case kindFree:
			continue
		case kindStream:
			acked++
		case kindStatus:
			status++
		}
		c.ids[id] = kindFree
		c.inflight--
	}
	// Wake a waiting publish once a quarter of the window is free, not for
	// every ack: fewer, larger batches.
	if c.inflight <= c.window*3/4 {
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	c.counts.acked.Add(acked)
	c.counts.statusAcked.Add(status)
}

// lost ends a session after an error: what was in flight failed. Unless
// the client is closing, it reconnects in the background.
func (c *mqttClient) lost(session int, err error) {
	c.mu.Lock()
	if c.session != session || !c.up {
		c.mu.Unlock()
		return
	}
	if c.disconnected {
		c.endSessionLocked()
		c.cond.Broadcast()
		c.mu.Unlock()
		return
	}
	c.failLocked()
	c.mu.Unlock()
	c.log.Warn("connection lost; reconnecting", "client_id", c.id, "err", err)
	c.wg.Go(c.reconnect)
}

// endSessionLocked closes the connection and wakes the session's writer
// so that it returns.
func (c *mqttClient) endSessionLocked() {
	c.up = false
	c.session++
	c.conn.Close()
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// failLocked drops the connection and counts everything unsent or
// unacknowledged as failed.
func (c *mqttClient) failLocked() {
	c.endSessionLocked()
	var failed, status int64
	for id, k := range c.ids {
		switch k {
		case kindStream:
			failed++
		case kindStatus:
			status++
		}
		c.ids[id] = kindFree
	}
	failed += int64(c.qos0)
	c.inflight, c.qos0, c.wbuf, c.writing = 0, 0, c.wbuf[:0], false
	c.counts.errors.Add(failed)
	c.counts.statusErrors.Add(status)
	c.cond.Broadcast()
}

func (c *mqttClient) reconnect() {
	backoff := 500 * time.Millisecond
	for {
		select {
		case <-c.closed:
			return
		default:
		}
		err := c.connect(context.Background())
		if err == nil {
			c.log.Info("reconnected", "client_id", c.id)
			return
		}
		c.log.Debug("reconnect failed", "client_id", c.id, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// drain waits until nothing is buffered, being written or unacknowledged;
// false if ctx ended first or the connection is down.
func (c *mqttClient) drain(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.up && (c.inflight > 0 || len(c.wbuf) > 0 || c.writing) {
		if !c.waitLocked(ctx) {
			return false
		}
	}
	return c.up
}

// close marks the connection offline, disconnects cleanly (within ctx)
// and waits for the client's goroutines.
func (c *mqttClient) close(ctx context.Context) {
	if c.publish(ctx, ConnectionStatusTopic(c.id), 1, true, []byte("offline"), kindInternal) && c.drain(ctx) {
		c.mu.Lock()
		if c.up {
			c.wbuf = append(c.wbuf, pktDisconnect<<4, 0)
			c.disconnected = true
			c.wakeWriterLocked()
		}
		c.mu.Unlock()
		if c.drain(ctx) {
			// Let the broker close first (it does on DISCONNECT): closing
			// our end with bytes unread would reset the connection, and a
			// broker that sees the reset before the DISCONNECT sends the
			// will, a second "offline".
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c.mu.Lock()
			for c.up && c.waitLocked(wctx) {
			}
			c.mu.Unlock()
			cancel()
		}
	}
	c.mu.Lock()
	c.closing = true
	close(c.closed)
	if c.up {
		c.endSessionLocked()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.wg.Wait()
}

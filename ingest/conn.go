package ingest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBufferSize is the read buffer in front of the broker connection: a
// drained backlog arrives in full TCP segments, so a few tens of KiB take
// hundreds of PUBLISH packets per read.
const readBufferSize = 64 << 10

// openConn dials the broker as paho's own openConnection does (tcp and
// mqtt through any proxy in the environment, ssl/tls/mqtts, ws/wss, unix)
// and wraps the connection in a read buffer and a write coalescer.
//
// Why: paho reads each packet with three or more read(2) calls (the first
// byte, each byte of the remaining length, then the body). Draining a
// backlog, those syscalls were about a fifth of sanitel's CPU; through a
// buffer one read takes many packets.
func openConn(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var (
		conn net.Conn
		err  error
	)
	switch uri.Scheme {
	case "mqtt", "tcp":
		conn, err = proxy.FromEnvironmentUsing(d).Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if os.Getenv("all_proxy") == "" {
			conn, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
			break
		}
		if conn, err = proxy.FromEnvironment().Dial("tcp", uri.Host); err == nil {
			tc := tls.Client(conn, o.TLSConfig)
			if err = tc.Handshake(); err != nil {
				conn.Close()
			}
			conn = tc
		}
	case "ws", "wss":
		u := *uri
		u.User = nil
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		conn, err = mqtt.NewWebsocket(u.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "unix":
		path := uri.Host
		if path == "" {
			path = uri.Path
		}
		conn, err = d.Dial("unix", path)
	default:
		return nil, fmt.Errorf("unknown protocol %q", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}

// maxWriteBacklog bounds the bytes Write queues for the flusher; past it
// Write waits, so a broker that stops reading still holds paho back.
const maxWriteBacklog = 1 << 20

// bufferedConn reads through a buffer and coalesces writes.
//
// Reads: paho reads from one goroutine at a time (the handshake, then its
// incoming loop), so the buffer needs no lock.
//
// Writes: paho writes every packet with its own write(2), and the spool's
// group commit acknowledges up to a few thousand messages at once, so a
// drain made one syscall per PUBACK. Write only queues the bytes; one
// flusher goroutine writes whatever queued while its previous write was in
// the kernel. Idle, a packet leaves at once (no delay is added); busy,
// hundreds of PUBACKs leave in one write. An acknowledgement still goes
// out only after paho was asked to send it, so durability is unchanged; a
// write error is returned by the next Write and closes the connection, so
// paho notices the loss as it would have.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	drained sync.Cond // the flusher took the queue
	out     []byte    // queued for the flusher
	spare   []byte    // the flusher's last buffer, to reuse
	err     error     // sticky: the write error, or net.ErrClosed after Close
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newBufferedConn(conn net.Conn) *bufferedConn {
	c := &bufferedConn{
		Conn: conn,
		r:    bufio.NewReaderSize(conn, readBufferSize),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	c.drained.L = &c.mu
	go c.flush()
	return c
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write queues p for the flusher. It returns the error of an earlier write,
// if one failed, or net.ErrClosed after Close.
func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && len(c.out) > 0 && len(c.out)+len(p) > maxWriteBacklog {
		c.drained.Wait()
	}
	if err := c.err; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.out = append(c.out, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // the flusher is already due to look
	}
	return len(p), nil
}

// flush writes what is queued until Close, then once more.
func (c *bufferedConn) flush() {
	defer close(c.done)
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			c.writeQueued()
			return
		}
		c.writeQueued()
	}
}

func (c *bufferedConn) writeQueued() {
	c.mu.Lock()
	buf := c.out
	c.out, c.spare = c.spare[:0], nil
	failed := c.err != nil
	c.drained.Broadcast()
	c.mu.Unlock()
	if len(buf) == 0 || failed {
		return
	}
	_, err := c.Conn.Write(buf)
	c.mu.Lock()
	c.spare = buf[:0]
	if err != nil && c.err == nil {
		c.err = err
		c.drained.Broadcast()
	}
	c.mu.Unlock()
	if err != nil {
		c.Conn.Close() // the reader fails too, and paho reconnects
	}
}

// Close sends what is queued (paho closes right after writing DISCONNECT),
// for at most a second, then closes the connection. Safe to call twice.
func (c *bufferedConn) Close() error {
	c.once.Do(func() {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		close(c.stop)
		<-c.done
		c.mu.Lock()
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.drained.Broadcast()
		c.mu.Unlock()
	})
	return c.Conn.Close()
}

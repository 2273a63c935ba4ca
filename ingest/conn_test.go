package ingest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// TestBufferedConnWritesInOrder checks that coalesced writes reach the peer
// complete and in order, that Close sends what is still queued, and that
// reads through the buffer see the peer's bytes.
func TestBufferedConnWritesInOrder(t *testing.T) {
	client, server := net.Pipe()
	c := newBufferedConn(client)

	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	var want bytes.Buffer
	for i := range 1000 {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d in order", len(b), want.Len())
	}
	if _, err := c.Write([]byte{0xc0, 0}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
	c.Close() // twice is fine
}

func TestBufferedConnReads(t *testing.T) {
	client, server := net.Pipe()
	c := newBufferedConn(client)
	defer c.Close()
	go func() {
		server.Write([]byte{0x30, 0x03, 'a', 'b', 'c'})
		server.Close()
	}()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "\x30\x03abc" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// TestBufferedConnWriteError checks that a failed write is reported by a
// later Write, so paho sees the connection as lost.
func TestBufferedConnWriteError(t *testing.T) {
	client, server := net.Pipe()
	server.Close() // every write to client now fails
	c := newBufferedConn(client)
	defer c.Close()
	var err error
	for err == nil {
		_, err = c.Write([]byte{0x40, 0x02, 0, 1})
	}
	if errors.Is(err, net.ErrClosed) {
		return // the flusher closed client after its write failed
	}
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Write = %v, want the pipe's error", err)
	}
}

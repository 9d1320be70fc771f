package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// TestMessagesOfEveryLengthArriveWhole: the hub frames its messages
// itself; a client reads each whole, at every length where the frame's
// header changes (7-bit, 16-bit and 64-bit lengths).
func TestMessagesOfEveryLengthArriveWhole(t *testing.T) {
	th := startHub(t, nil)
	c := th.dial(t)
	signIn(t, c, nil)
	var sub Subscriber
	th.vaults.only().each(func(s Subscriber) { sub = s })
	for _, size := range []int{50, 125, 126, 127, 65535, 65536, 65537, 300000} {
		overhead := len(mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: "", Value: float64(size)}))
		name := strings.Repeat("x", size-overhead)
		frame := mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: name, Value: float64(size)})
		if len(frame) != size {
			t.Fatalf("built a %d-byte frame, want %d", len(frame), size)
		}
		if !sub.Send(frame) {
			t.Fatalf("a %d-byte frame refused", size)
		}
		if f := next(t, c, protocol.TypeSignal); f.Value != float64(size) || f.Name != name {
			t.Fatalf("a %d-byte frame arrived as value %g with a %d-byte name", size, f.Value, len(f.Name))
		}
	}
}

// TestPingsNeverCutAMessage: coder/websocket's pings go out through the
// same wire as the hub's messages; with a ping every few milliseconds
// between and within bursts of thousands of messages up to 2 KB, the
// client reads every message whole and in order, and the connection
// keeps its heartbeat.
func TestPingsNeverCutAMessage(t *testing.T) {
	th := startHub(t, func(c *Config) { c.PingInterval, c.SendQueue = 2*time.Millisecond, 100000 })
	c := th.dial(t)
	signIn(t, c, nil)
	var sub Subscriber
	th.vaults.only().each(func(s Subscriber) { sub = s })
	const n = 3000
	go func() {
		for i := 0; i < n; i++ {
			frame := mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: strings.Repeat("p", (i*37)%2000), Value: float64(i)})
			if !sub.Send(frame) {
				return
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // let pings fall between messages and within bursts
			}
		}
	}()
	for i := 0; i < n; i++ {
		if f := next(t, c, protocol.TypeSignal); f.Value != float64(i) || len(f.Name) != (i*37)%2000 {
			t.Fatalf("message %d arrived as value %g with a %d-byte name", i, f.Value, len(f.Name))
		}
	}
	pings := testutil.ToFloat64(th.metrics.Disconnects.WithLabelValues("heartbeat"))
	if pings != 0 {
		t.Fatalf("%g connections lost their heartbeat", pings)
	}
}

// TestNoMessageAfterTheCloseFrame: once a close frame went out through
// the wire (the hub's close, or the library answering the client's),
// the hub's messages are refused, and nothing follows it on the socket.
func TestNoMessageAfterTheCloseFrame(t *testing.T) {
	var out bytes.Buffer
	w := &wire{w: &out}
	if err := w.writeMessage(appendTextFrame(nil, []byte("before"))); err != nil {
		t.Fatal(err)
	}
	closeFrame := []byte{0x88, 0x02, 0x03, 0xe8} // final, close, 1000
	if _, err := w.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	if err := w.writeMessage(appendTextFrame(nil, []byte("after"))); !errors.Is(err, errWireClosed) {
		t.Fatalf("a message after the close frame: %v", err)
	}
	want := append(appendTextFrame(nil, []byte("before")), closeFrame...)
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("on the socket: %x, want %x", out.Bytes(), want)
	}
}

// TestSignalsWrittenInPartArriveWhole: a client that stops reading fills
// its socket; signals the fan-out writes without waiting then go out in
// part (the rest left to the connection's writer) or not at all (queued).
// When it reads again, every signal arrives whole and in order.
func TestSignalsWrittenInPartArriveWhole(t *testing.T) {
	var partial atomic.Int64
	partialHook = func() { partial.Add(1) }
	t.Cleanup(func() { partialHook = nil })
	th := startHub(t, func(c *Config) { c.WriteTimeout = time.Minute }) // the client reads it all, slowly
	c := stallingDial(t, th, 256<<10)
	signIn(t, c, nil)
	next(t, c, protocol.TypeSignals)
	var conn *conn
	th.h.mu.Lock()
	for cn := range th.h.conns {
		conn = cn
	}
	th.h.mu.Unlock()
	const n = 1200 // 9.6 MB: more than the node's send buffer and the client's receive buffer hold
	pad := strings.Repeat("z", 8<<10)
	for i := 0; i < n; i++ {
		// A name each: nothing conflated, every one must arrive.
		frame := mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: fmt.Sprintf("S%05d/%s", i, pad), Value: float64(i)})
		conn.SendSignal(fmt.Sprintf("S%05d", i), signalOut{frame: frame, framed: appendTextFrame(nil, frame)})
	}
	for i := 0; i < n; i++ {
		f := next(t, c, protocol.TypeSignal)
		if f.Value != float64(i) || f.Name != fmt.Sprintf("S%05d/%s", i, pad) {
			t.Fatalf("signal %d arrived as %g (a %d-byte name)", i, f.Value, len(f.Name))
		}
	}
	if partial.Load() == 0 {
		t.Fatal("no signal was written in part: the test did not fill the socket")
	}
}

// TestSocketsDroppedMidFanoutLeaveTheOthersServed: half the dashboards drop
// their sockets while values stream to all of them (writes from the
// fan-out then fail on dead sockets); the node keeps serving the others,
// each of which gets the last value.
func TestSocketsDroppedMidFanoutLeaveTheOthersServed(t *testing.T) {
	th := startHub(t, nil)
	const n = 20
	conns := make([]*client.Conn, n)
	for i := range conns {
		conns[i] = th.dial(t)
		signIn(t, conns[i], nil)
		next(t, conns[i], protocol.TypeSignals)
	}
	const values = 400
	for v := 1; v <= values; v++ {
		if v == values/2 {
			for _, c := range conns[:n/2] {
				c.CloseNow()
			}
		}
		if err := th.bus.Publish(testCtx(t), Signal{Name: "ETH/USD", Value: float64(v), At: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns[n/2:] {
		for next(t, c, protocol.TypeSignal).Value != values {
		}
	}
}

// stallingDial connects a client that buffers one frame and then stops
// reading until the test calls Next, on a socket with a small receive
// buffer: on a host whose TCP autotuning lets a receive buffer grow to
// many megabytes (32 MiB here), the hub's writes would otherwise never
// fill it.
func stallingDial(t *testing.T, th *testHub, rcvbuf int) *client.Conn {
	t.Helper()
	smallRcv := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(rcvbuf)
		}
		return c, err
	}}}
	c, err := client.Dial(testCtx(t), th.url, &client.DialOptions{Buffer: 1, HTTPClient: smallRcv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	return c
}

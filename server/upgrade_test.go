package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// TestFrameRightBehindTheUpgradeIsRead: a client may send its first frame
// in the same packet as the upgrade request, so those bytes are already in
// net/http's buffer when the socket is handed over with buffers of its own
// (hub/hijack.go). Here the first frame is a ping; the pong proves it was
// read.
func TestFrameRightBehindTheUpgradeIsRead(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	c, err := net.Dial("tcp", tn.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + tn.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + protocol.Subprotocol + "\r\n\r\n"
	payload := []byte("right-behind")
	mask := [4]byte{1, 2, 3, 4}
	ping := []byte{0x89, 0x80 | byte(len(payload))}
	ping = append(ping, mask[:]...)
	for i, b := range payload {
		ping = append(ping, b^mask[i%4])
	}
	if _, err := c.Write(append([]byte(req), ping...)); err != nil { // one write: one packet on loopback
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("no pong for the ping sent with the upgrade: %v", err)
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(br, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(br, l[:])
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0f == 0xA { // pong
			if string(body) != string(payload) {
				t.Fatalf("pong carries %q, want %q", body, payload)
			}
			return
		}
	}
}

package hub

import (
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

// kill ends the connection once, with code and reason sent to the client.
func (c *conn) kill(code websocket.StatusCode, reason, metric string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.h.cfg.Metrics.Disconnects.WithLabelValues(metric).Inc()
		if metric != "client" && metric != "shutdown" && metric != "unbound" {
			c.logAt(zerolog.WarnLevel).Int("code", int(code)).Str("reason", metric).Msg("closing connection")
		}
		c.outMu.Lock()
		c.cancel()
		c.tasks.Add(1)
		c.outMu.Unlock()
		// The close handshake: the read loop reads the client's close
		// frame, and its Read then ends.
		go func() {
			defer c.tasks.Done()
			c.sock.close(code, reason)
		}()
	})
}

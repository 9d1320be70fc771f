package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// The command pipeline: a signed command from a bound session, checked and
// applied by the vault (see "The life of a command" in ARCHITECTURE.md).

// Command authenticates and applies one signed command for the session the
// connection is bound to. It returns the ack frame. Every check runs before
// any state is touched; a refused command changes nothing (not even the
// session's last sequence number). Errors are *protocol.Error.
func (v *Vault) Command(ctx context.Context, sessionID, body, sig string) (protocol.Ack, error) {
	type answer struct {
		ack protocol.Ack
		err error
	}
	res := make(chan answer, 1)
	if err := v.CommandAsync(ctx, sessionID, body, sig, func(a protocol.Ack, err error) { res <- answer{a, err} }); err != nil {
		return protocol.Ack{}, err
	}
	select {
	case a := <-res:
		return a.ack, a.err
	case <-v.done:
		select { // the command may have been the last thing it ran
		case a := <-res:
			return a.ack, a.err
		default:
			return protocol.Ack{}, v.endedErr()
		}
	case <-ctx.Done():
		return protocol.Ack{}, ctx.Err()
	}
}

// CommandAsync is Command without waiting, so a connection can have many
// commands in flight (and one vault's queued commands share a commit). It
// waits only while the vault's mailbox is full. reply runs on the vault's
// goroutine once the ack is durable or the command is refused, in the
// order the commands were queued; it must not block. If CommandAsync
// returns an error the command was not queued and reply is never called.
func (v *Vault) CommandAsync(ctx context.Context, sessionID, body, sig string, reply func(protocol.Ack, error)) error {
	// The signature check, the costliest step, runs here on the caller's
	// goroutine, so commands to one vault are verified on every core while
	// the vault's goroutine does the rest. The goroutine uses the result
	// only if the session still has the key it was checked against.
	pre := v.preverify(sessionID, body, sig)
	var ack protocol.Ack
	return v.enqueue(ctx, true, func() error {
		var err error
		ack, err = v.command(sessionID, body, sig, pre)
		if err != nil {
			v.m.metrics.CommandsRefused.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Str("session", truncateID(sessionID)).Msg("command refused")
			return err
		}
		v.m.metrics.Commands.Inc()
		return nil
	}, func(err error) { reply(ack, err) })
}

// verified is a signature check made off the vault's goroutine: which key
// it used and what it found.
type verified struct {
	key *ecdsa.PublicKey
	err error
}

// preverify checks sig over body with the key the session has now (as
// published by the goroutine). It returns a zero verified when the session
// is unknown here; the goroutine then decides.
func (v *Vault) preverify(sessionID, body, sig string) verified {
	k, ok := v.keys.Load(sessionID)
	if !ok {
		return verified{}
	}
	key := k.(*ecdsa.PublicKey)
	return verified{key: key, err: protocol.VerifyBody(key, body, sig)}
}

func (v *Vault) command(sessionID, body, sig string, pre verified) (protocol.Ack, error) {
	now := v.m.now()
	if v.conn == nil {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeSessionUnknown, "no such vault")
	}
	s, err := v.liveSession(sessionID, now)
	if err != nil {
		return protocol.Ack{}, err
	}
	if pre.key != s.Key {
		pre.err = protocol.VerifyBody(s.Key, body, sig)
	}
	if pre.err != nil {
		return protocol.Ack{}, pre.err
	}
	cmd, err := protocol.ParseCommand(body)
	if err != nil {
		return protocol.Ack{}, err
	}
	if !sameAddress(cmd.Vault, v.addr) {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeWrongVault, "command is for vault %q, not this one", truncateID(cmd.Vault))
	}
	if cmd.Session != s.ID {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeSessionUnknown, "command names session %q, not this connection's", truncateID(cmd.Session))
	}
	if cmd.Seq <= s.LastSeq {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeBadSeq, "seq %d is not above the last accepted %d", cmd.Seq, s.LastSeq)
	}
	var result any
	version, err := v.write(func(t *store.Tx) error {
		var err error
		if result, err = v.apply(t, cmd); err != nil {
			return err
		}
		t.Then(func() { s.LastSeq = cmd.Seq })
		return store.SetLastSeq(v.conn, s.ID, cmd.Seq)
	})
	if err != nil {
		if protocol.AsError(err) != nil {
			return protocol.Ack{}, err
		}
		return protocol.Ack{}, v.fault("apply "+cmd.Op, err)
	}
	raw, _ := json.Marshal(result)
	return protocol.Ack{Type: protocol.TypeAck, Seq: cmd.Seq, Version: version, Result: raw}, nil
}

func sameAddress(s string, a common.Address) bool {
	return common.IsHexAddress(s) && strings.HasPrefix(s, "0x") && common.HexToAddress(s) == a
}

func truncateID(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func codeOf(err error) string {
	if pe := protocol.AsError(err); pe != nil {
		return string(pe.Code)
	}
	return string(protocol.CodeInternal)
}

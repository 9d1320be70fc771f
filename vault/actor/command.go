package actor

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// The command pipeline: a signed command from a bound session, checked and
// applied by the vault (ARCHITECTURE.md §2, "A command → commit → ack").

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
			v.cfg.Metrics.CommandsRefused.WithLabelValues(CodeOf(err)).Inc()
			v.log.Info().Err(err).Str("session", Short(sessionID)).Msg("command refused")
			return err
		}
		v.cfg.Metrics.Commands.Inc()
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
	now := v.now()
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
		return protocol.Ack{}, protocol.Errorf(protocol.CodeWrongVault, "command is for vault %q, not this one", Short(cmd.Vault))
	}
	if cmd.Session != s.ID {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeSessionUnknown, "command names session %q, not this connection's", Short(cmd.Session))
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

// apply runs one authenticated command inside a write transaction.
func (v *Vault) apply(t *store.Tx, cmd protocol.Command) (any, error) {
	switch cmd.Op {
	case protocol.OpTriggerCreate, protocol.OpTriggerUpdate, protocol.OpTriggerPause, protocol.OpTriggerResume, protocol.OpTriggerDelete:
		tr, err := v.applyTrigger(t, cmd)
		if err != nil {
			return nil, err
		}
		// The owner's own changes are in the activity too.
		ev := rules.Event{Cause: "command", Now: t.Now}
		if err := v.putEvaluation(t, ev, tr.ID, rules.CommandOutcomes[cmd.Op], tr.Name); err != nil {
			return nil, err
		}
		return map[string]string{"id": tr.ID}, nil
	case protocol.OpTriggerList:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return map[string]any{"triggers": v.sortedTriggers()}, nil
	case protocol.OpTriggerGrant:
		var spec protocol.TriggerSpec
		if err := decodeArgs(cmd.Args, &spec); err != nil {
			return nil, err
		}
		if err := rules.Validate(&spec, t.Now); err != nil {
			return nil, err
		}
		return exec.UnsignedTriggerGrant(v.cfg.Chain, v.owner, v.ring.Address, spec)
	case protocol.OpActivityList:
		var a protocol.ActivityArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.activity(a)
	case protocol.OpSessionEnd:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return v.endSession(t, cmd.Session)
	case protocol.OpKeyRotate:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return v.rotateKey(t)
	case protocol.OpVaultExport:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return v.export()
	case protocol.OpVaultRestore:
		return v.askRestore(t, cmd.Args)
	case protocol.OpAlertsSet:
		return v.setAlerts(t, cmd.Args)
	case protocol.OpAlertsConfirm:
		return v.confirmAlerts(t, cmd.Args)
	case protocol.OpGrantAdd:
		return v.addGrant(t, cmd.Args)
	case protocol.OpGrantRevoke:
		return v.revokeGrant(t, cmd.Args)
	default:
		return nil, protocol.Errorf(protocol.CodeUnknownOp, "unknown op %q", Short(cmd.Op))
	}
}

// applyTrigger runs a trigger command and returns the trigger it changed
// (as it was, for a delete).
func (v *Vault) applyTrigger(t *store.Tx, cmd protocol.Command) (*rules.Trigger, error) {
	switch cmd.Op {
	case protocol.OpTriggerCreate:
		var spec protocol.TriggerSpec
		if err := decodeArgs(cmd.Args, &spec); err != nil {
			return nil, err
		}
		return v.createTrigger(t, spec)
	case protocol.OpTriggerUpdate:
		var a protocol.UpdateArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.updateTrigger(t, a)
	default:
		var a protocol.IDArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.changeTrigger(t, cmd.Op, a.ID)
	}
}

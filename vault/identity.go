package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// session is a signed-in delegate key and the last sequence number the
// vault accepted from it.
type session struct {
	id        string // the SIWE nonce that created it
	key       *ecdsa.PublicKey
	expiresAt int64 // unix ms
	lastSeq   uint64
}

// SignInRequest is a sign-in as the hub received it. The vault trusts none
// of it: Nonce is only the nonce the hub says it issued on this socket,
// checked in addition to the vault's own checks.
type SignInRequest struct {
	Message   string
	Signature string
	Nonce     string
	Since     *uint64
	Sub       Subscriber
}

// Bound is what a successful sign-in or resume binds a connection to.
type Bound struct {
	Vault   *Vault
	Session string
}

// SignIn verifies a SIWE sign-in against the vault's own configuration and
// records, creates the session, sends sub the ready frame and the state,
// and subscribes it. The first sign-in of an address creates its vault.
// Errors are *protocol.Error; nothing is written on error.
func (v *Vault) SignIn(ctx context.Context, req SignInRequest) (Bound, error) {
	var b Bound
	err := v.do(ctx, func() error {
		s, err := v.signIn(ctx, req)
		if err != nil {
			v.m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Msg("sign-in refused")
			if v.conn == nil {
				v.forget = true // an unborn vault that failed its first sign-in
			}
			return err
		}
		b = Bound{Vault: v, Session: s.id}
		if ctx.Err() != nil {
			return ctx.Err() // the caller is gone: do not subscribe its connection
		}
		return v.bind(s, req.Since, req.Sub)
	})
	return b, err
}

func (v *Vault) signIn(ctx context.Context, req SignInRequest) (*session, error) {
	cfg := v.m.cfg
	now := v.m.now()
	msg, err := protocol.ParseMessage(req.Message)
	if err != nil {
		return nil, err
	}
	if msg.Address != v.addr {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "message is for %s, not this vault", msg.Address.Hex())
	}
	sig, err := protocol.DecodeHexSignature(req.Signature)
	if err != nil {
		return nil, err
	}
	if err := msg.Verify(sig, protocol.VerifyOptions{Domains: cfg.Domains, ChainID: cfg.ChainID, Nonce: req.Nonce,
		Now: now, MaxFutureIssuedAt: time.Minute}); err != nil {
		return nil, err
	}
	if v.conn != nil && msg.Address != v.owner {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "signer %s is not this vault's owner", msg.Address.Hex())
	}
	if err := v.m.checkNonce(msg.Nonce, now); err != nil {
		return nil, err
	}
	key, err := protocol.DelegateFromResources(msg.Resources)
	if err != nil {
		return nil, err
	}
	if v.conn == nil {
		if err := v.openFile(ctx, true); err != nil {
			v.log.Error().Err(err).Msg("create vault file")
			return nil, protocol.Errorf(protocol.CodeInternal, "could not create the vault")
		}
		v.log.Info().Msg("vault created")
		v.m.metrics.VaultsCreated.Inc()
	}
	if err := v.checkUnused(msg.Nonce); err != nil {
		return nil, err
	}
	expires := now.Add(cfg.MaxSessionTTL)
	if exp := msg.ExpirationTimeValue(); !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	// Cloned: the nonce is a substring of the whole sign-in message, which
	// the session would otherwise keep alive for its life.
	s := &session{id: strings.Clone(msg.Nonce), key: key, expiresAt: expires.UnixMilli()}
	_, err = v.write(func(t *tx) error {
		if err := recordNonce(v.conn, msg.Nonce, now, cfg.NonceTTL); err != nil {
			return err
		}
		if err := exec(v.conn, `DELETE FROM sessions WHERE expires_at <= ?;`, now.UnixMilli()); err != nil {
			return err
		}
		return exec(v.conn, `INSERT INTO sessions (id, delegate, created_at, expires_at, last_seq) VALUES (?, ?, ?, ?, 0);`,
			s.id, protocol.EncodeDelegateKey(key), now.UnixMilli(), s.expiresAt)
	})
	if err != nil {
		return nil, v.internal("record session", err)
	}
	v.addSession(s)
	v.log.Info().Str("session", s.id).Time("expires", expires).Msg("signed in")
	return s, nil
}

// bind sends the ready frame and the state to sub and subscribes it.
func (v *Vault) bind(s *session, since *uint64, sub Subscriber) error {
	ready := protocol.Ready{Type: protocol.TypeReady, Vault: v.addr.Hex(), Owner: v.owner.Hex(), Session: s.id,
		LastSeq: s.lastSeq, Version: v.version, ExpiresAt: s.expiresAt}
	if !sub.Send(mustJSON(ready)) {
		return nil
	}
	if err := v.attach(sub, since); err != nil {
		return v.internal("attach", err)
	}
	return nil
}

// Resume re-binds a connection to an existing session: body is a
// protocol.Resume signed by the session's delegate key, naming the fresh
// nonce of this socket. Errors are *protocol.Error.
func (v *Vault) Resume(ctx context.Context, body, sig, nonce string, sub Subscriber) (Bound, error) {
	var b Bound
	err := v.do(ctx, func() error {
		s, since, err := v.resume(body, sig, nonce)
		if err != nil {
			v.m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Msg("resume refused")
			return err
		}
		b = Bound{Vault: v, Session: s.id}
		if ctx.Err() != nil {
			return ctx.Err() // the caller is gone: do not subscribe its connection
		}
		return v.bind(s, since, sub)
	})
	return b, err
}

func (v *Vault) resume(body, sig, nonce string) (*session, *uint64, error) {
	now := v.m.now()
	if v.conn == nil {
		return nil, nil, protocol.Errorf(protocol.CodeSessionUnknown, "no such vault")
	}
	r, err := protocol.ParseResume(body)
	if err != nil {
		return nil, nil, err
	}
	s, err := v.liveSession(r.Session, now)
	if err != nil {
		return nil, nil, err
	}
	if err := protocol.VerifyBody(s.key, body, sig); err != nil {
		return nil, nil, err
	}
	if !sameAddress(r.Vault, v.addr) {
		return nil, nil, protocol.Errorf(protocol.CodeWrongVault, "resume is for vault %q, not this one", r.Vault)
	}
	if r.Nonce != nonce {
		return nil, nil, protocol.Errorf(protocol.CodeNonceUnknown, "resume nonce is not the one issued on this socket")
	}
	if err := v.m.checkNonce(r.Nonce, now); err != nil {
		return nil, nil, err
	}
	if err := v.checkUnused(r.Nonce); err != nil {
		return nil, nil, err
	}
	// Recorded in memory, and in the file with the next batch of them or
	// when the file closes (flushNonces): a resume writes nothing on its
	// way. The record is lost only if the node ends before that, and a
	// restarted node refuses every nonce issued before it (checkNonce).
	if v.usedNonces == nil {
		v.usedNonces = map[string]int64{}
	}
	v.usedNonces[strings.Clone(r.Nonce)] = now.UnixMilli()
	if len(v.usedNonces) >= maxUnwrittenNonces {
		v.flushNonces()
	}
	return s, r.Since, nil
}

// maxUnwrittenNonces is how many resume nonces a vault holds in memory
// before it writes them to its file.
const maxUnwrittenNonces = 64

// checkUnused refuses a nonce this vault has already used, as recorded in
// its file or in memory.
func (v *Vault) checkUnused(nonce string) error {
	_, used := v.usedNonces[nonce]
	if !used {
		var err error
		if used, err = nonceUsed(v.conn, nonce); err != nil {
			return v.internal("read nonces", err)
		}
	}
	if used {
		return protocol.Errorf(protocol.CodeNonceReused, "nonce was already used")
	}
	return nil
}

// flushNonces writes the resume nonces held in memory to the nonces table,
// without waiting for the disk (writeVolatile): the closing checkpoint, or
// the next durable commit, syncs them. If that fails they stay in memory
// while the vault runs, and the error is logged: a vault reopened after
// such a failure could accept one of them again until it expires (5
// minutes), on a socket that was issued it.
func (v *Vault) flushNonces() {
	if len(v.usedNonces) == 0 || v.conn == nil || v.batch != nil {
		return
	}
	err := v.writeVolatile(func() error {
		for nonce, at := range v.usedNonces {
			if err := exec(v.conn, `INSERT OR IGNORE INTO nonces (nonce, used_at) VALUES (?, ?);`, nonce, at); err != nil {
				return err
			}
		}
		return trimNonces(v.conn, v.m.now(), v.m.cfg.NonceTTL)
	})
	if err != nil {
		v.log.Error().Err(err).Int("nonces", len(v.usedNonces)).Msg("record used resume nonces")
		return
	}
	v.usedNonces = nil
}

// checkNonce checks that nonce was issued by this node, is still young
// enough and was issued since this run of the node started. The last rule
// is what lets a resume hold its nonce in memory and write it later without
// waiting for the disk (Vault.flushNonces): the record can only be lost
// with the node (a crash, or the machine's), and every nonce issued before
// the node started again is refused here, used or not. A client's socket
// did not outlive the restart either, so none of them could still be used
// legitimately.
func (m *Manager) checkNonce(nonce string, now time.Time) error {
	issued, err := m.cfg.Nonces.Check(nonce, now, m.cfg.NonceTTL)
	if err != nil {
		return err
	}
	if issued.UnixMilli() < m.started {
		return protocol.Errorf(protocol.CodeNonceExpired, "nonce was issued before this node last started; reconnect for a new one")
	}
	return nil
}

// addSession makes s usable, also to preverify.
func (v *Vault) addSession(s *session) {
	v.sessions[s.id] = s
	v.keys.Store(s.id, s.key)
}

func (v *Vault) liveSession(id string, now time.Time) (*session, error) {
	s, ok := v.sessions[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeSessionUnknown, "this vault has no session %q", truncateID(id))
	}
	if now.UnixMilli() >= s.expiresAt {
		return nil, protocol.Errorf(protocol.CodeSessionExpired, "session expired at %s; sign in again",
			time.UnixMilli(s.expiresAt).UTC().Format(time.RFC3339))
	}
	return s, nil
}

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
			return protocol.Ack{}, errClosed
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
	if pre.key != s.key {
		pre.err = protocol.VerifyBody(s.key, body, sig)
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
	if cmd.Session != s.id {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeSessionUnknown, "command names session %q, not this connection's", truncateID(cmd.Session))
	}
	if cmd.Seq <= s.lastSeq {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeBadSeq, "seq %d is not above the last accepted %d", cmd.Seq, s.lastSeq)
	}
	var result any
	version, err := v.write(func(t *tx) error {
		var err error
		if result, err = v.apply(t, cmd); err != nil {
			return err
		}
		t.then(func() { s.lastSeq = cmd.Seq })
		return exec(v.conn, `UPDATE sessions SET last_seq = ? WHERE id = ?;`, int64(cmd.Seq), s.id)
	})
	if err != nil {
		if protocol.AsError(err) != nil {
			return protocol.Ack{}, err
		}
		return protocol.Ack{}, v.internal("apply "+cmd.Op, err)
	}
	raw, _ := json.Marshal(result)
	return protocol.Ack{Type: protocol.TypeAck, Seq: cmd.Seq, Version: version, Result: raw}, nil
}

func (v *Vault) internal(what string, err error) error {
	v.log.Error().Err(err).Msg(what)
	return protocol.Errorf(protocol.CodeInternal, "internal error")
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

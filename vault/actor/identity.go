package actor

import (
	"context"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// The Fortress, the vault's half: the checks of a sign-in, a resume and a
// revoke that need the vault's own records (its owner, the nonces it has
// seen, its sessions), made on its goroutine before anything is written.
// The host made the stateless half on the caller's goroutine.

// Bound is what a successful sign-in or resume binds a connection to.
type Bound struct {
	Vault   *Vault
	Session string
}

// SignIn completes a sign-in whose stateless half the host verified (the
// text, the wallet signature, the domain, chain and times, and that the
// node issued the nonce recently), on the vault's goroutine (the caller
// pinned it): it records the session, sends sub the ready frame and the
// state, and subscribes it. nonce is the one the hub says it issued on
// the socket. The first sign-in of an address creates the vault's file.
// Errors are *protocol.Error; nothing is written on error.
func (v *Vault) SignIn(ctx context.Context, msg *protocol.Message, nonce string, since *uint64, sub Subscriber) (Bound, error) {
	return v.attach(ctx, "sign-in", sub, func() (*store.Session, *uint64, error) {
		s, err := v.admit(msg, nonce, since)
		return s, since, err
	})
}

// attach runs check (a sign-in's or a resume's) on the vault's goroutine
// and binds sub to the session it admits, from since.
func (v *Vault) attach(ctx context.Context, what string, sub Subscriber, check func() (*store.Session, *uint64, error)) (Bound, error) {
	var b Bound
	err := v.doPinned(ctx, func() error {
		s, since, err := check()
		if err != nil {
			v.cfg.Metrics.AuthFailures.WithLabelValues(CodeOf(err)).Inc()
			v.log.Info().Err(err).Msg(what + " refused")
			return err
		}
		b = Bound{Vault: v, Session: s.ID}
		if ctx.Err() != nil {
			return ctx.Err() // the caller is gone: do not subscribe its connection
		}
		return v.bind(s, since, sub)
	})
	return b, err
}

// admit makes the vault's own checks of a verified sign-in, in this order:
// the signer is the vault's owner, the vault never saw the nonce, the nonce
// is the one the hub issued on this socket, the message names one delegate
// key, and a since the client holds is not above the vault's version. Then
// it creates the vault's file if it has none and records the nonce and
// the session in one transaction.
func (v *Vault) admit(msg *protocol.Message, nonce string, since *uint64) (*store.Session, error) {
	cfg := v.cfg
	now := v.now()
	if msg.Address != v.addr {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "message is for %s, not this vault", msg.Address.Hex())
	}
	if v.born && msg.Address != v.owner {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "signer %s is not this vault's owner", msg.Address.Hex())
	}
	if err := v.checkUnused(msg.Nonce); err != nil {
		return nil, err
	}
	if msg.Nonce != nonce {
		return nil, protocol.Errorf(protocol.CodeNonceUnknown, "nonce %q is not the one issued on this socket", Short(msg.Nonce))
	}
	key, err := protocol.DelegateFromResources(msg.Resources)
	if err != nil {
		return nil, err
	}
	if err := v.checkSince(since); err != nil {
		return nil, err
	}
	if !v.born {
		if err := v.claim(); err != nil {
			return nil, err
		}
		if err := v.create(); err != nil {
			return nil, err
		}
	}
	expires := now.Add(cfg.MaxSessionTTL)
	if exp := msg.ExpirationTimeValue(); !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	// Cloned: the nonce is a substring of the whole sign-in message, which
	// the session would otherwise keep alive for its life.
	s := &store.Session{ID: strings.Clone(msg.Nonce), Key: key, ExpiresAt: expires.UnixMilli()}
	_, err = v.write(func(t *store.Tx) error {
		if err := store.RecordNonce(v.conn, msg.Nonce, now, cfg.NonceTTL); err != nil {
			return err
		}
		return store.AddSession(v.conn, s, now)
	})
	if err != nil {
		return nil, v.fault("record session", err)
	}
	v.addSession(s)
	v.log.Info().Str("session", s.ID).Time("expires", expires).Msg("signed in")
	return s, nil
}

// claim asks the cluster's directory (Config.Claim) to record this node as
// the home of the vault about to be created here.
func (v *Vault) claim() error {
	if v.cfg.Claim == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := v.cfg.Claim(ctx, v.addr)
	if err == nil {
		return nil
	}
	v.log.Warn().Err(err).Msg("vault not created: the cluster's directory did not record this node as its home")
	if pe := protocol.AsError(err); pe != nil {
		return pe
	}
	return protocol.Errorf(protocol.CodeUnavailable, "the cluster's directory cannot record this vault now; retry")
}

// create makes the file of an unborn vault (atomically, file.go) and opens
// it.
func (v *Vault) create() error {
	err := v.createFile()
	if err == nil {
		err = v.openFile()
	}
	if err != nil {
		return v.fault("create vault", err)
	}
	v.host.Opened(v.epoch)
	v.keyMade()
	v.log.Info().Msg("vault created")
	v.cfg.Metrics.VaultsCreated.Inc()
	return nil
}

// checkSince refuses a client that holds a version above the vault's: the
// vault lost acknowledged changes (SQLite drops what follows a damaged
// frame of a write-ahead log after a crash), and a quiet snapshot would
// hide that from its owner.
func (v *Vault) checkSince(since *uint64) error {
	if since == nil || *since <= v.version {
		return nil
	}
	v.cfg.Metrics.Rollbacks.Inc()
	v.log.Error().Uint64("client_version", *since).Uint64("vault_version", v.version).
		Msg("a client holds a newer version than the vault: the vault lost acknowledged changes")
	return protocol.Errorf(protocol.CodeVaultRolledBack,
		"this vault is at version %d but you hold version %d: it lost the changes after %d (its file was damaged); resume without since to get its state",
		v.version, *since, v.version)
}

// bind sends the ready frame and the state to sub and subscribes it. The
// state is read first, so a client is never told ready by a vault that
// then cannot show it.
func (v *Vault) bind(s *store.Session, since *uint64, sub Subscriber) error {
	frames, err := v.catchUp(sub, since)
	if err != nil {
		return v.fault("read the state for a new subscriber", err)
	}
	ready := protocol.Ready{Type: protocol.TypeReady, Vault: v.addr.Hex(), Owner: v.owner.Hex(), Session: s.ID,
		LastSeq: s.LastSeq, Version: v.version, ExpiresAt: s.ExpiresAt}
	if !sub.Send(mustJSON(ready)) {
		return nil
	}
	for _, f := range frames {
		if !sub.Send(f) {
			return nil
		}
	}
	v.addSub(sub, s.ID)
	return nil
}

// Resume re-binds a connection to an existing session, on the vault's
// goroutine (the caller pinned it): body is a protocol.Resume signed by
// the session's delegate key, naming the fresh nonce of this socket (the
// host checked that the node issued it recently). Errors are
// *protocol.Error.
func (v *Vault) Resume(ctx context.Context, body, sig, nonce string, sub Subscriber) (Bound, error) {
	return v.attach(ctx, "resume", sub, func() (*store.Session, *uint64, error) { return v.resume(body, sig, nonce) })
}

// resume checks, in order: the session is live, the signature verifies
// with its key, the body names this vault, the vault never saw the nonce,
// the nonce is this socket's, and since is not above the vault's version.
// (The host checked that this node issued the nonce recently.)
func (v *Vault) resume(body, sig, nonce string) (*store.Session, *uint64, error) {
	now := v.now()
	if !v.born {
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
	if err := protocol.VerifyBody(s.Key, body, sig); err != nil {
		return nil, nil, err
	}
	if !sameAddress(r.Vault, v.addr) {
		return nil, nil, protocol.Errorf(protocol.CodeWrongVault, "resume is for vault %q, not this one", Short(r.Vault))
	}
	if err := v.checkUnused(r.Nonce); err != nil {
		return nil, nil, err
	}
	if r.Nonce != nonce {
		return nil, nil, protocol.Errorf(protocol.CodeNonceUnknown, "resume nonce is not the one issued on this socket")
	}
	if err := v.checkSince(r.Since); err != nil {
		return nil, nil, err
	}
	// Recorded in memory, and in the file with the next batch of them or
	// when the file closes (flushNonces): a resume writes nothing on its
	// way. The record is lost only if the node ends before that, and a
	// restarted node refuses every nonce issued before it.
	if v.usedNonces == nil {
		v.usedNonces = map[string]int64{}
	}
	v.usedNonces[strings.Clone(r.Nonce)] = now.UnixMilli()
	if len(v.usedNonces) >= MaxUnwrittenNonces {
		v.flushNonces()
	}
	return s, r.Since, nil
}

// Revoke ends every session of the vault, for an owner-signed revoke
// whose stateless half the host verified, on the vault's goroutine (the
// caller pinned it). It answers how many sessions ended.
func (v *Vault) Revoke(ctx context.Context, msg *protocol.Message, nonce string) (int, error) {
	n := 0
	err := v.doPinned(ctx, func() error {
		var err error
		n, err = v.revoke(msg, nonce)
		if err != nil {
			v.cfg.Metrics.AuthFailures.WithLabelValues(CodeOf(err)).Inc()
			v.log.Info().Err(err).Msg("revoke refused")
		}
		return err
	})
	return n, err
}

// revoke makes the vault's own checks of a verified revoke (the signer is
// the owner, the nonce is unused and this socket's), then records the
// nonce and deletes every session in one transaction.
func (v *Vault) revoke(msg *protocol.Message, socketNonce string) (int, error) {
	if !v.born {
		return 0, protocol.Errorf(protocol.CodeSessionUnknown, "no such vault")
	}
	if msg.Address != v.owner {
		return 0, protocol.Errorf(protocol.CodeBadSignature, "signer %s is not this vault's owner", msg.Address.Hex())
	}
	if err := v.checkUnused(msg.Nonce); err != nil {
		return 0, err
	}
	if msg.Nonce != socketNonce {
		return 0, protocol.Errorf(protocol.CodeNonceUnknown, "nonce %q is not the one issued on this socket", Short(msg.Nonce))
	}
	n := len(v.sessions)
	now := v.now()
	_, err := v.write(func(t *store.Tx) error {
		if err := store.RecordNonce(v.conn, strings.Clone(msg.Nonce), now, v.cfg.NonceTTL); err != nil {
			return err
		}
		return store.DeleteSessions(v.conn)
	})
	if err != nil {
		return 0, v.fault("revoke sessions", err)
	}
	v.endSessions(func(string) bool { return true }, "every session of this vault was revoked by its owner")
	v.log.Info().Int("sessions", n).Msg("every session revoked by the owner")
	return n, nil
}

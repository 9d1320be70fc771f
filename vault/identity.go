package vault

import (
	"context"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/store"
)

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

// verifySignIn is the half of a sign-in's checks that needs no vault
// state: the text parses, the wallet signature recovers the address it
// names, the domain, URI, chain and times match this node, and the nonce
// was issued by this node, is younger than NonceTTL and was issued since it
// started. It runs on the caller's goroutine, so a refused sign-in costs
// no vault, file or slot. The vault checks the rest (admit).
func (m *Manager) verifySignIn(req SignInRequest) (*protocol.Message, error) {
	msg, err := protocol.ParseMessage(req.Message)
	if err != nil {
		return nil, err
	}
	sig, err := protocol.DecodeHexSignature(req.Signature)
	if err != nil {
		return nil, err
	}
	now := m.now()
	if err := msg.Verify(sig, protocol.VerifyOptions{Domains: m.cfg.Domains, ChainID: m.cfg.ChainID,
		Now: now, MaxFutureIssuedAt: time.Minute}); err != nil {
		if pe := protocol.AsError(err); pe != nil && pe.Code == protocol.CodeSIWEDomain {
			// Most often a node behind a mapped port or a proxy: say
			// what it serves and how its operator changes that.
			return nil, protocol.Errorf(protocol.CodeSIWEDomain, "domain %q is not served here; this node serves %s "+
				"(its operator sets them with --siwe-domains or SPELLS_SIWE_DOMAINS)", truncateID(msg.Domain), strings.Join(m.cfg.Domains, ", "))
		}
		if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeBadSignature || m.cfg.Client == nil {
			return nil, err
		}
		// Not the address's own key: it may be a contract account
		// (ERC-1271), or one not deployed yet (ERC-6492). The nonce is
		// checked first: asking the chain costs more.
		if nerr := m.checkNonce(msg.Nonce, now); nerr != nil {
			return nil, nerr
		}
		if cerr := m.contractSignature(msg, sig); cerr != nil {
			return nil, cerr
		}
		return msg, nil
	}
	if err := m.checkNonce(msg.Nonce, now); err != nil {
		return nil, err
	}
	return msg, nil
}

// contractSignature checks sig over msg as msg.Address's contract
// account would (its ERC-1271 isValidSignature), deploying it first
// inside the call when sig is wrapped as ERC-6492, in one eth_call of
// SignatureCheck's creation code. An address without code and a signature
// that is not ERC-6492 is refused without asking the chain.
func (m *Manager) contractSignature(msg *protocol.Message, sig []byte) error {
	refused := protocol.Errorf(protocol.CodeBadSignature, "the signature is not %s's: not its key's, and not valid for it as a contract account (ERC-1271, ERC-6492)", msg.Address.Hex())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !isERC6492(sig) {
		code, err := m.cfg.Client.CodeAt(ctx, msg.Address, nil)
		if err != nil {
			return protocol.Errorf(protocol.CodeUnavailable, "could not ask the chain about the account %s; retry", msg.Address.Hex())
		}
		if len(code) == 0 {
			return refused
		}
	}
	check := contracts.MustGet(contracts.SignatureCheck)
	hash := accounts.TextHash([]byte(msg.String()))
	args, err := check.ABI.Pack("", msg.Address, [32]byte(hash), sig)
	if err != nil {
		return refused
	}
	out, err := m.cfg.Client.CallContract(ctx, ethereum.CallMsg{Data: append(append([]byte{}, check.Bytecode...), args...), Gas: 5_000_000}, nil)
	if err != nil {
		if exec.IsRevert(err) {
			return refused
		}
		return protocol.Errorf(protocol.CodeUnavailable, "could not ask the chain about the account %s; retry", msg.Address.Hex())
	}
	if len(out) != 1 || out[0] != 1 {
		return refused
	}
	return nil
}

// erc6492Suffix ends a signature wrapped for an account not deployed yet.
var erc6492Suffix = common.FromHex("0x6492649264926492649264926492649264926492649264926492649264926492")

func isERC6492(sig []byte) bool {
	return len(sig) > 32 && string(sig[len(sig)-32:]) == string(erc6492Suffix)
}

// signIn completes a sign-in verified by verifySignIn, on the vault's
// goroutine (the caller pinned it): it records the session, sends sub the
// ready frame and the state, and subscribes it. The first sign-in of an
// address creates the vault's file. Errors are *protocol.Error; nothing is
// written on error.
func (v *Vault) signIn(ctx context.Context, msg *protocol.Message, req SignInRequest) (Bound, error) {
	var b Bound
	err := v.doPinned(ctx, func() error {
		s, err := v.admit(msg, req)
		if err != nil {
			v.m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Msg("sign-in refused")
			return err
		}
		b = Bound{Vault: v, Session: s.ID}
		if ctx.Err() != nil {
			return ctx.Err() // the caller is gone: do not subscribe its connection
		}
		return v.bind(s, req.Since, req.Sub)
	})
	return b, err
}

// admit makes the vault's own checks of a verified sign-in, in this order:
// the signer is the vault's owner, the vault never saw the nonce, the nonce
// is the one the hub issued on this socket, the message names one delegate
// key, and a since the client holds is not above the vault's version. Then
// it creates the vault's file if it has none and records the nonce and
// the session in one transaction.
func (v *Vault) admit(msg *protocol.Message, req SignInRequest) (*store.Session, error) {
	cfg := v.m.cfg
	now := v.m.now()
	if msg.Address != v.addr {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "message is for %s, not this vault", msg.Address.Hex())
	}
	if v.born && msg.Address != v.owner {
		return nil, protocol.Errorf(protocol.CodeBadSignature, "signer %s is not this vault's owner", msg.Address.Hex())
	}
	if err := v.checkUnused(msg.Nonce); err != nil {
		return nil, err
	}
	if msg.Nonce != req.Nonce {
		return nil, protocol.Errorf(protocol.CodeNonceUnknown, "nonce %q is not the one issued on this socket", truncateID(msg.Nonce))
	}
	key, err := protocol.DelegateFromResources(msg.Resources)
	if err != nil {
		return nil, err
	}
	if err := v.checkSince(req.Since); err != nil {
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
	if v.m.cfg.Claim == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := v.m.cfg.Claim(ctx, v.addr)
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
	v.m.opened(v)
	v.m.hold(v.id, v.epoch)
	v.keyMade()
	v.log.Info().Msg("vault created")
	v.m.metrics.VaultsCreated.Inc()
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
	v.m.metrics.Rollbacks.Inc()
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

// resumeSession re-binds a connection to an existing session, on the
// vault's goroutine (the caller pinned it): body is a protocol.Resume
// signed by the session's delegate key, naming the fresh nonce of this
// socket. Errors are *protocol.Error.
func (v *Vault) resumeSession(ctx context.Context, body, sig, nonce string, sub Subscriber) (Bound, error) {
	var b Bound
	err := v.doPinned(ctx, func() error {
		s, since, err := v.resume(body, sig, nonce)
		if err != nil {
			v.m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Msg("resume refused")
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

// resume checks, in order: the session is live, the signature verifies
// with its key, the body names this vault, the vault never saw the nonce,
// the nonce is this socket's, and since is not above the vault's version.
// (Manager.Resume checked that this node issued the nonce recently.)
func (v *Vault) resume(body, sig, nonce string) (*store.Session, *uint64, error) {
	now := v.m.now()
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
		return nil, nil, protocol.Errorf(protocol.CodeWrongVault, "resume is for vault %q, not this one", truncateID(r.Vault))
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
	if !used && v.born {
		var err error
		if used, err = store.NonceUsed(v.conn, nonce); err != nil {
			return v.fault("read nonces", err)
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
		return store.RecordNonces(v.conn, v.usedNonces, v.m.now(), v.m.cfg.NonceTTL)
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
func (v *Vault) addSession(s *store.Session) {
	v.sessions[s.ID] = s
	v.keys.Store(s.ID, s.Key)
}

func (v *Vault) liveSession(id string, now time.Time) (*store.Session, error) {
	s, ok := v.sessions[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeSessionUnknown, "this vault has no session %q", truncateID(id))
	}
	if now.UnixMilli() >= s.ExpiresAt {
		return nil, protocol.Errorf(protocol.CodeSessionExpired, "session expired at %s; sign in again",
			time.UnixMilli(s.ExpiresAt).UTC().Format(time.RFC3339))
	}
	return s, nil
}

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
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
)

// The Fortress, the node's half: a sign-in, a resume or a revoke is first
// checked on the caller's goroutine for everything that needs no vault
// state, so what an unauthenticated client sends costs the node nothing it
// keeps; then the vault itself (package actor) checks the rest against its
// own records.

// SignInRequest is a sign-in as the hub received it. The vault trusts none
// of it: Nonce is only the nonce the hub says it issued on this socket,
// checked in addition to the vault's own checks.
type SignInRequest struct {
	Message   string
	Signature string
	Nonce     string
	Since     *uint64
	Sub       actor.Subscriber
	From      string // the client's source address, for Config.AllowCreate
}

// verifySignIn is the half of a sign-in's checks that needs no vault
// state: the text parses, the wallet signature recovers the address it
// names, the domain, URI, chain and times match this node, and the nonce
// was issued by this node, is younger than NonceTTL and was issued since it
// started. It runs on the caller's goroutine, so a refused sign-in costs
// no vault, file or slot. The vault checks the rest (actor.Vault.SignIn).
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
				"(its operator sets them with --public-url or --siwe-domains, SPELLS_PUBLIC_URL or SPELLS_SIWE_DOMAINS)", actor.Short(msg.Domain), strings.Join(m.cfg.Domains, ", "))
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

// SignIn verifies a Sign-In with Ethereum for the vault it names and binds
// req.Sub to a new session. The stateless half of the check (the text,
// the wallet signature, the domain, chain and times, and that this node
// issued the nonce recently) runs first on the caller's goroutine, so a
// refused sign-in touches no vault, file or slot; the vault itself checks
// the rest (its owner, that the nonce is unused and is this socket's)
// before it writes anything. The first sign-in of an address creates its
// vault. Errors are *protocol.Error.
func (m *Manager) SignIn(ctx context.Context, req SignInRequest) (actor.Bound, error) {
	msg, err := m.verifySignIn(req)
	if err != nil {
		m.metrics.Actor.AuthFailures.WithLabelValues(actor.CodeOf(err)).Inc()
		return actor.Bound{}, err
	}
	if m.cfg.AllowCreate != nil && !m.knows(actor.ID(msg.Address)) {
		// The first sign-in of an address creates its vault: the node may
		// bound how many it creates, and for whom.
		if err := m.cfg.AllowCreate(req.From, msg.Address); err != nil {
			m.metrics.Actor.AuthFailures.WithLabelValues(actor.CodeOf(err)).Inc()
			m.cfg.Logger.Info().Str("vault", msg.Address.Hex()).Str("from", req.From).Err(err).Msg("vault not created")
			return actor.Bound{}, err
		}
	}
	v, err := m.acquire(ctx, msg.Address, true, true)
	if err != nil {
		return actor.Bound{}, err
	}
	return v.SignIn(ctx, msg, req.Nonce, req.Since, req.Sub)
}

// knows reports whether vault id is on this node: running, placed, or its
// file present.
func (m *Manager) knows(id string) bool {
	m.mu.Lock()
	known := m.vaults[id] != nil || m.placeOf(id).place != nowhere
	m.mu.Unlock()
	if known {
		return true
	}
	exists, err := fileExists(actor.Path(m.cfg.Dir, id))
	return exists || err != nil
}

// Resume binds sub to an existing session of the vault the signed body
// names (see Vault.resume). A nonce this node did not issue recently, or a
// session id that is no sign-in nonce of this node, is refused before any
// vault is opened.
func (m *Manager) Resume(ctx context.Context, body, sig, nonce string, sub actor.Subscriber) (actor.Bound, error) {
	r, err := protocol.ParseResume(body)
	if err == nil && !common.IsHexAddress(r.Vault) {
		err = protocol.Errorf(protocol.CodeWrongVault, "vault %q is not an address", actor.Short(r.Vault))
	}
	if err == nil {
		err = m.checkNonce(r.Nonce, m.now())
	}
	if err == nil {
		// A session's id is the nonce of the sign-in that made it, issued
		// here at most NonceTTL before a session of at most MaxSessionTTL:
		// anything else names no session, and opens no vault.
		if _, serr := m.cfg.Nonces.Check(r.Session, m.now(), m.cfg.NonceTTL+m.cfg.MaxSessionTTL); serr != nil {
			err = protocol.Errorf(protocol.CodeSessionUnknown, "this node has no session %q", actor.Short(r.Session))
		}
	}
	if err != nil {
		m.metrics.Actor.AuthFailures.WithLabelValues(actor.CodeOf(err)).Inc()
		return actor.Bound{}, err
	}
	v, err := m.acquire(ctx, common.HexToAddress(r.Vault), false, true)
	if err != nil {
		return actor.Bound{}, err
	}
	return v.Resume(ctx, body, sig, nonce, sub)
}

// Revoke verifies an owner-signed revoke (a SIWE message naming
// protocol.RevokeResource and no delegate key, with this socket's nonce)
// and ends every session of the vault it names. It answers with how many
// sessions ended. Like SignIn, the checks that need no vault state run
// first and cost no vault.
func (m *Manager) Revoke(ctx context.Context, req SignInRequest) (int, error) {
	msg, err := m.verifySignIn(req)
	if err == nil && !protocol.IsRevoke(msg.Resources) {
		err = protocol.Errorf(protocol.CodeBadCommand, "a revoke names %s and no delegate key in its resources", protocol.RevokeResource)
	}
	if err != nil {
		m.metrics.Actor.AuthFailures.WithLabelValues(actor.CodeOf(err)).Inc()
		return 0, err
	}
	v, err := m.acquire(ctx, msg.Address, false, true)
	if err != nil {
		return 0, err
	}
	return v.Revoke(ctx, msg, req.Nonce)
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

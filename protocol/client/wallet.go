package client

import (
	"crypto/ecdsa"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

// Wallet is an Ethereum account key, standing in for a browser wallet.
type Wallet struct {
	Key *ecdsa.PrivateKey
}

// NewWallet makes a wallet with a fresh random key.
func NewWallet() (*Wallet, error) {
	k, err := crypto.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("new wallet: %w", err)
	}
	return &Wallet{Key: k}, nil
}

// Address is the wallet's account address.
func (w *Wallet) Address() common.Address { return crypto.PubkeyToAddress(w.Key.PublicKey) }

// SignInParams are the parts of a SIWE message a client chooses.
type SignInParams struct {
	Domain     string // e.g. "localhost:8080"
	URI        string // default "http://" + Domain
	ChainID    uint64 // default 1
	Nonce      string // from the challenge
	IssuedAt   time.Time
	Expiration time.Time // zero: none
	NotBefore  time.Time // zero: none
	Statement  string
	Delegate   *protocol.Delegate
}

const timeLayout = "2006-01-02T15:04:05.000Z"

// Message builds the SIWE message for p, naming p.Delegate in Resources.
func (w *Wallet) Message(p SignInParams) *protocol.Message {
	if p.URI == "" {
		p.URI = "http://" + p.Domain
	}
	if p.ChainID == 0 {
		p.ChainID = 1
	}
	if p.IssuedAt.IsZero() {
		p.IssuedAt = time.Now()
	}
	m := &protocol.Message{Domain: p.Domain, Address: w.Address(), Statement: p.Statement, URI: p.URI, Version: "1",
		ChainID: p.ChainID, Nonce: p.Nonce, IssuedAt: p.IssuedAt.UTC().Format(timeLayout)}
	if !p.Expiration.IsZero() {
		m.ExpirationTime = p.Expiration.UTC().Format(timeLayout)
	}
	if !p.NotBefore.IsZero() {
		m.NotBefore = p.NotBefore.UTC().Format(timeLayout)
	}
	if p.Delegate != nil {
		m.Resources = []string{p.Delegate.Resource()}
	}
	return m
}

// Sign signs text as personal_sign does and returns the 0x hex signature.
func (w *Wallet) Sign(text string) (string, error) {
	sig, err := protocol.SignPersonal(w.Key, []byte(text))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("0x%x", sig), nil
}

// SignIn builds and signs the sign-in for p: the message text and the
// signature, ready for a signin frame.
func (w *Wallet) SignIn(p SignInParams) (message, signature string, err error) {
	text := w.Message(p).String()
	sig, err := w.Sign(text)
	return text, sig, err
}

// Session is what a client keeps to send commands and to resume.
type Session struct {
	Vault    string
	ID       string
	Delegate *protocol.Delegate
	Seq      uint64 // last sequence number used
}

// SignCommand builds, numbers and signs a command frame for op and args.
func (s *Session) SignCommand(op string, args any) (protocol.ClientFrame, uint64, error) {
	s.Seq++
	return s.SignCommandSeq(s.Seq, op, args)
}

// SignCommandSeq signs a command with an explicit sequence number (tests
// use it to replay or reorder).
func (s *Session) SignCommandSeq(seq uint64, op string, args any) (protocol.ClientFrame, uint64, error) {
	var raw []byte
	if args != nil {
		var err error
		if raw, err = jsonMarshal(args); err != nil {
			return protocol.ClientFrame{}, 0, err
		}
	}
	body, err := protocol.MarshalBody(protocol.Command{Vault: s.Vault, Session: s.ID, Seq: seq, Op: op, Args: raw})
	if err != nil {
		return protocol.ClientFrame{}, 0, err
	}
	sig, err := s.Delegate.Sign(body)
	if err != nil {
		return protocol.ClientFrame{}, 0, err
	}
	return protocol.ClientFrame{Type: protocol.TypeCmd, Body: body, Sig: sig}, seq, nil
}

// SignResume signs a resume frame for this session with a socket's
// challenge nonce, asking for the diffs after since.
func (s *Session) SignResume(nonce string, since uint64) (protocol.ClientFrame, error) {
	return s.signResume(protocol.Resume{Vault: s.Vault, Session: s.ID, Nonce: nonce, Since: &since})
}

// SignResumeSnapshot signs a resume frame that asks for a snapshot
// instead of diffs (no since).
func (s *Session) SignResumeSnapshot(nonce string) (protocol.ClientFrame, error) {
	return s.signResume(protocol.Resume{Vault: s.Vault, Session: s.ID, Nonce: nonce})
}

func (s *Session) signResume(r protocol.Resume) (protocol.ClientFrame, error) {
	body, err := protocol.MarshalBody(r)
	if err != nil {
		return protocol.ClientFrame{}, err
	}
	sig, err := s.Delegate.Sign(body)
	if err != nil {
		return protocol.ClientFrame{}, err
	}
	return protocol.ClientFrame{Type: protocol.TypeResume, Body: body, Sig: sig}, nil
}

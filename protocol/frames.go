package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Subprotocol is the WebSocket subprotocol name a client must offer.
const Subprotocol = "spells.v1"

// Frame types sent by the client.
const (
	TypeSignIn = "signin" // SIWE message + wallet signature
	TypeResume = "resume" // delegate-signed resume of an existing session
	TypeCmd    = "cmd"    // delegate-signed command
	TypeRevoke = "revoke" // owner-signed end of every session of a vault
)

// Frame types sent by the server.
const (
	TypeChallenge = "challenge" // first frame on every socket: the sign-in nonce
	TypeReady     = "ready"     // the vault accepted the sign-in or resume
	TypeSnapshot  = "snapshot"  // the whole vault state at a version
	TypeDiff      = "diff"      // the changes of exactly one version
	TypeAck       = "ack"       // a command was applied (and is durable)
	TypeError     = "error"     // something was refused
	TypeSignal    = "signal"    // a live signal value (market data)
	TypeSignals   = "signals"   // recent history of every signal, sent after ready
	TypeRevoked   = "revoked"   // the vault ended every session (answers revoke)
	TypePortfolio = "portfolio" // the account's balances at a block (not versioned: chain state)
	TypeRestore   = "restore"   // what a restore of the vault's triggers did, or would do (dry)
)

// ClientFrame is any frame a client sends. Only the fields of its Type are
// used: signin uses Message, Signature and Since; revoke uses Message and
// Signature; resume and cmd use Body and Sig, where Body is the exact
// string the delegate key signed.
type ClientFrame struct {
	Type      string  `json:"type"`
	Message   string  `json:"message,omitempty"`
	Signature string  `json:"signature,omitempty"`
	Since     *uint64 `json:"since,omitempty"`
	Body      string  `json:"body,omitempty"`
	Sig       string  `json:"sig,omitempty"`
}

// DecodeClientFrame parses one client text frame. It fails with
// CodeBadFrame for anything that is not a JSON object with a non-empty
// string "type", and with CodeUnknownType for a type it does not know.
func DecodeClientFrame(data []byte) (ClientFrame, error) {
	var f ClientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return ClientFrame{}, Errorf(CodeBadFrame, "frame: %s", DescribeJSONError(err))
	}
	switch f.Type {
	case TypeSignIn, TypeResume, TypeCmd, TypeRevoke:
		return f, nil
	case "":
		return ClientFrame{}, Errorf(CodeBadFrame, "frame has no \"type\"")
	default:
		return ClientFrame{}, Errorf(CodeUnknownType, "unknown frame type %q", truncate(f.Type, 40))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Challenge is the first frame of every socket. Nonce goes into the SIWE
// message (signin) or the resume body.
type Challenge struct {
	Type    string   `json:"type"`
	Nonce   string   `json:"nonce"`
	Domains []string `json:"domains"`
	ChainID uint64   `json:"chainId"`
	Node    string   `json:"node"`
}

// Ready says the vault bound this socket to a session.
type Ready struct {
	Type      string `json:"type"`
	Vault     string `json:"vault"`
	Owner     string `json:"owner"`
	Session   string `json:"session"`
	LastSeq   uint64 `json:"lastSeq"`
	Version   uint64 `json:"version"`
	ExpiresAt int64  `json:"expiresAt"`
}

// Snapshot carries the whole state at State.Version.
type Snapshot struct {
	Type  string `json:"type"`
	State State  `json:"state"`
}

// Diff carries the changes of exactly one version, in order.
type Diff struct {
	Type    string   `json:"type"`
	Vault   string   `json:"vault"`
	Version uint64   `json:"version"`
	At      int64    `json:"at"`
	Changes []Change `json:"changes"`
}

// Ack confirms the command with sequence number Seq was applied and is
// durable; Version is the version the command produced (the vault's
// version at the time, for a command that changes nothing), never one
// committed after it.
type Ack struct {
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Version uint64          `json:"version"`
	Result  json.RawMessage `json:"result,omitempty"`
}

// ErrorFrame reports a refusal. Seq is set when it answers a command: the
// command's seq as sent, 0 included.
type ErrorFrame struct {
	Type    string  `json:"type"`
	Code    Code    `json:"code"`
	Message string  `json:"message"`
	Retry   bool    `json:"retry"`
	Seq     *uint64 `json:"seq,omitempty"`
}

// NewErrorFrame builds the frame for err: an *Error anywhere in err's chain
// keeps its code, anything else becomes CodeInternal with a generic message (details stay in logs).
func NewErrorFrame(err error, seq *uint64) ErrorFrame {
	pe := AsError(err)
	if pe == nil {
		pe = &Error{Code: CodeInternal, Message: "internal error"}
	}
	return ErrorFrame{Type: TypeError, Code: pe.Code, Message: pe.Message, Retry: Retryable(pe.Code), Seq: seq}
}

// Revoked answers a revoke: the vault ended Sessions sessions, and closed
// their sockets with CloseSessionEnded.
type Revoked struct {
	Type     string `json:"type"`
	Vault    string `json:"vault"`
	Sessions int    `json:"sessions"`
}

// SignalFrame is one live signal value.
type SignalFrame struct {
	Type   string        `json:"type"`
	Name   string        `json:"name"`
	Value  float64       `json:"value"`
	At     int64         `json:"at"`
	Source *SignalSource `json:"source,omitempty"`
}

// SignalSource is where a signal value came from when the chain can show
// it: a price feed's round, read by the node at a block. A value without
// one came from a publisher (POST /v1/signals) or the demo, and is
// unverified.
type SignalSource struct {
	Feed  string `json:"feed"`  // the feed's address
	Round string `json:"round"` // its roundId (a uint80, in decimal)
	Block uint64 `json:"block"` // the block the node read it at
}

// Point is one value of a signal at a time (unix milliseconds).
type Point struct {
	Value float64 `json:"value"`
	At    int64   `json:"at"`
}

// SignalsFrame carries recent history per signal name, oldest first.
type SignalsFrame struct {
	Type   string             `json:"type"`
	Series map[string][]Point `json:"series"`
}

// ServerFrame is the union of every frame the server sends, for clients
// that decode without knowing the type first.
type ServerFrame struct {
	Type      string             `json:"type"`
	Nonce     string             `json:"nonce,omitempty"`
	Domains   []string           `json:"domains,omitempty"`
	ChainID   uint64             `json:"chainId,omitempty"`
	Node      string             `json:"node,omitempty"`
	Vault     string             `json:"vault,omitempty"`
	Owner     string             `json:"owner,omitempty"`
	Session   string             `json:"session,omitempty"`
	LastSeq   uint64             `json:"lastSeq,omitempty"`
	Version   uint64             `json:"version,omitempty"`
	ExpiresAt int64              `json:"expiresAt,omitempty"`
	State     *State             `json:"state,omitempty"`
	At        int64              `json:"at,omitempty"`
	Changes   []Change           `json:"changes,omitempty"`
	Seq       uint64             `json:"seq,omitempty"`
	Result    json.RawMessage    `json:"result,omitempty"`
	Code      Code               `json:"code,omitempty"`
	Message   string             `json:"message,omitempty"`
	Retry     bool               `json:"retry,omitempty"`
	Name      string             `json:"name,omitempty"`
	Source    *SignalSource      `json:"source,omitempty"`
	Value     float64            `json:"value,omitempty"`
	Series    map[string][]Point `json:"series,omitempty"`
	Sessions  int                `json:"sessions,omitempty"`
	Block     uint64             `json:"block,omitempty"`
	Account   *Holdings          `json:"account,omitempty"`
	Key       *Holdings          `json:"sessionKey,omitempty"`
}

// Holdings are an address's balances in smallest units (decimal
// strings): the native currency and each of the chain's tokens by symbol.
type Holdings struct {
	Address string            `json:"address"`
	Native  string            `json:"native"`
	Tokens  map[string]string `json:"tokens,omitempty"`
}

// PortfolioFrame is a portfolio frame: the owner's account and the
// session key's gas money at Block, sent to a vault's dashboards when a
// block changes them (and to a new one after its snapshot).
type PortfolioFrame struct {
	Type    string    `json:"type"`
	Vault   string    `json:"vault"`
	Block   uint64    `json:"block"`
	Account *Holdings `json:"account"`
	Key     *Holdings `json:"sessionKey"`
}

// RestoreFrame tells a vault's dashboards what a restore did (or, Dry,
// would do): the backup's point it read (BaseVersion, the version of the
// whole copy it started from, then Version at time At), the triggers it
// added back, removed and changed, notes (a trigger whose own grant was
// revoked since), and the vault version that holds the result (Applied;
// 0 when dry or failed). Error says why it could not run.
type RestoreFrame struct {
	Type        string            `json:"type"`
	Vault       string            `json:"vault"`
	Dry         bool              `json:"dry"`
	BaseVersion uint64            `json:"baseVersion,omitempty"`
	Version     uint64            `json:"version,omitempty"`
	At          int64             `json:"at,omitempty"`
	Added       []RestoredTrigger `json:"added"`
	Removed     []RestoredTrigger `json:"removed"`
	Changed     []RestoredTrigger `json:"changed"`
	Notes       []string          `json:"notes,omitempty"`
	Applied     uint64            `json:"applied,omitempty"`
	Error       *RestoreError     `json:"error,omitempty"`
}

// RestoreError is why a restore could not run.
type RestoreError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// RestoredTrigger names a trigger a restore touches.
type RestoredTrigger struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// A server message holds one or more frames separated by FrameSeparator
// (JSON text never contains a raw newline); see DecodeServerMessage.
const FrameSeparator = '\n'

// DecodeServerMessage decodes the frames of one server WebSocket message,
// in order.
func DecodeServerMessage(data []byte) ([]ServerFrame, error) {
	lines := bytes.Split(data, []byte{FrameSeparator})
	out := make([]ServerFrame, 0, len(lines))
	for _, line := range lines {
		f, err := DecodeServerFrame(line)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	return out, nil
}

// DecodeServerFrame parses one server frame.
func DecodeServerFrame(data []byte) (ServerFrame, error) {
	var f ServerFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return ServerFrame{}, fmt.Errorf("decode server frame: %w", err)
	}
	if f.Type == "" {
		return ServerFrame{}, fmt.Errorf("decode server frame: no type")
	}
	return f, nil
}

// Err returns the frame's error as an *Error, or nil if it is not an error
// frame.
func (f ServerFrame) Err() *Error {
	if f.Type != TypeError {
		return nil
	}
	return &Error{Code: f.Code, Message: f.Message}
}

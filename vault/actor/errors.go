package actor

import (
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// What callers of a vault are told when it cannot serve them.
var (
	// ErrMoving answers requests for a vault that is moving to another
	// node, or moved (a stale route): the client retries and is routed
	// there.
	ErrMoving = protocol.Errorf(protocol.CodeVaultMoving, "the vault is moving to another node; retry in a moment and it is reached there")
	// ErrQuarantined answers requests for a vault whose file was set aside.
	ErrQuarantined = protocol.Errorf(protocol.CodeVaultQuarantined,
		"this vault's file could not be read and was set aside; the node's operator can restore it (its log names the file)")
	// ErrStorageFull answers a write that found the disk full.
	ErrStorageFull = protocol.Errorf(protocol.CodeStorageFull,
		"the node's disk is full: nothing was written; retry later")
	// ErrClosed answers requests to a vault that is shutting down.
	ErrClosed = protocol.Errorf(protocol.CodeUnavailable, "vault is closing; retry")
	// ErrUnavailable answers when a vault's file could not be opened for a
	// reason that may pass (the node logged it).
	ErrUnavailable = protocol.Errorf(protocol.CodeUnavailable, "the vault could not be opened just now; retry")
	// errCommit is what the callers of a group whose commit failed receive.
	errCommit = protocol.Errorf(protocol.CodeUnavailable, "the vault could not save; retry")
)

// Short cuts what a client sent to a length fit for a message or a log.
func Short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// CodeOf is err's protocol code (internal for an error of ours).
func CodeOf(err error) string {
	if pe := protocol.AsError(err); pe != nil {
		return string(pe.Code)
	}
	return string(protocol.CodeInternal)
}

func sameAddress(s string, a common.Address) bool {
	return common.IsHexAddress(s) && strings.HasPrefix(s, "0x") && common.HexToAddress(s) == a
}

// ID is a vault's id: its address in lowercase, its file's name.
func ID(a common.Address) string { return strings.ToLower(a.Hex()) }

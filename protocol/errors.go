package protocol

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code carried in an error frame. Clients
// switch on it; the message is for people. Every code is listed in
// PROTOCOL.md with whether retrying can help.
type Code string

// Error codes. Keep this list, codeRetry and PROTOCOL.md in step.
const (
	CodeBadFrame         Code = "bad_frame"          // not a JSON object with a string "type"
	CodeUnknownType      Code = "unknown_type"       // a frame type this server does not know
	CodeTooLarge         Code = "too_large"          // frame above the read limit (socket closed 1009)
	CodeNotSignedIn      Code = "not_signed_in"      // command or resume before a session is bound
	CodeAlreadySignedIn  Code = "already_signed_in"  // a second signin/resume on one socket
	CodeSIWEMalformed    Code = "siwe_malformed"     // the SIWE text does not parse
	CodeSIWEDomain       Code = "siwe_domain"        // domain is not one this node serves
	CodeSIWEURI          Code = "siwe_uri"           // URI does not belong to the domain
	CodeSIWEChain        Code = "siwe_chain"         // chain id is not the configured one
	CodeSIWEExpired      Code = "siwe_expired"       // Expiration Time has passed
	CodeSIWENotYetValid  Code = "siwe_not_yet_valid" // Not Before is in the future
	CodeSIWEIssuedAt     Code = "siwe_issued_at"     // Issued At is in the future
	CodeNonceUnknown     Code = "nonce_unknown"      // nonce was not issued by this node or not for this socket
	CodeNonceExpired     Code = "nonce_expired"      // nonce is older than its lifetime
	CodeNonceReused      Code = "nonce_reused"       // nonce was already used with this vault
	CodeBadSignature     Code = "bad_signature"      // wallet signature malformed or from another key
	CodeDelegateMissing  Code = "delegate_missing"   // no usable delegate key in the SIWE Resources
	CodeBadCmdSignature  Code = "bad_cmd_signature"  // delegate signature does not verify over body
	CodeBadCommand       Code = "bad_command"        // body is not a well-formed command
	CodeBadSeq           Code = "bad_seq"            // seq not above the last one accepted (replay or reorder)
	CodeWrongVault       Code = "wrong_vault"        // command names another vault than the session's
	CodeSessionUnknown   Code = "session_unknown"    // the vault has no such session
	CodeSessionExpired   Code = "session_expired"    // the session's expiry has passed: sign in again
	CodeUnknownOp        Code = "unknown_op"         // op is not a known operation
	CodeInvalidTrigger   Code = "invalid_trigger"    // trigger definition refused
	CodeNotFound         Code = "not_found"          // no trigger with that id
	CodeRateLimited      Code = "rate_limited"       // too many commands from this connection
	CodeUnavailable      Code = "unavailable"        // node shutting down or vault closing
	CodeStorageFull      Code = "storage_full"       // the node's disk is full; nothing was written
	CodeVaultQuarantined Code = "vault_quarantined"  // the vault's file could not be read and was set aside
	CodeVaultRolledBack  Code = "vault_rolled_back"  // the vault is at a version below the one the client holds: it lost data
	CodeKeyUnavailable   Code = "key_unavailable"    // the node cannot unseal the vault's session key (another key-encryption key sealed it)
	CodeInvalidGrant     Code = "invalid_grant"      // a grant refused: its signer, delegate, chain, caveats or validity (the message names which)
	CodeNoChain          Code = "no_chain"           // the node runs without a chain (or without the delegation framework on it)
	CodeNodeUnreachable  Code = "node_unreachable"   // the vault lives on another node of the cluster that cannot be reached now (down, or its link or Redis is)
	CodeVaultElsewhere   Code = "vault_elsewhere"    // another node of the cluster took the vault first: sign in again and it is reached there
	CodeVaultMoving      Code = "vault_moving"       // the vault is moving to another node of the cluster: retry and it is reached there
	CodeNotAllowed       Code = "not_allowed"        // this node creates vaults only for the addresses on its allowlist
	CodeNoBackup         Code = "no_backup"          // the node runs without a backup, so nothing can be restored
	CodeNotInBackup      Code = "not_in_backup"      // the backup holds no copy of the vault at that point (or not that version)
	CodeRestoreRunning   Code = "restore_running"    // a restore of this vault is running; its restore frame comes first
	CodeInternal         Code = "internal"           // a server fault; logged with details
	CodeSignInTimeout    Code = "signin_timeout"     // no sign-in within the allowed time
	CodeSlowConsumer     Code = "slow_consumer"      // client did not read fast enough
)

// codeRetry says whether sending the same thing again later can succeed.
var codeRetry = map[Code]bool{
	CodeRateLimited:  true,
	CodeUnavailable:  true,
	CodeStorageFull:  true,
	CodeInternal:     true,
	CodeSlowConsumer: true,

	CodeNodeUnreachable: true,
	CodeVaultElsewhere:  true,
	CodeVaultMoving:     true,
	CodeRestoreRunning:  true,
}

// Retryable reports whether a client may retry after an error with code c.
func Retryable(c Code) bool { return codeRetry[c] }

// Error is a protocol-level failure with a code a client can act on. The
// server sends it as an error frame; the Go client returns it as an error.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// AsError returns the first *Error in err's chain (errors.As), or nil. Code
// that reads a wire code from an error uses it, so an *Error keeps its code
// however many times it was wrapped on its way.
func AsError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// WebSocket close codes used by Spells in addition to the standard ones
// (1001 going away on shutdown, 1008 policy violation, 1009 too big).
const (
	CloseSignInTimeout = 4001 // no sign-in within the allowed time
	CloseSlowConsumer  = 4002 // the client's queue overflowed: reconnect and resume
	CloseSessionEnded  = 4003 // the session was ended (signed out, or every session revoked): sign in again
	CloseNodeLink      = 4004 // the node this socket is on lost its link to the vault's node: reconnect and resume
	CloseVaultMoved    = 4005 // the vault moved to another node of the cluster: reconnect (to any node) and resume
)

package protocol

import (
	"encoding/json"
	"fmt"
)

// Command operations.
const (
	OpTriggerCreate = "trigger.create" // args: TriggerSpec; result: {"id"}
	OpTriggerUpdate = "trigger.update" // args: {"id", "spec": TriggerSpec}
	OpTriggerPause  = "trigger.pause"  // args: {"id"}
	OpTriggerResume = "trigger.resume" // args: {"id"}
	OpTriggerDelete = "trigger.delete" // args: {"id"}
	OpTriggerList   = "trigger.list"   // args: {}; result: {"triggers": [...]}
	OpTriggerGrant  = "trigger.grant"  // args: TriggerSpec; result: TriggerGrant (the delegation to sign for it)
	OpActivityList  = "activity.list"  // args: ActivityArgs; result: {"evaluations": [...]} or {"intents": [...]}
	OpSessionEnd    = "session.end"    // args: {}; ends the sending session (sign out); result: {"ended": id}
	OpKeyRotate     = "key.rotate"     // args: {}; replaces the vault's session key; result: {"sessionKey": address}
	OpGrantAdd      = "grant.add"      // args: GrantArgs; result: {"id"}
	OpGrantRevoke   = "grant.revoke"   // args: {"id"}; result: {"id"}
	OpVaultExport   = "vault.export"   // args: {}; result: Export (the vault's data and its change log, hash-chained)
	OpVaultRestore  = "vault.restore"  // args: RestoreArgs; result: {"restore": "started"}; a restore frame follows
	OpAlertsSet     = "alerts.set"     // args: AlertsArgs; result: AlertSettings (with the webhook's secret)
	OpAlertsConfirm = "alerts.confirm" // args: ConfirmArgs; result: AlertSettings (the e-mail confirmed)
)

// RestoreArgs ask the vault to make its triggers what they were at a
// version, or at a time (unix ms), as the node's backup holds them; Dry
// only tells what would change. Intents, grants, keys and sessions stay
// as they are: they follow the chain and the owner's signatures, which a
// restore cannot take back.
type RestoreArgs struct {
	Version uint64 `json:"version,omitempty"`
	At      int64  `json:"at,omitempty"`
	Dry     bool   `json:"dry,omitempty"`
}

// ActivityArgs page through a vault's older evaluations or intents, newest
// first: those before Before (an evaluation id, or an intent id), at most
// Limit (1 to 100, default 50), of one trigger if Trigger is set.
type ActivityArgs struct {
	Kind    string `json:"kind"` // "evaluation" or "intent"
	Before  string `json:"before,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Trigger string `json:"trigger,omitempty"`
}

// Command is the body of a cmd frame. The client serialises it once to a
// string, signs the UTF-8 bytes of that string with its delegate key, and
// sends the string itself as the frame's body.
type Command struct {
	Vault   string          `json:"vault"`
	Session string          `json:"session"`
	Seq     uint64          `json:"seq"`
	Op      string          `json:"op"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// ParseCommand decodes a verified body.
func ParseCommand(body string) (Command, error) {
	var c Command
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return Command{}, Errorf(CodeBadCommand, "command body: %s", DescribeJSONError(err))
	}
	if c.Vault == "" || c.Session == "" || c.Op == "" || c.Seq == 0 {
		return Command{}, Errorf(CodeBadCommand, "command body needs vault, session, seq > 0 and op")
	}
	return c, nil
}

// IDArgs are the arguments of the operations that name one trigger.
type IDArgs struct {
	ID string `json:"id"`
}

// UpdateArgs are the arguments of trigger.update.
type UpdateArgs struct {
	ID   string      `json:"id"`
	Spec TriggerSpec `json:"spec"`
}

// Resume is the body of a resume frame: a signed-in session proves it still
// holds its delegate key by signing a fresh challenge nonce.
type Resume struct {
	Vault   string  `json:"vault"`
	Session string  `json:"session"`
	Nonce   string  `json:"nonce"`
	Since   *uint64 `json:"since,omitempty"` // absent: send a snapshot
}

// ParseResume decodes a verified resume body.
func ParseResume(body string) (Resume, error) {
	var r Resume
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return Resume{}, Errorf(CodeBadCommand, "resume body: %s", DescribeJSONError(err))
	}
	if r.Vault == "" || r.Session == "" || r.Nonce == "" {
		return Resume{}, Errorf(CodeBadCommand, "resume body needs vault, session and nonce")
	}
	return r, nil
}

// MarshalBody serialises v as a body string.
func MarshalBody(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("marshal body: %w", err)
	}
	return string(b), nil
}

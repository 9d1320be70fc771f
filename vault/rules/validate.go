package rules

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// Limits on trigger definitions.
const (
	maxNameLen    = 100
	maxLeaves     = 16
	maxDepth      = 4
	maxParamsSize = 4096
	minEvery      = time.Second
	maxEvery      = 366 * 24 * time.Hour
)

var signalNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.:\-]{0,63}$`)

// Invalid is the error of a trigger definition that cannot work.
func Invalid(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidTrigger, format, args...)
}

// Validate refuses a trigger definition that cannot work, at time now. It
// trims the name.
func Validate(s *protocol.TriggerSpec, now time.Time) error {
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" || len(s.Name) > maxNameLen {
		return Invalid("name must be 1 to %d characters", maxNameLen)
	}
	leaves := 0
	if err := validateCondition(&s.Condition, now, 1, &leaves); err != nil {
		return err
	}
	if !validKind(s.Action.Kind) {
		return Invalid("action kind %q is not one of %s", s.Action.Kind, strings.Join(protocol.ActionKinds, ", "))
	}
	if len(s.Action.Params) > 0 {
		if len(s.Action.Params) > maxParamsSize {
			return Invalid("action params larger than %d bytes", maxParamsSize)
		}
		var obj map[string]any
		if err := json.Unmarshal(s.Action.Params, &obj); err != nil || obj == nil {
			return Invalid("action params must be a JSON object")
		}
	}
	if s.CooldownMs < 0 {
		return Invalid("cooldownMs must not be negative")
	}
	if s.MaxFires < 0 {
		return Invalid("maxFires must not be negative")
	}
	if s.ExpiresAt != 0 && s.ExpiresAt <= now.UnixMilli() {
		return Invalid("expiresAt is in the past")
	}
	return nil
}

func validKind(k string) bool {
	for _, a := range protocol.ActionKinds {
		if a == k {
			return true
		}
	}
	return false
}

func validateCondition(c *protocol.Condition, now time.Time, depth int, leaves *int) error {
	if depth > maxDepth {
		return Invalid("condition nested deeper than %d", maxDepth)
	}
	forms := 0
	for _, set := range []bool{c.Signal != "" || c.Op != "" || c.Threshold != nil || c.From != "" || c.Read != nil || c.Move != nil || c.Event != nil, c.EveryMs != 0, c.AtMs != 0, c.All != nil, c.Any != nil} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return Invalid("a condition needs exactly one of signal/op/threshold, read/op/threshold, event, everyMs, atMs, all, any")
	}
	if c.All != nil || c.Any != nil {
		kids := append(c.All, c.Any...)
		if len(kids) == 0 {
			return Invalid("all/any needs at least one condition")
		}
		for i := range kids {
			if err := validateCondition(&kids[i], now, depth+1, leaves); err != nil {
				return err
			}
		}
		return nil
	}
	if *leaves++; *leaves > maxLeaves {
		return Invalid("more than %d conditions in one trigger", maxLeaves)
	}
	return validateLeaf(c, now)
}

func validateLeaf(c *protocol.Condition, now time.Time) error {
	switch {
	case c.EveryMs != 0:
		if d := time.Duration(c.EveryMs) * time.Millisecond; d < minEvery || d > maxEvery {
			return Invalid("everyMs must be between %d and %d", minEvery.Milliseconds(), maxEvery.Milliseconds())
		}
	case c.AtMs != 0:
		if c.AtMs <= now.UnixMilli() {
			return Invalid("atMs is in the past")
		}
	case c.Event != nil:
		return validateEvent(c)
	default:
		if c.Move != nil {
			if c.Read != nil {
				return Invalid("a condition is a read or a move, not both")
			}
			if err := resolveMove(c); err != nil {
				return err
			}
		}
		if c.Read != nil {
			if c.Read.Data == "" || c.Signal != ReadSignal(c.Read) || c.From != "" {
				return Invalid("a read's signal is named by the vault that takes it, and takes no from")
			}
		}
		if !signalNameRe.MatchString(c.Signal) {
			return Invalid("signal %q is not a valid signal name", c.Signal)
		}
		if c.Op != protocol.OpBelow && c.Op != protocol.OpAbove {
			return Invalid("unknown signal operator %q (use %q or %q)", c.Op, protocol.OpBelow, protocol.OpAbove)
		}
		if c.Threshold == nil || math.IsNaN(*c.Threshold) || math.IsInf(*c.Threshold, 0) {
			return Invalid("threshold must be a finite number")
		}
		if c.From != "" && c.From != protocol.SignalFeed && !isAddress(c.From) {
			from := c.From
			if len(from) > 64 {
				from = from[:64] + "…"
			}
			return Invalid("from %q must be %q (the chain's price feed) or a publisher's 0x address", from, protocol.SignalFeed)
		}
	}
	return nil
}

// isAddress reports whether s is a 0x address of 40 hex digits.
func isAddress(s string) bool {
	if len(s) != 42 || s[:2] != "0x" {
		return false
	}
	for _, r := range s[2:] {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

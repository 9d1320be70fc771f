package actor

import (
	"bytes"
	"encoding/json"

	"github.com/spells-dev/spells/protocol"
)

// decodeNoArgs accepts absent args or an empty object.
func decodeNoArgs(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	return decodeArgs(raw, &struct{}{})
}

func decodeArgs(raw json.RawMessage, into any) error {
	if len(raw) == 0 {
		return protocol.Errorf(protocol.CodeBadCommand, "args are missing")
	}
	if raw[0] != '{' {
		return protocol.Errorf(protocol.CodeBadCommand, "args must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return protocol.Errorf(protocol.CodeBadCommand, "args: %s", protocol.DescribeJSONError(err))
	}
	return nil
}

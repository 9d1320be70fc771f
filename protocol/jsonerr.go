package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// DescribeJSONError says in the project's own words why a JSON value could
// not be decoded, for a message a client sees: a clause to put after the
// thing's name and a colon ("command body: field \"seq\" must be an
// integer, not a string"). Go's decoder messages name
// Go types and struct fields ("cannot unmarshal number 1e+303 into Go
// struct field Condition.threshold of type float64"), which mean nothing to
// a client in another language; this names the JSON field and what it must
// be instead.
func DescribeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "it is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends before the JSON value does"
	case errors.As(err, &syntax) && strings.HasPrefix(syntax.Error(), "unexpected end"):
		return "it ends before the JSON value does"
	case errors.As(err, &syntax):
		return fmt.Sprintf("it is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		return describeType(typ)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "it has an unknown field " + field
	}
	return "it could not be decoded"
}

func describeType(e *json.UnmarshalTypeError) string {
	want := jsonKind(e.Type)
	what := "it"
	if e.Field != "" {
		what = fmt.Sprintf("field %q", e.Field)
	}
	if strings.HasPrefix(e.Value, "number") && (want == "an integer" || want == "a number") {
		return fmt.Sprintf("%s is out of range (%s)", what, strings.TrimPrefix(e.Value, "number "))
	}
	return fmt.Sprintf("%s must be %s, not %s", what, want, jsonValueKind(e.Value))
}

// jsonKind names the JSON kind that decodes into a Go type.
func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t == reflect.TypeOf(json.RawMessage(nil)) {
			return "a JSON value"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a JSON value"
}

// jsonValueKind turns the decoder's description of the value it found
// ("number", "number 1.5", "string", "array", "object", "bool") into words.
func jsonValueKind(v string) string {
	switch {
	case strings.HasPrefix(v, "number"):
		return "a number"
	case v == "string":
		return "a string"
	case v == "array":
		return "a list"
	case v == "object":
		return "an object"
	case v == "bool":
		return "true or false"
	}
	return v
}

package protocol

import (
	"strconv"

	"github.com/ethereum/go-ethereum/common"
)

// SignalFeed is Condition.From for a leaf that takes only values read from
// the chain's price feed for its signal.
const SignalFeed = "feed"

// SignalOrigin is what a node knows of where a signal value came from:
// read from the chain's price feed (Feed), or signed by a publisher key
// whose signature the node checked (Publisher, a lowercase 0x address), at
// the publisher's time At (unix ms). The zero value is an unverified
// value.
type SignalOrigin struct {
	Feed      bool
	Publisher string
	At        int64
}

// SignalMessage is the text a publisher signs (EIP-191 personal_sign) for
// one value: "spells signal", the name, the value written as the shortest
// decimal without an exponent, and the time in unix ms, one per line.
func SignalMessage(name string, value float64, at int64) []byte {
	return []byte("spells signal\n" + name + "\n" + strconv.FormatFloat(value, 'f', -1, 64) + "\n" + strconv.FormatInt(at, 10))
}

// SignalSigner is the publisher whose key signed value of signal name at
// at (sig: 65 bytes, r ‖ s ‖ v).
func SignalSigner(name string, value float64, at int64, sig []byte) (common.Address, error) {
	return RecoverPersonal(SignalMessage(name, value, at), sig)
}

// Accepts reports whether a condition leaf that takes values only from
// from ("" any, SignalFeed, or a publisher's address) takes a value of
// origin o.
func (o SignalOrigin) Accepts(from string) bool {
	switch from {
	case "":
		return true
	case SignalFeed:
		return o.Feed
	}
	return o.Publisher != "" && common.IsHexAddress(from) && common.HexToAddress(from) == common.HexToAddress(o.Publisher)
}

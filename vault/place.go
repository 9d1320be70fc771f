package vault

import "fmt"

// A vault's place on this node: whether its file is here and served, set
// aside, on its way to or from another node, or a tombstone of one that
// moved. It is a state of the vault, not of an instance (life.go): it
// outlives instances, and decides whether one may start at all. Every
// change goes through Manager.setPlaceLocked, by one table.
//
//	nowhere ─► held ◄──────────────┐ (a move the directory did not follow)
//	           │  ├─► leaving ─────┤
//	           │  │      └───► moved ─► arriving ─► held (moved back here)
//	nowhere ─► left ───────────┘ ▲        │
//	           │                 └────────┘ (discarded, the tombstone stays)
//	nowhere ─► unread ─► held, quarantined, nowhere
//	held, unread, nowhere ─► quarantined
type place uint8

const (
	nowhere     place = iota // this node has no file of it
	held                     // its file is here, and it is served
	unread                   // its file is here; the start-up scan could not read it (it is tried again)
	quarantined              // its file was set aside; its owner is told so
	leaving                  // moving out now: quiesced, its file being shipped
	left                     // a move out began and a stop interrupted it: the directory settles it
	moved                    // its file here is a tombstone; it lives on another node
	arriving                 // a moved vault's file was received here, not installed yet
	numPlaces
)

var placeNames = [numPlaces]string{"nowhere", "held", "unread", "quarantined", "leaving", "left", "moved", "arriving"}

func (p place) String() string {
	if p < numPlaces {
		return placeNames[p]
	}
	return fmt.Sprintf("place(%d)", uint8(p))
}

// placeMoves is the one table of a vault's allowed moves between places.
var placeMoves = [numPlaces][]place{
	nowhere:     {held, unread, quarantined, left, moved, arriving},
	held:        {leaving, quarantined, nowhere},
	unread:      {held, quarantined, nowhere},
	quarantined: {},
	leaving:     {held, moved},
	left:        {held, moved},
	moved:       {arriving, nowhere},
	arriving:    {held, moved, nowhere},
}

func placeAllowed(from, to place) bool {
	for _, p := range placeMoves[from] {
		if p == to {
			return true
		}
	}
	return false
}

// spot is what the node keeps of a vault's place.
type spot struct {
	place place
	epoch uint64 // held, leaving, left: its epoch here; arriving: the epoch it will have
	node  string // leaving, left, moved: the node it goes (or went) to
	file  string // quarantined: where its file was put
}

// holds reports whether the vault's file is this node's: the directory
// names it as the vault's home.
func (s spot) holds() bool {
	switch s.place {
	case held, unread, quarantined, leaving, left:
		return true
	}
	return false
}

// movingAway reports whether requests for the vault are refused as
// vault_moving (it moves, moved, or arrives).
func (s spot) movingAway() bool {
	switch s.place {
	case leaving, left, moved, arriving:
		return true
	}
	return false
}

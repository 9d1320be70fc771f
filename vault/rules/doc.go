// Package rules is what a vault's triggers mean: a definition is checked,
// a condition keeps the state of its leaves, and an event (a signal value,
// an alarm) evaluated on a trigger gives the trigger after it and what
// happened (a crossing, a firing, a cooldown, an expiry). Every function
// is pure: no file, no clock, no goroutine, so each is tested on its own.
// The vault writes what they return; the node's interest index keeps the
// threshold leaves they report.
//
// Files, from the ground up:
//   - state.go: a trigger with its condition's state, and what it tells
//     (its signals, next tick, wake-up time).
//   - validate.go: the limits and checks of a definition.
//   - define.go: a new trigger, a redefinition, a pause and a resume.
//   - evaluate.go: an event evaluated on one trigger or all of them, and
//     the intent a firing records.
//   - read.go: a chain read's key and signal name.
//   - move.go: a move within a window, as a signal the node makes.
//   - event.go: an event condition: its key, signal, cursor and the
//     places of logs in the chain.
//   - leaves.go: the threshold leaves and wake-up time a vault reports.
package rules

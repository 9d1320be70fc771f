// Package clock is the source of time for the node's parts that decide by
// it: vaults (alarms, expiries, grant windows, fee bumps), the hub (nonces)
// and the demo feed. Production uses Real; tests use a Fake and move it
// instead of sleeping. Schedule keeps many named deadlines on one timer.
//
// Files, from the ground up:
//   - clock.go: the Clock, its Timer, and Real.
//   - fake.go: Fake, a clock a test moves.
//   - schedule.go: Schedule: named deadlines on one timer, and its goroutine.
package clock

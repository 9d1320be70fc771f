// Package journal is the node's firing journal (ARCHITECTURE.md §6): an
// append-only log of records, each a firing the node evaluated for a
// hibernated vault, made durable in batches with one sync, before the
// vault applies it to its own file. Records are numbered; a segment whose
// every record was applied is deleted.
//
// Files, from the ground up:
//   - journal.go: segments, frames, writing, replay and deletion.
package journal

// Package tmpfstest mounts a small tmpfs for tests of a full disk.
//
// Files, from the ground up:
//   - tmpfstest.go: mounting, resizing and unmounting it.
package tmpfstest

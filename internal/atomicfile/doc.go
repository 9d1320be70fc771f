// Package atomicfile writes a file so that it is found whole or not at
// all, and stays written: the bytes go to <path>.new, which is synced and
// renamed over path, and then the folder is synced.
//
// Files, from the ground up:
//   - atomicfile.go: Write, and SyncDir.
package atomicfile

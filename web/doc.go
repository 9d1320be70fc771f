// Package web holds the browser dashboard, embedded into the binary. It
// speaks the same documented protocol (PROTOCOL.md) as every other client
// and imports nothing from the server.
//
// Files, from the ground up:
//   - assets.go: the files under content-hashed names, cache headers, gzip.
//   - web.go: the embedded static files and their handler.
package web

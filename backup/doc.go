// Package backup ships every vault's committed changes to S3-compatible
// object storage and restores a vault to any version or time the backup
// holds. A vault's changes are SQLite changesets (the session extension,
// vault/store's Recorder) forming a chain from a whole copy of its file
// (a base); every flush (default each second) is one object holding the
// changes of every vault that changed since the flush before, so the cost
// is a request per flush, not per vault, and nothing for vaults that did
// not change. Every object is sealed (gzip, then AES-256-GCM) under a
// backup key the node's key-encryption key wraps: a leaked bucket reveals
// nothing. It imports vault/store and vault/keys; the vault host gives it
// the changes (actor.Backup) and the server owns it.
//
// Files, from the ground up:
//   - bucket.go: the bucket (minio-go), its URL and credentials.
//   - seal.go: the backup keys, and sealing and opening objects.
//   - log.go: the objects' names and the log objects' encoding.
//   - metrics.go: the backup's metrics.
//   - shipper.go: the Shipper: chains, the backlog and its bound, flushes.
//   - restore.go: the Restorer: a vault rebuilt from a base and its chain.
//   - restoreall.go: every vault the backup holds, restored (a lost disk).
package backup

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/vault/keys"
)

// devKEKFile is where a node without a configured key-encryption key keeps
// the one it generated: beside the vault files, so it protects nothing
// against someone who can read the data directory.
const devKEKFile = "master.key.dev"

// masterKey returns the node's key-encryption key: SPELLS_MASTER_KEY, or
// the file -master-key-file names, or else the dev key in the data
// directory (generated on first start). A data directory whose vaults were
// sealed by a configured key refuses to start without it rather than make
// a dev key, and nothing is written when a key is refused.
func masterKey(o Options, log zerolog.Logger) (*keys.KEK, error) {
	switch {
	case o.MasterKey != "":
		k, err := keys.ParseKEK(o.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("SPELLS_MASTER_KEY: %w", err)
		}
		return k, nil
	case o.MasterKeyFile != "":
		b, err := os.ReadFile(o.MasterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-master-key-file: %w", err)
		}
		k, err := keys.ParseKEK(string(b))
		if err != nil {
			return nil, fmt.Errorf("-master-key-file %s: %w", o.MasterKeyFile, err)
		}
		if fi, err := os.Stat(o.MasterKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn().Str("file", o.MasterKeyFile).Str("mode", fi.Mode().Perm().String()).
				Msg("the key-encryption key file can be read by other users; chmod 600 it")
		}
		return k, nil
	}
	p := filepath.Join(o.DataDir, devKEKFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		k, err := keys.ParseKEK(string(b))
		if err != nil {
			return nil, fmt.Errorf("dev key-encryption key %s: %w", p, err)
		}
		warnDevKey(log, p)
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("dev key-encryption key: %w", err)
	}
	if keys.SealedByKEK(o.DataDir) {
		return nil, fmt.Errorf("the vault keys in %s are sealed by a key-encryption key that was not given: pass -master-key-file or SPELLS_MASTER_KEY (nothing was changed)", o.DataDir)
	}
	k, text, err := keys.GenerateKEK()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("dev key-encryption key: %w", err)
	}
	warnDevKey(log, p)
	return k, nil
}

func warnDevKey(log zerolog.Logger, p string) {
	log.Warn().Str("file", p).Msg("DEV KEY: the vaults' session keys are sealed with a key-encryption key kept in the data directory, " +
		"so anyone who can read that directory can unseal them. Give -master-key-file or SPELLS_MASTER_KEY for anything but development.")
}

package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Who may be a member: a node proves it holds the cluster secret and the
// cluster's key-encryption key before it joins. The directory keeps the
// cluster's proof (an HMAC under the secret, and the id of the KEK); a node
// whose own proof differs stays out (no membership, no homes, no new
// vaults) and says why. Each member's entry carries a tag under the
// secret binding its id, address and KEK id, so an entry written into
// Redis by anything without the secret is ignored by every member.

// keyProof holds the cluster's proof: "<hmac hex>:<kek id>".
const keyProof = "spells:{dir}:proof"

// ErrOut refuses what only a member may do (claim a vault) on a node that
// stays out of the cluster.
var ErrOut = errors.New("this node is not a member of the cluster")

// clusterProof is this node's proof: what every member of its cluster
// shares.
func (d *Directory) clusterProof() string {
	m := hmac.New(sha256.New, d.cfg.Secret)
	m.Write([]byte("spells cluster v1"))
	return hex.EncodeToString(m.Sum(nil)) + ":" + d.cfg.KEKID
}

// memberTag binds a member's entry to the secret.
func memberTag(secret []byte, node, addr, kek string) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "spells member v1\x00%s\x00%s\x00%s", node, addr, kek)
	return hex.EncodeToString(m.Sum(nil))
}

// verifyMember reports why a member's entry is not one of this cluster's;
// "" when it is.
func (d *Directory) verifyMember(node, addr, kek, tag string) string {
	if !hmac.Equal([]byte(tag), []byte(memberTag(d.cfg.Secret, node, addr, kek))) {
		return "its entry is not signed with this cluster's secret"
	}
	if kek != d.cfg.KEKID {
		return fmt.Sprintf("it holds key-encryption key %s, not the cluster's %s", kek, d.cfg.KEKID)
	}
	return ""
}

// checkProof compares this node's proof with the cluster's, writing it
// when the directory has none. It returns why this node must stay out,
// or "". A proof in Redis that differs from the one this node joined
// under before (kept on its disk) is a directory written by a stranger
// after a loss: this node's is written over it.
func (d *Directory) checkProof(ctx context.Context) (string, error) {
	mine := d.clusterProof()
	ok, err := d.rdb.SetNX(ctx, keyProof, mine, 0).Result()
	if err != nil {
		return "", fmt.Errorf("cluster proof: %w", err)
	}
	if ok {
		d.rememberProof(mine)
		return "", nil
	}
	theirs, err := d.rdb.Get(ctx, keyProof).Result()
	if errors.Is(err, redis.Nil) {
		return d.checkProof(ctx) // deleted meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("cluster proof: %w", err)
	}
	if theirs == mine {
		d.rememberProof(mine)
		return "", nil
	}
	d.mu.Lock()
	joined := d.book.Proof
	d.mu.Unlock()
	if joined == mine {
		d.log.Warn().Msg("the cluster's proof in Redis is not the one this node joined under (written by a node without the secret or the key after Redis lost it?): writing this cluster's back")
		if err := d.rdb.Set(ctx, keyProof, mine, 0).Err(); err != nil {
			return "", fmt.Errorf("cluster proof: %w", err)
		}
		return "", nil
	}
	mac, kek, _ := strings.Cut(theirs, ":")
	myMac, myKEK, _ := strings.Cut(mine, ":")
	if mac != myMac {
		return "this node's cluster secret is not the cluster's (--cluster-secret-file or SPELLS_CLUSTER_SECRET must be the same on every node)", nil
	}
	return fmt.Sprintf("this node's key-encryption key (id %s) is not the cluster's (id %s): vaults move with their keys sealed, so every node needs the same --master-key-file or SPELLS_MASTER_KEY", myKEK, kek), nil
}

func (d *Directory) rememberProof(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.book.Proof == p {
		return
	}
	d.book.Proof = p
	if err := d.book.save(); err != nil {
		d.log.Warn().Err(err).Msg("could not write the cluster's peers to disk")
	}
}

// setOut records whether this node stays out of the cluster, and why,
// logging each change once.
func (d *Directory) setOut(reason string) {
	d.mu.Lock()
	was := d.out
	d.out = reason
	d.mu.Unlock()
	switch {
	case reason != "" && reason != was:
		d.log.Error().Str("reason", reason).Msg("this node stays out of the cluster: it takes no vault and is given none")
	case reason == "" && was != "":
		d.log.Info().Msg("this node's proof is the cluster's again: joining")
	}
}

// Out returns why this node stays out of the cluster; "" while it is a
// member (or has not asked yet).
func (d *Directory) Out() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out
}

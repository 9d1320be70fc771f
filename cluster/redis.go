package cluster

import (
	"context"
	"fmt"
	neturl "net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dial connects to the Redis at url and checks that it answers. The URL
// names one server (redis://[user:password@]host:port[/db], rediss:// for
// TLS); more addr parameters name a Redis Cluster
// (redis://host:port?addr=host2:port2&addr=host3:port3), and a
// master_name parameter makes the addresses Sentinels of that master.
// go-redis's UniversalClient serves all three.
func Dial(ctx context.Context, url string) (redis.UniversalClient, error) {
	rdb, err := NewClient(url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", url, err)
	}
	return rdb, nil
}

// NewClient is Dial without the check: the client connects when first
// used, and reconnects by itself.
func NewClient(url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(stripUniversal(url))
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	// Short timeouts: a sign-in that asks the directory waits on them
	// while Redis is down, and a node serves its own vaults without it.
	uo := &redis.UniversalOptions{Addrs: []string{opt.Addr}, Username: opt.Username,
		Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: 1}
	if u, err := neturl.Parse(url); err == nil {
		q := u.Query()
		uo.Addrs = append(uo.Addrs, q["addr"]...)
		uo.MasterName = q.Get("master_name")
	}
	return redis.NewUniversalClient(uo), nil
}

// stripUniversal removes the query parameters Dial reads itself, which
// go-redis's ParseURL would refuse.
func stripUniversal(url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	q := u.Query()
	q.Del("addr")
	q.Del("master_name")
	u.RawQuery = q.Encode()
	return u.String()
}

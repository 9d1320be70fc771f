package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/vault"
	"github.com/spells-dev/spells/vault/notify"
)

// Options is the node's configuration. Every flag has an environment
// variable (SPELLS_ + the flag name in upper case, dashes as underscores);
// a flag on the command line wins.
type Options struct {
	Listen  string
	DataDir string
	// MasterKeyFile holds the key-encryption key that wraps every vault's
	// data key; MasterKey (environment only: SPELLS_MASTER_KEY) is the key
	// itself. Neither: a dev key in the data directory (masterkey.go).
	MasterKeyFile string
	MasterKey     string
	Origins       []string
	SIWEDomains   []string // empty: the public URL's host, or localhost, 127.0.0.1 and [::1] on the listen port
	// PublicURL is the address users open (behind a proxy, a published
	// container port): the ready log names it, and its host is a SIWE
	// domain unless SIWEDomains is given. Empty: http://localhost:<port>/.
	PublicURL string
	ChainID   uint64 // 0: the chain's own
	// ChainRPC is the chain the node executes on: "dev" (the embedded dev
	// chain), "none", or a JSON-RPC URL; ChainDeployment names the file
	// of contract addresses on that chain (as GET /v1/chain shows them).
	ChainRPC              string
	ChainDeployment       string
	DevChainBlockInterval time.Duration
	DevChainRPC           string // loopback address of the dev chain's JSON-RPC; empty: none
	Confirmations         int
	Finality              int
	ChainPoll             time.Duration
	FeeBumpAfter          time.Duration
	ChainRelay            bool
	AlertsAllowPrivate    bool   // webhooks may reach loopback and private addresses
	SMTP, SMTPFrom        string // the mail server for mail alerts, and their sender
	TelegramAPI           string // the Telegram Bot API's base URL
	TelegramToken         string // environment only: SPELLS_TELEGRAM_BOT_TOKEN
	PushContact           string // the contact push services are given (mailto: or https:)
	Redis                 string // redis:// URL; empty: a single node, signals in memory
	// ClusterSecretFile holds the secret every node of a cluster shares
	// (it authenticates the node links and keys sign-in nonces);
	// ClusterSecret (environment only: SPELLS_CLUSTER_SECRET) is the
	// secret itself. NodeAddr is where the other nodes reach this one.
	ClusterSecretFile string
	ClusterSecret     string
	NodeAddr          string
	ClusterLease      time.Duration
	// AdminToken (environment: SPELLS_ADMIN_TOKEN) authenticates POST
	// /v1/admin/drain; empty: the endpoint is off. DrainOnShutdown hands
	// every vault to the other nodes at SIGTERM, for at most DrainTimeout.
	AdminToken         string
	Backup             string        // S3 URL of the backup; empty: none
	NewVaultsPerIP     float64       // a minute; 0: no limit
	NewVaultsPerMinute float64       // the node's, a minute; 0: no limit
	VaultAllowlist     string        // file of owner addresses; empty: anyone
	BackupEvery        time.Duration // the longest a change waits to be shipped
	BackupCheckEvery   time.Duration // how often the bucket is checked for this node's key
	BackupRestore      bool          // restore every vault into an empty data directory at start
	DrainOnShutdown    bool
	DrainTimeout       time.Duration
	SignalToken        string
	Demo               bool
	DemoInterval       time.Duration
	LogFormat          string // auto, json, console
	LogLevel           string
	Node               string
	MaxOpen            int
	IdleAfter          time.Duration
	CommandRate        float64
	CommandBurst       int
	MaxConns           int // 0: derived from the descriptor limit
	// Per source address (IPv4, IPv6 /64), before sign-in; 0: no limit.
	MaxPendingPerIP  int
	SignInRatePerIP  float64
	SignInBurstPerIP int
	DebugListen      string // pprof listener; empty: off
	ProcsPerCPU      int    // GOMAXPROCS is this many times the CPUs Go would use (unless GOMAXPROCS is set)
	// ShutdownTimeout bounds a graceful shutdown: closing sockets, then
	// vaults; past it the node exits anyway.
	ShutdownTimeout time.Duration

	// hubTweak lets tests change hub settings that have no flag.
	hubTweak func(*hub.Config)
	// logOut replaces stderr as the log's destination (tests read it).
	logOut io.Writer
	// wrapListener lets tests shape accepted connections.
	wrapListener func(net.Listener) net.Listener
}

func parseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("spells", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var origins, domains string
	fs.StringVar(&o.Listen, "listen", ":8080", "address to listen on")
	fs.StringVar(&o.DataDir, "data", "./data", "data directory (vault files, node key)")
	fs.StringVar(&o.MasterKeyFile, "master-key-file", "", "file holding the key-encryption key (64 hex characters) that seals the vaults' session keys; the key itself may instead be given in SPELLS_MASTER_KEY; neither: a dev key is generated in the data directory, with a warning")
	fs.StringVar(&origins, "origins", "", "extra allowed WebSocket origins, comma separated host patterns (the node's own host is always allowed)")
	fs.StringVar(&domains, "siwe-domains", "", "SIWE domains accepted at sign-in, comma separated (default the -public-url's host, or localhost, 127.0.0.1 and [::1] on the listen port)")
	fs.StringVar(&o.PublicURL, "public-url", "", "the address users open the dashboard at (behind a proxy or a published container port), e.g. https://spells.example.com/: logged when ready, and its host accepted at sign-in; default http://localhost:<listen port>/")
	fs.Uint64Var(&o.ChainID, "chain-id", 0, "the chain id sign-ins name; 0: the chain's own (the node refuses to start if the chain has another)")
	fs.StringVar(&o.ChainRPC, "chain-rpc", chainDev, "the chain intents execute on: dev (the embedded dev chain, its data in <data>/chain), none (intents are recorded, never executed), or a JSON-RPC URL (http, https, ws, wss or an IPC path)")
	fs.StringVar(&o.ChainDeployment, "chain-deployment", "", "with a JSON-RPC chain: a JSON file naming the delegation framework's contracts and the tokens on it (the shape GET /v1/chain serves)")
	fs.DurationVar(&o.DevChainBlockInterval, "dev-chain-block-interval", time.Second, "time between the dev chain's blocks (at least 1s)")
	fs.IntVar(&o.Confirmations, "confirmations", 2, "blocks an intent's transaction needs, its own included, before it is confirmed")
	fs.IntVar(&o.Finality, "finality", 0, "blocks deep, its own included, an intent's block must be before the vault stops re-checking it for a reorg; 0: the chain's finalized block (64 deep on a chain that names none)")
	fs.DurationVar(&o.ChainPoll, "chain-poll", time.Second, "how often the chain watcher looks for a new block")
	fs.DurationVar(&o.FeeBumpAfter, "fee-bump-after", 30*time.Second, "how long a sent transaction may wait for a block before the vault replaces it with higher fees (same nonce, fees raised at least 12.5 %)")
	fs.StringVar(&o.Redis, "redis", "", "redis:// URL of the cluster's Redis (more shards of a Redis Cluster as ?addr=host:port&addr=…, Sentinels with ?master_name=…): nodes share the vaults' directory and the signals (empty: a single node, signals in memory)")
	fs.StringVar(&o.ClusterSecretFile, "cluster-secret-file", "", "with -redis: file holding the secret every node of the cluster shares (at least 32 characters); it may instead be given in SPELLS_CLUSTER_SECRET")
	fs.DurationVar(&o.ClusterLease, "cluster-lease", 15*time.Second, "with -redis: how long this node's membership lasts unrenewed (renewed every third of it); also how long new vaults wait after Redis lost the directory")
	fs.StringVar(&o.AdminToken, "admin-token", "", "with -redis: bearer token for POST /v1/admin/drain, which hands every vault of this node to the other nodes (empty: the endpoint is off)")
	fs.BoolVar(&o.DrainOnShutdown, "drain-on-shutdown", false, "with -redis: at SIGTERM or SIGINT, hand every vault to the other nodes before stopping")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 5*time.Minute, "longest a drain runs; vaults not moved by then stay on this node")
	fs.StringVar(&o.NodeAddr, "node-addr", "", "with -redis: host:port where the other nodes reach this node's link (default: 127.0.0.1 and the listen port)")
	fs.BoolVar(&o.ChainRelay, "chain-relay", false, "relay the dashboard's chain requests (POST /v1/chain/rpc) to a JSON-RPC chain's node too; always on for the dev chain")
	fs.BoolVar(&o.AlertsAllowPrivate, "alerts-allow-private", false, "let alert webhooks reach loopback and private addresses (a receiver on this node's own network); refused by default")
	fs.StringVar(&o.SMTP, "smtp", "", "mail server for mail alerts: smtp://[user:password@]host:port (STARTTLS when the server offers it) or smtps://…; empty: no mail alerts")
	fs.StringVar(&o.SMTPFrom, "smtp-from", "", "with -smtp: the address mail alerts come from")
	fs.StringVar(&o.TelegramAPI, "telegram-api", "https://api.telegram.org", "the Telegram Bot API the node's bot (SPELLS_TELEGRAM_BOT_TOKEN) sends chat alerts through")
	fs.StringVar(&o.PushContact, "push-contact", "", "the contact Web Push services are given with each push, mailto:… or https://… (default: the https public URL, else mailto: the -smtp-from address)")
	fs.StringVar(&o.DevChainRPC, "dev-chain-rpc", "127.0.0.1:8545", "loopback address where the dev chain serves JSON-RPC for wallets and tools; empty: none")
	fs.Float64Var(&o.NewVaultsPerIP, "new-vaults-per-ip", 10, "new vaults one source address (IPv4, or IPv6 /64) may create a minute; 0: no limit")
	fs.Float64Var(&o.NewVaultsPerMinute, "new-vaults-per-minute", 600, "new vaults this node creates a minute, from everyone; 0: no limit")
	fs.StringVar(&o.VaultAllowlist, "vault-allowlist", "", "file of owner addresses, one a line: the node creates vaults only for them (for a public node); empty: for anyone")
	fs.StringVar(&o.Backup, "backup", "", "ship every vault's committed changes to this S3-compatible bucket, http(s)://HOST[:PORT]/BUCKET[/PREFIX], sealed under a key the key-encryption key wraps; credentials from SPELLS_BACKUP_ACCESS_KEY and SPELLS_BACKUP_SECRET_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); empty: no backup")
	fs.BoolVar(&o.BackupRestore, "backup-restore", false, "with -backup: at start, if the data directory holds no vault, first restore every vault the backup holds at its newest (a node started on an empty disk; it needs the same key-encryption key)")
	fs.DurationVar(&o.BackupEvery, "backup-every", time.Second, "with -backup: the longest a committed change waits before it is shipped")
	fs.DurationVar(&o.BackupCheckEvery, "backup-check-every", time.Minute, "with -backup: how often the node checks that the bucket still holds its objects; one wiped or replaced gets every vault's whole file again")
	fs.StringVar(&o.SignalToken, "signal-token", "", "bearer token for POST /v1/signals (empty: ingest disabled)")
	fs.BoolVar(&o.Demo, "demo", true, "publish demo random-walk prices")
	fs.DurationVar(&o.DemoInterval, "demo-interval", time.Second, "time between demo price ticks")
	fs.StringVar(&o.LogFormat, "log-format", "auto", "auto (console on a terminal, else json), json or console")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.Node, "node", "", "this node's name (default: host name); in a cluster its id, kept in <data>/node.id: vault homes name it")
	fs.IntVar(&o.MaxOpen, "max-open-vaults", vault.DefaultMaxOpen, "vaults kept open at once (2 file descriptors each); past it the least recently used idle vault is closed")
	fs.Float64Var(&o.CommandRate, "command-rate", 50, "frames per second accepted from one WebSocket (more get rate_limited)")
	fs.IntVar(&o.CommandBurst, "command-burst", 100, "burst allowed above --command-rate")
	fs.IntVar(&o.MaxPendingPerIP, "max-pending-per-ip", 64, "WebSockets from one address (IPv6: one /64) that have not signed in yet; more are refused with HTTP 429 (0: no limit)")
	fs.Float64Var(&o.SignInRatePerIP, "signin-rate-per-ip", 10, "sign-in and resume attempts per second from one address; more get rate_limited (0: no limit)")
	fs.IntVar(&o.SignInBurstPerIP, "signin-burst-per-ip", 20, "burst allowed above --signin-rate-per-ip")
	fs.IntVar(&o.MaxConns, "max-connections", 0, "WebSockets accepted at once; 0: the descriptor limit minus 2 per open vault minus 512 spare")
	fs.StringVar(&o.DebugListen, "debug-listen", "", "serve Go's pprof profiles (/debug/pprof/) on this separate address, e.g. 127.0.0.1:6060; empty: off")
	fs.IntVar(&o.ProcsPerCPU, "procs-per-cpu", 2, "Go processors (GOMAXPROCS) per CPU: vault files are written and synced with blocking system calls, each holding a processor while it waits; ignored when GOMAXPROCS is set")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "longest a shutdown (SIGINT/SIGTERM) waits for sockets and vaults to close before the node exits anyway")
	fs.DurationVar(&o.IdleAfter, "idle-after", 2*time.Minute, "close (hibernate) a vault with no dashboard connected after this long idle")
	if err := applyEnv(fs, getenv); err != nil {
		return o, err
	}
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w\n\n%s", err, usage(fs))
	}
	o.Origins, o.SIWEDomains = splitList(origins), splitList(domains)
	if o.PublicURL != "" {
		u, err := url.Parse(o.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return o, fmt.Errorf("-public-url %q: want the dashboard's address, http(s)://host[:port][/path], e.g. https://spells.example.com/", o.PublicURL)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		o.PublicURL = u.String()
		if len(o.SIWEDomains) == 0 {
			o.SIWEDomains = []string{u.Host}
		}
	}
	o.TelegramToken = getenv("SPELLS_TELEGRAM_BOT_TOKEN")
	if o.SMTP != "" || o.SMTPFrom != "" {
		if err := notify.ParseSMTP(o.SMTP, o.SMTPFrom); err != nil {
			return o, err
		}
	}
	if u, err := url.Parse(o.TelegramAPI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, fmt.Errorf("-telegram-api %q: want the Bot API's base URL, e.g. https://api.telegram.org", o.TelegramAPI)
	}
	o.MasterKey = getenv("SPELLS_MASTER_KEY")
	o.ClusterSecret = getenv("SPELLS_CLUSTER_SECRET")
	if o.ClusterSecret != "" && o.ClusterSecretFile != "" {
		return o, fmt.Errorf("give the cluster secret once: -cluster-secret-file or SPELLS_CLUSTER_SECRET, not both")
	}
	if o.MasterKey != "" && o.MasterKeyFile != "" {
		return o, fmt.Errorf("give the key-encryption key once: -master-key-file or SPELLS_MASTER_KEY, not both")
	}
	if o.Finality < 0 || (o.Finality > 0 && o.Finality < o.Confirmations) {
		return o, fmt.Errorf("-finality must be 0 (the chain's finalized block) or at least -confirmations (%d), not %d", o.Confirmations, o.Finality)
	}
	if o.Confirmations < 1 || o.ChainPoll <= 0 || o.FeeBumpAfter <= 0 {
		return o, fmt.Errorf("-confirmations must be at least 1, -chain-poll and -fee-bump-after positive")
	}
	if o.DevChainBlockInterval < time.Second {
		return o, fmt.Errorf("-dev-chain-block-interval must be at least 1s (block times are whole seconds)")
	}
	if o.ChainDeployment != "" && (o.ChainRPC == chainDev || o.ChainRPC == chainNone) {
		return o, fmt.Errorf("-chain-deployment goes with a JSON-RPC -chain-rpc; the dev chain deploys its own contracts")
	}
	if o.CommandRate <= 0 || o.CommandBurst <= 0 {
		return o, fmt.Errorf("-command-rate and -command-burst must be positive")
	}
	if o.MaxOpen <= 0 || o.IdleAfter <= 0 {
		return o, fmt.Errorf("-max-open-vaults and -idle-after must be positive")
	}
	if o.ProcsPerCPU <= 0 {
		return o, fmt.Errorf("-procs-per-cpu must be positive")
	}
	if o.MaxPendingPerIP < 0 || o.SignInRatePerIP < 0 || o.SignInBurstPerIP < 0 {
		return o, fmt.Errorf("-max-pending-per-ip, -signin-rate-per-ip and -signin-burst-per-ip must not be negative")
	}
	if o.ShutdownTimeout <= 0 {
		return o, fmt.Errorf("-shutdown-timeout must be positive")
	}
	if o.DemoInterval <= 0 {
		return o, fmt.Errorf("-demo-interval must be positive")
	}
	if o.NewVaultsPerIP < 0 || o.NewVaultsPerMinute < 0 {
		return o, fmt.Errorf("-new-vaults-per-ip and -new-vaults-per-minute must not be negative")
	}
	if o.BackupRestore && o.Backup == "" {
		return o, fmt.Errorf("-backup-restore restores from -backup: give both")
	}
	if o.BackupEvery <= 0 || o.BackupCheckEvery <= 0 {
		return o, fmt.Errorf("-backup-every and -backup-check-every must be positive")
	}
	return o, nil
}

// applyEnv sets each flag from its SPELLS_ variable, before the command
// line is parsed.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SPELLS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func usage(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("usage: spells [flags]\n")
	fs.VisitAll(func(f *flag.Flag) {
		env := "SPELLS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		fmt.Fprintf(&b, "  -%s (%s, default %s)\n      %s\n", f.Name, env, strconv.Quote(f.DefValue), f.Usage)
	})
	return b.String()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// The chain a node executes on (-chain-rpc): the embedded dev chain
// ("dev", the default), none ("none": intents are recorded and never
// executed), or a JSON-RPC node by URL.
const (
	chainDev  = "dev"
	chainNone = "none"
)
